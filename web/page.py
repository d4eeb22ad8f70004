"""The HTML page (``/``): one template plus static JS/CSS, no build step."""

from __future__ import annotations

from flask import Blueprint, Response, make_response, render_template

from matteflow.core.idsizes import ID_SIZES
from matteflow.core.options import FORMATS, MAX_ERODE, MAX_SIDE_LIMIT, PRESETS
from matteflow.core.registry import DEFAULT_MODEL

from .context import web_context

bp = Blueprint("page", __name__)

CHECK_CONFIDENCE_BELOW = 0.5

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
        "maxUploadMb": settings.max_upload_mb,
        "maxFiles": settings.max_files_per_job,
        "defaultModel": DEFAULT_MODEL,
        # Below this confidence a result is marked "check this one".
        "checkBelow": CHECK_CONFIDENCE_BELOW,
        # Real ID photo presets for the preset menu, labelled in both languages (instruction.js switches).
        "idPresets": [{"value": size.preset, "en": size.label_en, "zh": size.label_zh} for size in ID_SIZES.values()],
    }
    response = make_response(render_template("index.html", config=config))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
