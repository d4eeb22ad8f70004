"""The Python API for people who embed MatteFlow: ``from matteflow import remove``."""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .core.engine import MatteEngine
    from .core.imageio import DecodedImage

DEFAULT_MAX_PIXELS = 60_000_000


@functools.lru_cache(maxsize=4)
def get_engine(
    people: str = "default", general: str = "general", device: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS
) -> MatteEngine:
    """A shared engine per (model specs, device): each network is loaded once per process, on first use.

    ``people`` and ``general`` are :func:`~matteflow.core.model.load_model` specs of the networks behind the
    two model names; which one runs is the option ``model`` of :func:`remove`.
    """
    from .core.engine import MatteEngine
    from .core.registry import ModelSet

    return MatteEngine(ModelSet.from_specs(people, general, device), max_pixels=max_pixels)


@overload
def remove(
    image: bytes,
    *,
    engine: MatteEngine | None = ...,
    instruction: str | None = ...,
    background_image: bytes | Image.Image | np.ndarray | None = ...,
    **options: Any,
) -> bytes: ...
@overload
def remove(
    image: Image.Image,
    *,
    engine: MatteEngine | None = ...,
    instruction: str | None = ...,
    background_image: bytes | Image.Image | np.ndarray | None = ...,
    **options: Any,
) -> Image.Image: ...
@overload
def remove(
    image: np.ndarray,
    *,
    engine: MatteEngine | None = ...,
    instruction: str | None = ...,
    background_image: bytes | Image.Image | np.ndarray | None = ...,
    **options: Any,
) -> np.ndarray: ...


def remove(
    image: bytes | Image.Image | np.ndarray,
    *,
    engine: MatteEngine | None = None,
    instruction: str | None = None,
    background_image: bytes | Image.Image | np.ndarray | None = None,
    **options: Any,
) -> Any:
    """Remove the background of one image; the result has the type of the input.

    - ``bytes`` (an encoded file) -> encoded bytes in ``format`` (png by default);
    - ``PIL.Image`` -> a PIL image (RGBA when transparent, else RGB);
    - ``numpy`` H x W x 3 (RGB) or H x W x 4 (RGBA) uint8 array -> an array (H x W x 4 or H x W x 3).

    ``options`` are the matting options (preset, background, format, alpha_threshold, erode, feather,
    max_side, model: ``auto`` (default), ``people``, ``general`` or ``ensemble``; keep, id_size, max_kb, sheet,
    crop, crop_margin, output_size, refine). ``background_image`` (encoded bytes, a PIL image or an RGB array) is put
    behind the cut-out, scaled to cover it, instead of a colour.
    ``instruction`` says what you want in words, 中文 or English (``"蓝底二寸证件照"``), read offline;
    explicit ``options`` win over it. ``engine`` defaults to a shared engine with the shipped models. Raises
    :class:`matteflow.core.errors.InvalidImageError` / ``InvalidOptionError`` for bad input.
    """
    from .core.instructions import resolve_options

    if background_image is not None:
        options = {**options, "background_image": True}
    parsed = resolve_options(options, instruction).options
    engine = engine or get_engine()
    backdrop = (
        None if background_image is None else decode_input(background_image, engine.max_pixels, "background_image")
    )
    if isinstance(image, (bytes, bytearray, memoryview)):
        return engine.process_bytes(bytes(image), parsed, None if backdrop is None else backdrop.rgb).image
    decoded = decode_input(image, engine.max_pixels, "remove()")
    pixels, _ = engine.process_array(decoded.rgb, parsed, decoded.alpha, None if backdrop is None else backdrop.rgb)
    return Image.fromarray(pixels) if isinstance(image, Image.Image) else pixels


def decode_input(image: bytes | Image.Image | np.ndarray, max_pixels: int, what: str) -> DecodedImage:
    """Any image ``remove()`` takes (the photo or its backdrop) as an upright RGB array plus its own alpha.
    A PIL image goes through the same decoder as bytes (every mode converted the same way)."""
    from .core.imageio import DecodedImage, decode_image

    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), max_pixels)
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=0)
        return decode_image(buffer.getvalue(), max_pixels)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an H x W x 3|4 uint8 array, got {image.shape} {image.dtype}")
        alpha = image[:, :, 3] if image.shape[2] == 4 else None
        return DecodedImage(np.ascontiguousarray(image[:, :, :3]), alpha)
    raise TypeError(f"{what} takes bytes, a PIL image or a numpy array, not {type(image).__name__}")
