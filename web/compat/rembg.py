"""The rembg server's API (``rembg s``): ``POST /api/remove`` with the image in ``file``, ``GET /api/remove?url=``.

rembg's parameters map onto MatteFlow's options: ``model`` (rembg's model names, or MatteFlow's own
``auto``/``people``/``general``/``ensemble``), ``a`` (alpha matting: MatteFlow's edge refinement), ``om``
(only the mask), ``ppm`` (post-process the mask: MatteFlow's feathering) and ``bgc`` (``r,g,b,a``). The
answer is a PNG as rembg's; errors are MatteFlow's JSON errors. ``af``/``ab``/``ae`` (rembg's trimap
thresholds and erosion) are checked and accepted, but MatteFlow's refinement picks its own band.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from typing import IO

from flask import Blueprint, Response, request

from matteflow.core.errors import shown
from matteflow.core.registry import MODEL_NAMES

from ..api import open_image, result_headers, run_single, single_image_slot
from ..context import web_context
from ..errors import ApiError
from ..uploads import read_resolved_options, read_uploads, refuse_nameless_parts
from .params import flag, refuse_unknown

bp = Blueprint("rembg", __name__, url_prefix="/api")

# rembg's model names and the MatteFlow model that stands in for each: its person models -> people, its
# general ones -> general. Models for another task (clothes, prompts, custom files) are refused by name.
REMBG_MODELS: dict[str, str] = {
    **dict.fromkeys(("u2net_human_seg", "birefnet-portrait"), "people"),
    **dict.fromkeys(
        (
            "u2net",
            "u2netp",
            "silueta",
            "isnet-general-use",
            "isnet-anime",
            "birefnet-general",
            "birefnet-general-lite",
            "birefnet-dis",
            "birefnet-hrsod",
            "birefnet-cod",
            "birefnet-massive",
            "bria-rmbg",
            "ben2-base",
        ),
        "general",
    ),
}
OTHER_TASKS = ("u2net_cloth_seg", "sam", "u2net_custom", "dis_custom")
# rembg's parameters: in the form (POST) or the query (GET); bgc and extras always in the query.
FORM_PARAMS = ("model", "a", "af", "ab", "ae", "om", "ppm")
QUERY_PARAMS = ("bgc", "extras")
KNOWN = (*FORM_PARAMS, *QUERY_PARAMS, "url")


def _int_in(params: Mapping[str, str], name: str, low: int, high: int | None) -> None:
    """rembg's trimap numbers: checked as rembg checks them, without effect here."""
    if name not in params:
        return
    text = params[name].strip()
    number = int(text) if text.lstrip("-").isdigit() else None
    if number is None or number < low or (high is not None and number > high):
        bound = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ApiError(400, "invalid_option", f"{name} must be a whole number {bound}, got {shown(text)}")


def _background(value: str) -> str | None:
    """rembg's ``bgc`` (``r,g,b,a``, each 0-255) as MatteFlow's ``#rrggbb``; None for a transparent one."""
    parts = [p.strip() for p in value.split(",")]
    numbers = [int(p) for p in parts if p.isdigit() and int(p) <= 255]
    if len(parts) != 4 or len(numbers) != 4:
        raise ApiError(400, "invalid_option", f"bgc must be r,g,b,a with each from 0 to 255, got {shown(value)}")
    red, green, blue, alpha = numbers
    if alpha == 0:
        return None
    if alpha != 255:
        raise ApiError(400, "invalid_option", f"bgc alpha must be 255 (opaque) or 0 (transparent), got {alpha}")
    return f"#{red:02x}{green:02x}{blue:02x}"


def _fields(params: Mapping[str, str]) -> dict[str, str]:
    refuse_unknown(params, KNOWN, "rembg")
    fields = {"format": "png"}
    model = params.get("model", "").strip()
    if model in OTHER_TASKS:
        raise ApiError(400, "invalid_option", f"rembg's model {shown(model)} is not available here (another task)")
    if model:
        if model not in REMBG_MODELS and model not in MODEL_NAMES:
            names = ", ".join((*REMBG_MODELS, *MODEL_NAMES))
            raise ApiError(400, "invalid_option", f"model must be one of {names}, got {shown(model)}")
        fields["model"] = REMBG_MODELS.get(model, model)
    if flag(params, "a", "invalid_option"):
        fields["refine"] = "true"
    _int_in(params, "af", 0, 255)
    _int_in(params, "ab", 0, 255)
    _int_in(params, "ae", 0, None)
    if flag(params, "om", "invalid_option"):
        fields["mask"] = "true"
    if flag(params, "ppm", "invalid_option"):
        fields["feather"] = "true"
    colour = _background(params["bgc"]) if params.get("bgc", "").strip() else None
    if colour:
        fields["background"] = colour
    if params.get("extras", "").strip() not in ("", "{}"):
        raise ApiError(400, "invalid_option", "extras (rembg's session arguments) are not supported by this server")
    return fields


def _remove(upload: tuple[str, IO[bytes]] | None, url: str | None, params: Mapping[str, str]) -> Response:
    fields = _fields(params)
    options = read_resolved_options(fields, default_model=web_context().settings.default_model).options
    with single_image_slot(), ExitStack() as stack:
        name, data = open_image(stack, upload, url)
        single = run_single(name, data, options, None)
    body = single.mask if options.mask and single.mask is not None else single.image
    return Response(body, mimetype="image/png", headers=result_headers(single))


@bp.post("/remove")
def remove_sent() -> Response:
    refuse_nameless_parts(request.form, request.files)
    uploads = read_uploads(request.files.getlist("file"))
    if not uploads:
        raise ApiError(400, "no_file", "send the image in the multipart field 'file'")
    if len(uploads) > 1:
        raise ApiError(400, "too_many_files", "this endpoint takes one image; use POST /api/v1/jobs for several")
    return _remove(uploads[0], None, {**request.args.to_dict(), **request.form.to_dict()})


@bp.get("/remove")
def remove_fetched() -> Response:
    url = request.args.get("url", "").strip()
    if not url:
        raise ApiError(400, "no_file", "name the image in the query parameter 'url'")
    return _remove(None, url, request.args.to_dict())
