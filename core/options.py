"""Matting options: one validated, immutable object shared by the CLI, the HTTP API and the workers.

Names match the design contract: ``preset``, ``background``, ``format``, ``alpha_threshold``, ``erode``,
``feather``, ``max_side``, ``mask``, ``model``; and ``crop`` (``none``, ``subject`` or ``square``) with
``crop_margin`` (percent of the subject's long side), ``keep`` (``all`` or ``main``: only the main person(s)),
``id_size`` (a standard ID/passport photo size, :mod:`matteflow.core.idsizes`), ``max_kb`` (an upper bound on
the output file's size), ``sheet``, ``refine`` (closed-form matting of the edge band), ``shadow`` (a soft drop
shadow under the subject). A preset fills defaults; explicitly given options override it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .cropping import CROP_MODES, MAX_CROP_MARGIN, MAX_OUTPUT_SIDE
from .errors import InvalidOptionError, shown
from .idsizes import ID_SIZES
from .registry import DEFAULT_MODEL, parse_model_name

FORMATS = ("png", "jpeg", "webp")
FORMAT_ALIASES = {"jpg": "jpeg"}
FORMAT_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
MAX_ERODE = 64
MAX_SIDE_LIMIT = 16384
KEEP_CHOICES = ("all", "main")
MAX_KB_LIMIT = 1_000_000
_HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6})$")
_OUTPUT_SIZE = re.compile(r"^(\d{1,5})(?:\s*[x×*]\s*(\d{1,5}))?$")

# The seeds' presets. A preset only supplies defaults: anything the caller sets explicitly wins.
PRESETS: dict[str, dict[str, Any]] = {
    # Passport/ID photos: flat white background, crisp edge, no stray fringe.
    "id-photo": {
        "background": "#ffffff",
        "format": "jpeg",
        "alpha_threshold": 18,
        "erode": 2,
        "feather": False,
    },
    # Product/catalogue cut-outs: transparent PNG whose edge is solved against the photo (refine), so fur,
    # fibres and soft outlines keep their true partial transparency and lose the old background's fringe:
    # objects_dev 0.896 IoU / 31.8 SAD with the feathered edge this preset used to have, 0.909 / 26.9 refined
    # (the solved edge is already soft: feathering it too gave 27.3), for ~0.4 s more CPU per photo; with
    # auto's second opinion at 320 (stop 27) 0.970 / 8.4. No fixed model: auto, the default, beats the general
    # model alone on objects_dev (the people model is far better on the doll and plush toys, 0.98 vs 0.51) and
    # also serves a catalogue photo with a person in it. --model general forces it (models/README.md, "Auto",
    # "Edge refinement").
    "ecommerce": {
        "background": "transparent",
        "format": "png",
        "alpha_threshold": 10,
        "feather": False,
        "refine": True,
    },
    # Marketplace main images (Amazon, eBay, Etsy): the product centred on a pure white square, filling about
    # 85 % of it (8 % margin each side: 1 / 1.16 = 0.86), as those listings ask; JPEG, the format they take.
    # The edge is refined as in ecommerce: on white, the old background's fringe is what shows.
    "marketplace": {
        "background": "#ffffff",
        "format": "jpeg",
        "alpha_threshold": 10,
        "feather": False,
        "refine": True,
        "crop": "square",
        "crop_margin": 8,
    },
    # Profile pictures: keep fine hair. The edge is solved against the photo (refine) instead of eroded: on
    # people_dev erode 1 cost 0.017 IoU and 5 % SAD, and refinement takes the old background's glow off the
    # hair that the erosion was there for (models/README.md, "Edge refinement").
    "avatar": {
        "background": "transparent",
        "format": "png",
        "alpha_threshold": 6,
        "erode": 0,
        "feather": False,
        "refine": True,
    },
}
# Real ID and passport photos: the id-photo look, cropped and scaled around the head to a standard size.
# Only the person: a stray piece of matte would show on the plain background.
PRESETS.update(
    {size.preset: {**PRESETS["id-photo"], "id_size": size.name, "keep": "main"} for size in ID_SIZES.values()}
)

OPTION_NAMES = (
    "preset",
    "background",
    "format",
    "alpha_threshold",
    "erode",
    "feather",
    "max_side",
    "mask",
    "model",
    "keep",
    "id_size",
    "max_kb",
    "sheet",
    "crop",
    "crop_margin",
    "output_size",
    "background_image",
    "refine",
    "shadow",
)


@dataclass(frozen=True)
class MatteOptions:
    """Post-processing and output options, already validated.

    ``background`` is ``None`` for transparent output or an ``(r, g, b)`` tuple of 0-255 ints.
    ``max_side`` of ``None`` keeps the input size; otherwise the output's long side is at most that.
    ``model`` is ``auto``, ``people``, ``general`` or ``ensemble`` (:mod:`matteflow.core.registry`).
    ``keep`` ``main`` drops small pieces of matte apart from the main person(s); ``id_size`` names an entry of
    :data:`ID_SIZES` (output cropped and scaled to it, 300 dpi); ``max_kb`` bounds the file size (KiB);
    ``sheet`` lays copies of the ID photo out on 4 x 6 in paper with cut lines, for printing. ``crop``
    ``subject`` trims the output to the subject, ``square`` centres it on a square canvas; ``crop_margin`` adds
    that percent of the subject's long side around it; ``output_size`` ``(width, height)`` scales the result
    to exactly that, the canvas widened to its shape (:mod:`matteflow.core.cropping`). ``background_image``:
    the cut-out is composited over a backdrop photo that travels beside the options (an upload of the job, a
    file given to the CLI), scaled to cover the frame; ``background`` is then ``None``. ``refine`` solves the
    matte's undecided edge band against the photo (closed-form matting, :mod:`matteflow.core.refine`): finer
    hair and fur, about 0.2-1 s more per photo. ``shadow`` lays a soft drop shadow under the subject (on the
    background colour or photo, or as partial black alpha in a transparent output), as catalogue photos have.
    """

    preset: str | None = None
    background: tuple[int, int, int] | None = None
    format: str = "png"
    alpha_threshold: int = 0
    erode: int = 0
    feather: bool = False
    max_side: int | None = None
    mask: bool = False
    model: str = DEFAULT_MODEL
    keep: str = "all"
    id_size: str | None = None
    max_kb: int | None = None
    sheet: bool = False
    crop: str = "none"
    crop_margin: int = 0
    output_size: tuple[int, int] | None = None
    background_image: bool = False
    refine: bool = False
    shadow: bool = False

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]

    @property
    def media_type(self) -> str:
        return f"image/{self.format}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict that :func:`parse_options` turns back into an equal object."""
        data = asdict(self)
        data["background"] = format_colour(self.background)
        data["output_size"] = format_output_size(self.output_size)
        return data


