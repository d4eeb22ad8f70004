"""The HTML page (``/``): one template plus static JS/CSS, no build step."""

from __future__ import annotations

from flask import Blueprint, Response, make_response, render_template, request

from matteflow.core.confidence import WORTH_A_LOOK_BELOW
from matteflow.core.cropping import MAX_CROP_MARGIN
from matteflow.core.idsizes import ID_SIZES
from matteflow.core.options import FORMATS, MAX_ERODE, MAX_SIDE_LIMIT, PRESETS
from matteflow.fetch import fetching_enabled

from .context import web_context

bp = Blueprint("page", __name__)

# The page loads only its own script and styles; images come from the API or from blob: URLs it makes.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@bp.get("/")
def index() -> Response:
    settings = web_context().settings
    config = {
        "presets": PRESETS,
        "formats": list(FORMATS),
        "maxErode": MAX_ERODE,
        "maxSide": MAX_SIDE_LIMIT,
        "maxCropMargin": MAX_CROP_MARGIN,
        "maxUploadMb": settings.max_upload_mb,
        "maxFiles": settings.max_files_per_job,
        "defaultModel": settings.default_model,
        # Below this confidence a result is marked "check this one".
        "checkBelow": WORTH_A_LOOK_BELOW,
        # Real ID photo presets for the preset menu, labelled in both languages (instruction.js switches).
        "idPresets": [{"value": size.preset, "en": size.label_en, "zh": size.label_zh} for size in ID_SIZES.values()],
        "resultTtlHours": settings.result_ttl_hours,
        # A pasted or dropped web address is sent as image_url only where this server reads them.
        "imageUrls": fetching_enabled(settings),
    }
    response = make_response(render_template("index.html", config=config))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def wants_html() -> bool:
    """True when a person's browser navigated here (prefers text/html), not a script or an <img>."""
    accept = request.accept_mimetypes
    return accept.best_match(["application/json", "text/html"]) == "text/html" and accept["text/html"] > 0


def expired_page() -> Response:
    """A friendly 404 page for a followed link whose job expired or was deleted (the API answers JSON)."""
    langs = [value.lower() for value, _ in request.accept_languages]
    lang = next((code[:2] for code in langs if code[:2] in ("en", "zh")), "en")
    hours = web_context().settings.result_ttl_hours
    response = make_response(render_template("expired.html", lang=lang, days=f"{hours / 24:.3g}"), 404)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response
