"""remove.bg's API, ``POST /v1.0/removebg``: point a remove.bg client at ``http(s)://<server>/v1.0``.

The request is remove.bg's (multipart, form or JSON; ``image_file`` / ``image_file_b64`` / ``image_url``;
``size``, ``type``, ``format``, ``channels``, ``bg_color``, ``bg_image_file`` / ``bg_image_url``, ``crop``,
``crop_margin``, ``add_shadow``); so is the answer: the image with ``X-Width``, ``X-Height``,
``X-Foreground-*`` and ``X-Type`` headers, ``{"data": {"result_b64", ...}}`` for ``Accept:
application/json``, and errors as ``{"errors": [{"title", "code"}]}`` with remove.bg's status codes and
error codes. remove.bg's ``scale``, ``position`` and ``roi`` are taken at their defaults only (refused
otherwise, by name); no credits are counted (``X-Credits-Charged: 0``).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import zipfile
from contextlib import ExitStack
from typing import IO, Any

import numpy as np
from flask import Blueprint, Response, jsonify, request
from PIL import Image, ImageColor

from matteflow.core.cropping import find_subject_box
from matteflow.core.errors import shown
from matteflow.core.imageio import probe_image
from matteflow.fetch import FetchRefused, ImageFetchError
from matteflow.workers.client import SingleResult

from ..api import fetched_image, open_image, result_headers, run_single, single_image_slot
from ..context import web_context
from ..errors import ApiError, reply_for
from ..jobindex import parse_api_keys, presented_key, request_owner
from ..uploads import read_resolved_options, read_uploads, refuse_nameless_parts
from .params import choice, flag, refuse_unknown

bp = Blueprint("removebg", __name__, url_prefix="/v1.0")

# ``size``: the most pixels of the result (remove.bg's names and aliases); None keeps the photo's size (up to
# this server's MATTEFLOW_MAX_PIXELS, which every upload is held to anyway).
SIZES: dict[str, float | None] = {
    "preview": 0.25e6,
    "small": 0.25e6,
    "regular": 0.25e6,
    "medium": 1.5e6,
    "hd": 4e6,
    "full": None,
    "4k": None,
    "auto": None,
}
# ``type``: which MatteFlow model runs (None: the deployment's default, ``auto`` unless changed).
TYPES: dict[str, str | None] = {
    "auto": None,
    "person": "people",
    "product": "general",
    "animal": "general",
    "car": "general",
    "car_interior": "general",
    "car_part": "general",
    "transportation": "general",
    "graphics": "general",
    "other": "general",
}
FORMATS = ("auto", "png", "jpg", "zip")
CHANNELS = ("rgba", "alpha")
TYPE_LEVELS = ("none", "1", "2", "latest")
# remove.bg parameters taken at their default values only: what they do has no MatteFlow equivalent.
DEFAULT_ONLY: dict[str, tuple[str, ...]] = {
    "scale": ("original",),
    "position": ("original",),
    "roi": ("0% 0% 100% 100%",),
}
# Accepted and without effect: MatteFlow's mattes always keep soft edges where the photo has them.
WITHOUT_EFFECT = ("semitransparency",)
IMAGE_SOURCES = ("image_file", "image_file_b64", "image_url")
BACKGROUND_SOURCES = ("bg_color", "bg_image_file", "bg_image_url")
KNOWN = {
    *IMAGE_SOURCES,
    *BACKGROUND_SOURCES,
    *DEFAULT_ONLY,
    *WITHOUT_EFFECT,
    "size",
    "type",
    "type_level",
    "format",
    "channels",
    "crop",
    "crop_margin",
    "add_shadow",
}
# Headers remove.bg answers with; the model that ran, as remove.bg names kinds of subject.
X_TYPE = {"people": "person", "general": "product"}

# MatteFlow's error codes, as remove.bg's clients know them (others keep their MatteFlow code).
REMOVEBG_CODES = {
    "no_file": "missing_source",
    "too_many_files": "multiple_sources",
    "invalid_image": "failed_to_read_image",
    "image_too_large": "resolution_too_high",
    "payload_too_large": "file_too_large",
    "image_fetch_failed": "failed_image_download",
    "url_not_allowed": "invalid_image_url",
    "busy": "rate_limit_exceeded",
    "invalid_api_key": "auth_failed",
    "api_keys_disabled": "auth_failed",
}
# remove.bg answers 400 for every bad input, 403 for a bad key and 429 when it is busy.
REMOVEBG_STATUS = {401: 403, 413: 400, 422: 400}


def _refuse(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


@bp.errorhandler(Exception)
def _removebg_error(exc: Exception) -> Response:
    reply = reply_for(exc)
    code = REMOVEBG_CODES.get(reply.code, reply.code)
    status = 429 if reply.code == "busy" else REMOVEBG_STATUS.get(reply.status, reply.status)
    response = jsonify({"errors": [{"title": reply.message, "code": code}]})
    response.status_code = status
    response.headers.update(reply.headers)
    return response


def _parameters() -> dict[str, str]:
    """The request's parameters as text, from a JSON object or a (multipart or url-encoded) form."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise _refuse("invalid_json", "the JSON body must be an object of remove.bg parameters")
        return {str(k): _as_text(v) for k, v in body.items() if v is not None}
    return {k: v for k, v in request.form.items() if v.strip() != ""}