def format_colour(colour: tuple[int, int, int] | None) -> str:
    if colour is None:
        return "transparent"
    return "#{:02x}{:02x}{:02x}".format(*colour)


def format_output_size(size: tuple[int, int] | None) -> str:
    return "none" if size is None else f"{size[0]}x{size[1]}"


def parse_output_size(value: Any) -> tuple[int, int] | None:
    """``1000x800`` (or ``1000`` for a square, or a (width, height) pair) -> (1000, 800); ``none`` -> None."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    text = str(value).strip().lower()
    if text in ("", "none"):
        return None
    match = _OUTPUT_SIZE.match(text)
    if match:
        width = int(match.group(1))
        height = int(match.group(2) or width)
        if 16 <= width <= MAX_OUTPUT_SIDE and 16 <= height <= MAX_OUTPUT_SIDE:
            return (width, height)
    raise InvalidOptionError(
        f"output_size must be WIDTHxHEIGHT (or one number for a square), each from 16 to {MAX_OUTPUT_SIDE} px, "
        f"got {shown(value)}"
    )


def parse_colour(value: Any) -> tuple[int, int, int] | None:
    """``transparent`` / ``none`` -> None; ``#rrggbb`` (or ``rrggbb``) -> (r, g, b)."""
    if value is None:
        return None
    is_triplet = isinstance(value, (tuple, list)) and len(value) == 3
    if is_triplet and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return (int(value[0]), int(value[1]), int(value[2]))
    text = str(value).strip()
    if text.lower() in ("transparent", "none", ""):
        return None
    match = _HEX_COLOUR.match(text)
    if not match:
        raise InvalidOptionError(f"background must be 'transparent' or a colour like '#ffffff', got {shown(value)}")
    hex_digits = match.group(1)
    return (int(hex_digits[0:2], 16), int(hex_digits[2:4], 16), int(hex_digits[4:6], 16))


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise InvalidOptionError(f"{name} must be true or false, got {shown(value)}")


