"""The rembg server's API (``rembg s``): ``POST /api/remove`` with the image in ``file``, ``GET /api/remove?url=``.

rembg's parameters map onto MatteFlow's options as rembg's Python ``remove`` does on MatteFlow
(:mod:`matteflow.rembg`, one mapping for both): ``model`` (rembg's model names, or MatteFlow's own
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
from matteflow.rembg import rembg_options

from ..api import open_image, result_headers, run_single, single_image_slot
from ..context import web_context
from ..errors import ApiError
from ..uploads import read_resolved_options, read_uploads, refuse_nameless_parts
from .params import flag, refuse_unknown

bp = Blueprint("rembg", __name__, url_prefix="/api")

# rembg's parameters: in the form (POST) or the query (GET); bgc and extras always in the query.
FORM_PARAMS = ("model", "a", "af", "ab", "ae", "om", "ppm")
QUERY_PARAMS = ("bgc", "extras")
KNOWN = (*FORM_PARAMS, *QUERY_PARAMS, "url")


def _int_in(params: Mapping[str, str], name: str, low: int, high: int | None) -> None:
    """rembg's trimap numbers: checked as rembg checks them, without effect here."""
    if name not in params:
        return
    text = params[name].strip()
    number = _whole(text)
    if number is None or number < low or (high is not None and number > high):
        bound = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ApiError(400, "invalid_option", f"{name} must be a whole number {bound}, got {shown(text)}")


def _background(value: str) -> tuple[int, ...]:
    """rembg's ``bgc`` (``r,g,b,a``) as numbers; their ranges are checked with rembg's Python ``bgcolor``."""
    numbers = [_whole(p) for p in value.split(",")]
    if any(n is None for n in numbers):
        raise ApiError(400, "invalid_option", f"bgc must be r,g,b,a with each from 0 to 255, got {shown(value)}")
    return tuple(n for n in numbers if n is not None)


def _whole(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:  # words, "--5", superscript digits
        return None


def _fields(params: Mapping[str, str]) -> dict[str, str]:
    refuse_unknown(params, KNOWN, "rembg")
    _int_in(params, "af", 0, 255)
    _int_in(params, "ab", 0, 255)
    _int_in(params, "ae", 0, None)
    if params.get("extras", "").strip() not in ("", "{}"):
        raise ApiError(400, "invalid_option", "extras (rembg's session arguments) are not supported by this server")
    bgc = params.get("bgc", "").strip()
    return rembg_options(
        model=params.get("model", "").strip() or None,
        alpha_matting=flag(params, "a", "invalid_option"),
        only_mask=flag(params, "om", "invalid_option"),
        post_process_mask=flag(params, "ppm", "invalid_option"),
        bgcolor=_background(bgc) if bgc else None,
    )


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