def _as_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _flag(params: dict[str, str], name: str) -> bool:
    return flag(params, name, f"invalid_{name}")


def _choice(params: dict[str, str], name: str, allowed: Any, default: str) -> str:
    return choice(params, name, allowed, default, f"invalid_{name}")


def _background_colour(value: str) -> str | None:
    """remove.bg's ``bg_color`` (``81d4fa``, ``fff``, ``#81d4fa``, a colour name; 4 or 8 hex digits carry an
    alpha) as MatteFlow's ``#rrggbb``, or None for a fully transparent one."""
    text = value.strip()
    hex_digits = text.lstrip("#")
    spelled = f"#{hex_digits}" if len(hex_digits) in (3, 4, 6, 8) and _is_hex(hex_digits) else text
    try:
        rgba = ImageColor.getcolor(spelled, "RGBA")
    except ValueError:
        raise _refuse(
            "invalid_bg_color", f"bg_color must be a hex colour or a colour name, got {shown(value)}"
        ) from None
    red, green, blue, alpha = rgba  # type: ignore[misc]
    if alpha == 0:
        return None
    if alpha != 255:
        raise _refuse(
            "invalid_bg_color",
            f"bg_color {shown(value)} is partly transparent; this server puts opaque colours behind the cut-out "
            "(leave bg_color out for a transparent result)",
        )
    return f"#{red:02x}{green:02x}{blue:02x}"


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _crop_margin(value: str) -> str:
    """remove.bg's ``crop_margin`` as MatteFlow's percent of the subject's long side: one relative value
    (``10%``, or ``0``); margins in pixels or per side have no equivalent here."""
    text = value.strip()
    number = text[:-1].strip() if text.endswith("%") else text
    if number.isdecimal() and (text.endswith("%") or number == "0") and int(number) <= 100:
        return number
    raise _refuse(
        "invalid_crop_margin",
        f"crop_margin must be one margin in percent of the subject (e.g. 10%), got {shown(value)}; margins in "
        "pixels or per side are not supported by this server",
    )


def _check_unsupported(params: dict[str, str]) -> None:
    refuse_unknown(params, KNOWN, "remove.bg")
    for name in ("image_file", "bg_image_file"):
        if name in params:  # text where a file belongs (a form field, a JSON member)
            raise _refuse(
                f"invalid_{name}", f"{name} must be sent as a file (multipart); base64 text goes in image_file_b64"
            )
    for name, defaults in DEFAULT_ONLY.items():
        if name in params and params[name].strip().lower() not in defaults:
            raise _refuse(
                f"invalid_{name}",
                f"{name} other than {defaults[0]!r} is not supported by this server, got {shown(params[name])}",
            )
    for name in WITHOUT_EFFECT:
        _flag(params, name)
    _choice(params, "type_level", TYPE_LEVELS, "1")


def _options(params: dict[str, str], backdrop: bool) -> tuple[dict[str, str], str, str]:
    """MatteFlow options for the request (without the size cap) and the answer's format and channels."""
    fields: dict[str, str] = {"mask": "true"}  # the mask gives the foreground box and the alpha channel
    kind = _choice(params, "type", TYPES, "auto")
    if TYPES[kind]:
        fields["model"] = TYPES[kind]  # type: ignore[assignment]
    colour = _background_colour(params["bg_color"]) if "bg_color" in params else None
    if colour:
        fields["background"] = colour
    if backdrop:
        fields["background_image"] = "true"
    answer = _choice(params, "format", FORMATS, "auto")
    channels = _choice(params, "channels", CHANNELS, "rgba")
    opaque = bool(colour) or backdrop
    fields["format"] = "jpeg" if answer == "jpg" or (answer == "auto" and opaque) else "png"
    if _flag(params, "crop"):
        fields["crop"] = "subject"
        if "crop_margin" in params:
            fields["crop_margin"] = _crop_margin(params["crop_margin"])
    if _flag(params, "add_shadow"):
        fields["shadow"] = "true"
    return fields, answer, channels


def _max_side(width: int, height: int, size: str) -> int | None:
    """The long side that keeps ``width x height`` within the size's pixel count (None: keep it)."""
    most = SIZES[size]
    if most is None or width * height <= most:
        return None
    return max(1, math.floor(max(width, height) * math.sqrt(most / (width * height))))


def _image_source(
    params: dict[str, str], files: list[tuple[str, IO[bytes]]]
) -> tuple[tuple[str, IO[bytes]] | None, str | None]:
    given = [name for name in IMAGE_SOURCES if name in params] + (["image_file"] if files else [])
    if not given:
        raise ApiError(
            400, "no_file", "Please provide the source image in the image_url, image_file or image_file_b64 parameter."
        )
    if len(given) > 1 or len(files) > 1:
        raise ApiError(
            400,
            "too_many_files",
            "Multiple image sources given: please provide either image_url, image_file or image_file_b64.",
        )
    if files:
        return files[0], None
    if "image_url" in params:
        return None, params["image_url"].strip()
    return ("image", _base64_image(params["image_file_b64"])), None