def _parse_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InvalidOptionError(f"{name} must be a whole number from {low} to {high}, got {shown(value)}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InvalidOptionError(f"{name} must be a whole number from {low} to {high}, got {shown(value)}") from None
    if not low <= number <= high:
        raise InvalidOptionError(f"{name} must be from {low} to {high}, got {number}")
    return number


def _parse_optional_int(name: str, value: Any, low: int, high: int) -> int | None:
    """``None``, empty or ``none`` mean "no limit"; anything else must be a number in range."""
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    return _parse_int(name, value, low, high)


def _parse_format(value: Any) -> str:
    text = str(value).strip().lower()
    text = FORMAT_ALIASES.get(text, text)
    if text not in FORMATS:
        raise InvalidOptionError(f"format must be one of {', '.join(FORMATS)}, got {shown(value)}")
    return text


def _parse_keep(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in KEEP_CHOICES:
        raise InvalidOptionError(f"keep must be one of {', '.join(KEEP_CHOICES)}, got {shown(value)}")
    return text


def _parse_id_size(value: Any) -> str | None:
    text = str(value).strip().lower()
    if text in ("", "none"):
        return None
    if text not in ID_SIZES:
        raise InvalidOptionError(f"id_size must be one of {', '.join(ID_SIZES)}, got {shown(value)}")
    return text


def _parse_crop(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in CROP_MODES:
        raise InvalidOptionError(f"crop must be one of {', '.join(CROP_MODES)}, got {shown(value)}")
    return text


def _settle_crop(options: MatteOptions, raw: Mapping[str, Any]) -> MatteOptions:
    """A crop, its margin or an output size from a preset yields to what the caller set; a contradiction the
    caller wrote is an error."""
    settled = asdict(options)
    if options.id_size is not None:
        for name, unset in (("crop", "none"), ("output_size", None)):
            if settled[name] != unset:
                if name in raw:
                    raise InvalidOptionError(f"{name} and id_size both frame the output: give one of them")
                settled[name] = unset
    if settled["crop"] == "none" and options.crop_margin:
        if "crop_margin" in raw:
            raise InvalidOptionError("crop_margin is the margin of a crop: give crop subject or square with it")
        settled["crop_margin"] = 0
    return MatteOptions(**settled)


def parse_options(
    values: Mapping[str, Any] | None = None, *, default_model: str = DEFAULT_MODEL, **overrides: Any
) -> MatteOptions:
    """Validate raw option values (strings from a form or CLI, or typed values) into :class:`MatteOptions`.

    Keys that are ``None`` count as not given. Unknown names and bad values raise
    :class:`InvalidOptionError` with a message that names the option. ``default_model`` is the model when
    neither the values nor their preset name one (the deployment's ``MATTEFLOW_DEFAULT_MODEL``).
    """
    raw: dict[str, Any] = {k: v for k, v in {**(values or {}), **overrides}.items() if v is not None}
    unknown = sorted(shown(name) for name in set(raw) - set(OPTION_NAMES))
    if unknown:
        raise InvalidOptionError(f"unknown option(s): {', '.join(unknown)}; known: {', '.join(OPTION_NAMES)}")

    preset = raw.get("preset")
    if preset is not None:
        preset = str(preset).strip().lower()
        if preset in ("", "none"):
            preset = None
        elif preset not in PRESETS:
            raise InvalidOptionError(f"preset must be one of {', '.join(PRESETS)}, got {shown(raw['preset'])}")
    merged: dict[str, Any] = {**(PRESETS[preset] if preset else {}), **raw}

    # Not given: absent, empty or "none"; 0 is refused like any other size under 16 (the OpenAPI minimum).
    max_side = _parse_optional_int("max_side", merged.get("max_side"), 16, MAX_SIDE_LIMIT)
    options = MatteOptions(
        preset=preset,
        background=parse_colour(merged.get("background", "transparent")),
        format=_parse_format(merged.get("format", "png")),
        alpha_threshold=_parse_int("alpha_threshold", merged.get("alpha_threshold", 0), 0, 255),
        erode=_parse_int("erode", merged.get("erode", 0), 0, MAX_ERODE),
        feather=_parse_bool("feather", merged.get("feather", False)),
        max_side=max_side,
        mask=_parse_bool("mask", merged.get("mask", False)),
        model=parse_model_name(merged.get("model", default_model)),
        keep=_parse_keep(merged.get("keep", "all")),
        id_size=_parse_id_size(merged.get("id_size", "none")),
        max_kb=_parse_optional_int("max_kb", merged.get("max_kb"), 1, MAX_KB_LIMIT),
        sheet=_parse_bool("sheet", merged.get("sheet", False)),
        crop=_parse_crop(merged.get("crop", "none")),
        crop_margin=_parse_int("crop_margin", merged.get("crop_margin", 0), 0, MAX_CROP_MARGIN),
        output_size=parse_output_size(merged.get("output_size")),
        background_image=_parse_bool("background_image", merged.get("background_image", False)),
        refine=_parse_bool("refine", merged.get("refine", False)),
        shadow=_parse_bool("shadow", merged.get("shadow", False)),
    )
    options = _settle_crop(options, raw)
    if options.sheet and options.id_size is None:
        raise InvalidOptionError("sheet lays out ID photos: give an id_size (or an id-*/passport-* preset)")
    if options.background_image and options.background is not None:
        # A preset's colour yields to the photo; a colour the caller named too is a contradiction.
        if "background" in raw:
            raise InvalidOptionError("give a background colour or a background image, not both")
        options = MatteOptions(**{**asdict(options), "background": None})
    opaque = options.background is not None or options.background_image
    if options.sheet and not opaque:
        raise InvalidOptionError("sheet is printed: give a background colour, not transparent")
    if options.format == "jpeg" and not opaque:
        # JPEG has no alpha channel. Asked for explicitly, that is a contradiction to report; left unset (or
        # from a transparent preset), white is the expected default.
        if "background" in raw:
            raise InvalidOptionError("format jpeg cannot be transparent: give a background colour or use png/webp")
        options = MatteOptions(**{**asdict(options), "background": (255, 255, 255)})
    return options
