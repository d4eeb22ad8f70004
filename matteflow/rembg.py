"""rembg's Python API on MatteFlow: replace ``from rembg import remove, new_session`` with
``from matteflow.rembg import remove, new_session`` and the calls stay as they are.

``remove(data, alpha_matting=..., only_mask=..., post_process_mask=..., bgcolor=..., session=...)`` takes and
returns what rembg's does (bytes -> PNG bytes, PIL image -> PIL image, array -> array). rembg's parameters
become MatteFlow's options, as on the rembg-compatible HTTP endpoint (``web/compat/rembg.py``, which uses
the same mapping):

- a session's model: rembg's person models run MatteFlow's people model, its general ones the general model
  (MatteFlow's own names ``auto``, ``people``, ``general``, ``ensemble`` work too); no session: ``auto``;
- ``alpha_matting``: MatteFlow's edge refinement (its trimap thresholds and erosion are not needed: the
  refinement picks its own band); ``post_process_mask``: feathering; ``only_mask``: the matte alone;
- ``bgcolor`` ``(r, g, b, a)``: a background colour (alpha 255) or none (alpha 0); the result stays RGBA as
  rembg's does. Other values of alpha, rembg's custom-model and clothing sessions, are refused
  (:class:`~matteflow.core.errors.InvalidOptionError`), never approximated silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .core.errors import InvalidOptionError, shown
from .core.registry import MODEL_NAMES

# rembg's model names and the MatteFlow model that stands in for each.
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
# rembg models for another task (clothes, prompted segmentation) or a custom file: no equivalent here.
OTHER_TASKS = ("u2net_cloth_seg", "sam", "u2net_custom", "dis_custom")


def matteflow_model(name: str) -> str:
    """The MatteFlow model that stands in for rembg's ``name`` (MatteFlow's own names pass through)."""
    if name in OTHER_TASKS:
        raise InvalidOptionError(f"rembg's model {shown(name)} is not available here (another task)")
    if name in MODEL_NAMES:
        return name
    if name not in REMBG_MODELS:
        raise InvalidOptionError(f"model must be one of {', '.join((*REMBG_MODELS, *MODEL_NAMES))}, got {shown(name)}")
    return REMBG_MODELS[name]


def background_colour(rgba: tuple[int, ...]) -> str | None:
    """rembg's ``bgcolor`` (r, g, b, a) as MatteFlow's ``#rrggbb``; None for a fully transparent one."""
    if len(rgba) != 4 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in rgba):
        raise InvalidOptionError(f"bgcolor must be r,g,b,a with each from 0 to 255, got {shown(rgba)}")
    red, green, blue, alpha = (int(v) for v in rgba)
    if alpha == 0:
        return None
    if alpha != 255:
        raise InvalidOptionError(f"bgcolor alpha must be 255 (opaque) or 0 (transparent), got {alpha}")
    return f"#{red:02x}{green:02x}{blue:02x}"


def rembg_options(
    model: str | None, alpha_matting: bool, only_mask: bool, post_process_mask: bool, bgcolor: tuple[int, ...] | None
) -> dict[str, str]:
    """MatteFlow's option fields for rembg's parameters (no model: the caller's default)."""
    fields = {"format": "png"}
    if model:
        fields["model"] = matteflow_model(model)
    if alpha_matting:
        fields["refine"] = "true"
    if only_mask:
        fields["mask"] = "true"
    if post_process_mask:
        fields["feather"] = "true"
    colour = background_colour(bgcolor) if bgcolor is not None else None
    if colour:
        fields["background"] = colour
    return fields


@dataclass(frozen=True)
class Session:
    """What rembg's ``new_session`` returns: here only the name of the model to run (networks are loaded
    once per process by MatteFlow's shared engine, whatever the number of sessions)."""

    model_name: str

    def __post_init__(self) -> None:
        matteflow_model(self.model_name)  # an unknown or unavailable model fails here, as in rembg


def new_session(model_name: str = "u2net", *args: Any, **kwargs: Any) -> Session:
    return Session(model_name)


def remove(
    data: bytes | Image.Image | np.ndarray,
    alpha_matting: bool = False,
    alpha_matting_foreground_threshold: int = 240,
    alpha_matting_background_threshold: int = 10,
    alpha_matting_erode_size: int = 10,
    session: Session | None = None,
    only_mask: bool = False,
    post_process_mask: bool = False,
    bgcolor: tuple[int, int, int, int] | None = None,
    *args: Any,
    **kwargs: Any,
) -> bytes | Image.Image | np.ndarray:
    """rembg's ``remove`` on MatteFlow's models and pipeline (see the module's note for the mapping). The
    matte of ``only_mask`` is H x W ('L'); a cut-out is RGBA, opaque where ``bgcolor`` fills the background."""
    from .api import decode_input, get_engine
    from .core.imageio import encode_image, encode_mask
    from .core.options import parse_options

    fields = rembg_options(
        session.model_name if session else None, alpha_matting, only_mask, post_process_mask, bgcolor
    )
    options = parse_options(fields)
    engine = get_engine()
    decoded = decode_input(data, engine.max_pixels, "remove()")
    pixels, alpha = engine.process_array(decoded.rgb, options, decoded.alpha)
    if only_mask:
        out = alpha
    elif pixels.shape[2] == 3:  # on a colour: rembg still answers RGBA
        out = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
    else:
        out = pixels
    if isinstance(data, Image.Image):
        return Image.fromarray(out)
    if isinstance(data, np.ndarray):
        return out
    return encode_mask(out) if out.ndim == 2 else encode_image(out, "png")