def _base64_image(text: str) -> IO[bytes]:
    payload = text.split(",", 1)[1] if text.startswith("data:") else text  # a data: URL's payload
    try:
        return io.BytesIO(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise _refuse("failed_to_read_image", "image_file_b64 is not valid base64") from None


def _backdrop(params: dict[str, str], stack: ExitStack) -> IO[bytes] | None:
    """The background photo (``bg_image_file`` or ``bg_image_url``, read inside the call's slot)."""
    files = read_uploads(request.files.getlist("bg_image_file"))
    if files:
        return files[0][1]
    if "bg_image_url" not in params:
        return None
    try:
        return fetched_image(stack, params["bg_image_url"].strip())[1]
    except FetchRefused as exc:
        raise _refuse("invalid_bg_image_url", str(exc)) from None
    except ImageFetchError as exc:
        raise _refuse("failed_bg_download", str(exc)) from None


@bp.post("/removebg")
def removebg() -> Response:
    ctx = web_context()
    _check_key()
    refuse_nameless_parts(request.form, request.files)
    params = _parameters()
    _check_unsupported(params)
    size = _choice(params, "size", SIZES, "auto")
    backgrounds = [name for name in BACKGROUND_SOURCES if name in params] + (
        ["bg_image_file"] if request.files.getlist("bg_image_file") else []
    )
    if len(backgrounds) > 1:
        raise _refuse(
            "multiple_bg_sources",
            "Multiple background sources given: please provide either bg_color, bg_image_url or bg_image_file.",
        )
    fields, answer, channels = _options(params, backdrop=bool(backgrounds) and backgrounds[0] != "bg_color")
    upload, url = _image_source(params, read_uploads(request.files.getlist("image_file")))
    with single_image_slot(), ExitStack() as stack:
        name, data = open_image(stack, upload, url)
        backdrop = _backdrop(params, stack)
        info = probe_image(data, ctx.settings.max_pixels)
        data.seek(0)
        max_side = _max_side(info.width, info.height, size)
        if max_side is not None:
            fields["max_side"] = str(max_side)
        options = read_resolved_options(fields, default_model=ctx.settings.default_model).options
        single = run_single(name, data, options, backdrop)
    return _answer(single, answer, channels, params)


def _check_key() -> None:
    """A presented key is checked only where the deployment has keys (403 when it is not one of them):
    remove.bg clients always send theirs. Without a key the call is served as ``/api/v1/matte`` serves it."""
    keys = parse_api_keys(web_context().settings.api_keys)
    if keys and presented_key(request.headers) is not None:
        request_owner(request.headers, keys)


def _answer(single: SingleResult, answer: str, channels: str, params: dict[str, str]) -> Response:
    width, height, box = _foreground(single)
    if answer == "zip":
        body, media = _zip(single), "application/zip"
    elif channels == "alpha":
        body, media = (_as_jpeg(single.mask), "image/jpeg") if answer == "jpg" else (single.mask, "image/png")
    else:
        body, media = single.image, single.media_type
    foreground = {"top": box[1], "left": box[0], "width": box[2] - box[0], "height": box[3] - box[1]}
    if request.accept_mimetypes["application/json"] > request.accept_mimetypes[media]:
        data = {"result_b64": base64.b64encode(body).decode("ascii")}
        data.update({f"foreground_{k}": v for k, v in foreground.items()})
        response = jsonify({"data": data})
    else:
        response = Response(body, mimetype=media)
    response.headers.update(result_headers(single))
    response.headers.update({"X-Width": str(width), "X-Height": str(height), "X-Credits-Charged": "0"})
    response.headers.update({f"X-Foreground-{k.title()}": str(v) for k, v in foreground.items()})
    kind = params.get("type", "auto").strip().lower()
    subject = kind if kind != "auto" else X_TYPE.get(single.model or "")
    if subject and params.get("type_level", "1") != "none":
        response.headers["X-Type"] = subject
    return response


def _foreground(single: SingleResult) -> tuple[int, int, tuple[int, int, int, int]]:
    """The result's size and the subject's box in it (left, top, right, bottom; zeros when none), found as a
    crop to the subject finds it: its faint haze and stray specks left out."""
    assert single.mask is not None  # always asked for (see _options)
    with Image.open(io.BytesIO(single.mask)) as mask:
        width, height = mask.size
        subject = find_subject_box(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)
    return width, height, (subject.left, subject.top, subject.right, subject.bottom) if subject else (0, 0, 0, 0)


def _as_jpeg(png: bytes) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.convert("L").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _zip(single: SingleResult) -> bytes:
    """remove.bg's ZIP: the subject's colours (``color.jpg``) and its alpha (``alpha.png``), the same size."""
    assert single.mask is not None
    colours = io.BytesIO()
    with Image.open(io.BytesIO(single.image)) as image:
        image.convert("RGB").save(colours, format="JPEG", quality=95)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("color.jpg", colours.getvalue())
        archive.writestr("alpha.png", single.mask)
    return buffer.getvalue()
