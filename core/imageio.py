"""Reading untrusted image bytes safely, and encoding results.

Every decoded image comes out as an ``H x W x 3`` uint8 sRGB array, upright (EXIF orientation applied),
whatever the input's format (JPEG, PNG, WebP, HEIC, AVIF, BMP, TIFF), mode (CMYK, grayscale, 16-bit, palette,
RGBA) or embedded colour profile (Adobe RGB, Display P3, a press CMYK profile: converted to sRGB, which results
are written in). The pixel limit is checked from the header, before any pixel is decoded, so a "pixel bomb"
costs nothing.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO, Any

import cv2
import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageTooLargeError, InvalidImageError

log = logging.getLogger(__name__)

# HEIC/HEIF (what iPhones and many Android phones save) through libheif, bundled in pillow-heif's wheels; AVIF is
# Pillow's own. Registered on import so every reader (CLI, web intake, workers) knows the format.
pillow_heif.register_heif_opener()

# Formats we accept. MPO is the multi-picture JPEG many phone cameras write; HEIF is HEIC's container.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "HEIF", "AVIF"})
FORMATS_NAMED = "JPEG, PNG, WebP, HEIC, AVIF, BMP or TIFF"
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif"}
)


def is_image_name(path: PurePath) -> bool:
    """Whether a file found in a folder is taken as a photo: an image suffix, and not hidden (editors' and copy
    tools' temporaries start with a dot)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# Truncated files must fail loudly rather than come out with a grey bottom half.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Memory per pixel at the working size, measured with tools in bench/intake_probe.py: a 7700x7700 PNG peaked at
# 2.66 GB (about 45 bytes per pixel: float32 mattes and guided-filter planes, the RGBA output, the encoder's copy).
PEAK_BYTES_PER_PIXEL = 48
DECODE_BYTES_PER_PIXEL = 4  # the decoder's RGBA frame at full size, before a max_side downscale

PNG_COMPRESSION = 1  # zlib level 1: PNG encoding is the largest fixed cost per 1080p image
# libpng's default tries every row filter on every row and keeps the best guess; the "up" filter alone
# encoded our 1080p cut-outs 1.7x faster (106 -> 62 ms RGBA, 21 -> 9 ms masks) into files no larger
# (1037 vs 1065 KB; bench/README.md). OpenCV < 4.11 has no filter parameter and keeps the default.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION] + (
    [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP] if hasattr(cv2, "IMWRITE_PNG_FILTER") else []
)
JPEG_QUALITY = 93
WEBP_QUALITY = 90


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: size in pixels (before EXIF rotation) and the container format."""

    width: int
    height: int
    format: str


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upright image: ``rgb`` is H x W x 3 uint8; ``alpha`` is H x W uint8 or None when opaque."""

    rgb: np.ndarray
    alpha: np.ndarray | None


def _open(data: bytes | IO[bytes], max_pixels: int) -> Image.Image:
    if isinstance(data, (bytes, bytearray, memoryview)):
        source: IO[bytes] = io.BytesIO(data)
    else:
        source = data
        source.seek(0)
    if not source.read(1):
        raise InvalidImageError("empty file (0 bytes)")
    source.seek(0)
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces Pillow's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except Image.DecompressionBombError as exc:
        # Pillow's own bomb guard fired before ours could read the size: report it in our words.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageTooLargeError(f"image is {pixels}; the limit is {max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"not a supported image ({FORMATS_NAMED})") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise InvalidImageError(f"unsupported image format {image.format}; use {FORMATS_NAMED}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image has an invalid size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
    return image


def probe_image(data: bytes | IO[bytes], max_pixels: int) -> ImageInfo:
    """Check an upload (bytes, or a seekable binary stream) from its header alone (cheap: no pixel is decoded).

    Raises :class:`InvalidImageError` for empty or non-image bytes or an unsupported format, and
    :class:`ImageTooLargeError` when ``width * height > max_pixels``. A truncated body is only found by
    :func:`read_image`.
    """
    image = _open(data, max_pixels)
    return ImageInfo(width=image.size[0], height=image.size[1], format=str(image.format))


def working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The size an image is processed at: ``max_side`` applied (downscale only)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def estimate_peak_bytes(info: ImageInfo, max_side: int | None = None) -> int:
    """Peak memory one image costs the pipeline (decode, network input, full-size matte, post-processing,
    encoding), from its header alone: ``PEAK_BYTES_PER_PIXEL`` per working pixel, plus the decoded RGBA
    frame at full size when ``max_side`` shrinks it (the decoder's own copy before the downscale)."""
    width, height = working_size(info.width, info.height, max_side)
    full = info.width * info.height
    decode = DECODE_BYTES_PER_PIXEL * full if width * height < full else 0
    return PEAK_BYTES_PER_PIXEL * width * height + decode


def check_memory_budget(info: ImageInfo, max_side: int | None, budget_mb: int) -> None:
    """Raise :class:`ImageTooLargeError` when processing the image would need more than ``budget_mb``
    (``0`` = no budget). The message names the budget and the ``max_side`` that would fit."""
    if budget_mb <= 0:
        return
    needed = estimate_peak_bytes(info, max_side)
    budget = budget_mb * 1024 * 1024
    if needed <= budget:
        return
    fitting_pixels = max(1, budget - DECODE_BYTES_PER_PIXEL * info.width * info.height) / PEAK_BYTES_PER_PIXEL
    aspect = max(info.width, info.height) / min(info.width, info.height)
    fitting_side = int((fitting_pixels * aspect) ** 0.5)
    hint = f"; send max_side={fitting_side} or less, or a smaller image" if fitting_side >= 16 else ""
    raise ImageTooLargeError(
        f"image is {info.width}x{info.height}: processing it needs about {needed / 2**20:,.0f} MB, over the "
        f"per-image memory budget of {budget_mb:,} MB (MATTEFLOW_MAX_IMAGE_MEMORY_MB){hint}"
    )


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a 16/32-bit integer or float channel array down to uint8 without clipping highlights."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        peak = float(np.nanmax(array)) if array.size else 1.0
        scale = 255.0 if peak <= 1.0 else 255.0 / peak
        return np.clip(np.nan_to_num(array) * scale, 0, 255).astype(np.uint8)
    # Integer: 16-bit data may live in a 32-bit container (Pillow's mode "I"); divide by the true range.
    peak = int(array.max()) if array.size else 0
    bits = 8 if peak < 256 else 16 if peak < 65536 else 32
    return (array.astype(np.float64) / (2**bits - 1) * 255.0 + 0.5).astype(np.uint8)


# Colour management. Results are written without a profile, which every viewer and browser reads as sRGB, and
# background colours are sRGB hex codes; a photo tagged with another profile (Adobe RGB from a camera, Display P3
# from a phone, a press CMYK profile) is therefore converted to sRGB as it is decoded. Left as it was, its
# numbers would be shown as sRGB: an Adobe RGB photo's cut-out comes out dull (its pure red, 219/0/0 in Adobe
# RGB, shows as a darker red), a CMYK one gets Pillow's naive ink inversion.
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# What each mode is converted as: (LittleCMS input mode, output mode, profile colour space it needs).
_CMS_MODES = {
    "RGB": ("RGB", "RGB", "RGB"),
    "RGBA": ("RGBA", "RGBA", "RGB"),
    "CMYK": ("CMYK", "RGB", "CMYK"),
    "L": ("L", "RGB", "GRAY"),
}
# An sRGB profile under another name (camera makers', the compact "c2", v4 sRGB) changes no pixel by more
# than this: such photos are left as they are, byte for byte.
_SRGB_TOLERANCE = 1


def _identity_probe() -> Image.Image:
    """Every level of each channel alone, and greys: where an sRGB-equivalent profile must change nothing."""
    levels = np.arange(256, dtype=np.uint8)
    zeros = np.zeros(256, np.uint8)
    rows = [
        np.stack([levels, zeros, zeros], 1),
        np.stack([zeros, levels, zeros], 1),
        np.stack([zeros, zeros, levels], 1),
    ]
    rows.append(np.stack([levels, levels, levels], 1))
    return Image.fromarray(np.stack(rows))


def _acts_as_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    """Whether an RGB profile is sRGB in all but name: converting through it moves no level by more than
    ``_SRGB_TOLERANCE`` (checked on every level of each channel and on greys)."""
    transform = ImageCms.buildTransform(profile, _SRGB, "RGB", "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL)
    probe = _identity_probe()
    change = np.abs(np.asarray(transform.apply(probe), np.int16) - np.asarray(probe, np.int16)).max()
    return bool(change <= _SRGB_TOLERANCE)


@functools.lru_cache(maxsize=32)
def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from an embedded profile to sRGB for ``mode``, or None when there is nothing to convert
    (an sRGB profile, a profile of another colour space than the pixels', a profile LittleCMS cannot read).
    Cached: a batch from one camera carries one profile."""
    in_mode, out_mode, space = _CMS_MODES[mode]
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space.strip() != space:
            log.debug("embedded %s profile on a %s image: ignored", source.profile.xcolor_space, mode)
            return None
        if space == "RGB" and _acts_as_srgb(source):
            return None
        # NOCACHE: LittleCMS's one-pixel cache lives in the transform, and this cached transform is applied by
        # several decode threads at once (GPU workers); without the cache it is safe to share (same speed here).
        return ImageCms.buildTransform(
            source, _SRGB, in_mode, out_mode, renderingIntent=ImageCms.Intent.PERCEPTUAL, flags=ImageCms.Flags.NOCACHE
        )
    except (OSError, ValueError, ImageCms.PyCMSError) as exc:
        # A broken profile must not cost the photo: its pixels are used as they are.
        log.debug("embedded colour profile not usable (%s): pixels taken as sRGB", exc)
        return None


# nclx (ISO/IEC 23091-2) codes a HEIF photo may give its colour by instead of an ICC profile. Primaries 1 (BT.709,
# sRGB's) and 2 (unspecified) need no conversion; PQ and HLG transfers are HDR, which would need tone mapping,
# not a profile: such photos are taken as they are. The other transfers are drawn with the curve of their
# display (sRGB's for 1, 6, 13, 14 and 15), so only the primaries move.
_NCLX_SRGB_PRIMARIES = (1, 2)
_NCLX_HDR_TRANSFERS = (16, 18)
_NCLX_GAMMAS = {4: 2.2, 5: 2.8, 8: 1.0}


@functools.lru_cache(maxsize=16)
def _nclx_icc(primaries: tuple[tuple[float, float], ...], white: tuple[float, float], transfer: int) -> bytes:
    from .iccprofile import SRGB_CURVE, colorants_d50, rgb_profile

    curve = _NCLX_GAMMAS.get(transfer, SRGB_CURVE)
    return rgb_profile(f"nclx primaries {primaries}", colorants_d50(primaries, white), curve)


def _nclx_profile(nclx: dict[str, Any] | None) -> bytes | None:
    """An ICC profile standing for a HEIF photo's nclx colour (None: nothing to convert, or HDR)."""
    if not nclx or nclx.get("color_primaries") in _NCLX_SRGB_PRIMARIES:
        return None
    if nclx.get("transfer_characteristics") in _NCLX_HDR_TRANSFERS:
        log.debug("HDR (PQ/HLG) nclx colour: taken as it is")
        return None
    try:
        primaries = tuple(
            (float(nclx[f"color_primary_{c}_x"]), float(nclx[f"color_primary_{c}_y"])) for c in ("red", "green", "blue")
        )
        white = (float(nclx["color_primary_white_x"]), float(nclx["color_primary_white_y"]))
        return _nclx_icc(primaries, white, int(nclx.get("transfer_characteristics") or 2))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, np.linalg.LinAlgError):
        log.debug("nclx colour without usable chromaticities: taken as sRGB")
        return None


def _to_srgb(image: Image.Image) -> Image.Image:
    """The image converted to sRGB from its embedded ICC profile, or from a HEIF photo's nclx colour (RGB/RGBA/
    CMYK/L images; others, and untagged or sRGB images, are returned as they are)."""
    icc = image.info.get("icc_profile") or _nclx_profile(image.info.get("nclx_profile"))
    if not icc or image.mode not in _CMS_MODES:
        return image
    transform = _transform_to_srgb(bytes(icc), image.mode)
    if transform is None:
        return image
    converted = transform.apply(image)
    converted.info = {k: v for k, v in image.info.items() if k not in ("icc_profile", "nclx_profile")}
    return converted


def _pixels(image: Image.Image) -> DecodedImage:
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _to_uint8(np.asarray(image))
        return DecodedImage(rgb=np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2)), alpha=None)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[:, :, 3]
        if alpha.min() == 255:
            return DecodedImage(rgb=np.ascontiguousarray(rgba[:, :, :3]), alpha=None)
        return DecodedImage(rgb=np.ascontiguousarray(rgba[:, :, :3]), alpha=np.ascontiguousarray(alpha))
    if mode != "RGB":
        image = image.convert("RGB")  # CMYK, YCbCr, L, 1, P without transparency
    return DecodedImage(rgb=np.asarray(image), alpha=None)


# OpenCV >= 4.11 decodes straight to RGB; before that, BGR then a conversion (both without the GIL).
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_JPEG_END = b"\xff\xd9"  # EOI: a file that does not end with it may be truncated


def _decode_plain_jpeg(data: bytes, image: Image.Image, max_side: int | None) -> np.ndarray | None:
    """A plain JPEG photo (YCbCr, untagged or sRGB, upright, ending in EOI, no draft shrink), decoded by OpenCV
    straight into an array; None for anything else, which Pillow's path then decodes (and reports if broken).

    Why: Pillow's decode is followed by ``tobytes()`` under the GIL (a 6 MB copy per 1080p photo), where the
    decode threads of a GPU worker spent most of their GIL time (bench/README.md, section 5); OpenCV holds no
    GIL from the bytes to the array. Both run libjpeg-turbo with its defaults (islow DCT, fancy upsampling):
    identical pixels (``tests/core/test_imageio.py`` checks the committed photos; 155 of 155 people photos too).
    """
    if image.format != "JPEG" or image.mode != "RGB":
        return None
    icc = image.info.get("icc_profile")
    if icc and _transform_to_srgb(bytes(icc), "RGB") is not None:  # a profile to convert from (not sRGB)
        return None
    if max_side is not None and max(image.size) > max_side:  # Pillow's draft mode shrinks it while decoding
        return None
    if not isinstance(data, (bytes, bytearray)) or bytes(data[-2:]) != _JPEG_END:
        return None
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        return None
    buffer = np.frombuffer(data, np.uint8)
    if _IMREAD_RGB is not None:
        rgb = cv2.imdecode(buffer, _IMREAD_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    else:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr is not None else None
    if rgb is None or rgb.shape != (image.height, image.width, 3):
        return None
    return rgb


def decode_image(data: bytes, max_pixels: int, max_side: int | None = None) -> DecodedImage:
    """Decode untrusted bytes to an upright RGB array plus the input's own alpha, if it has one.

    With ``max_side`` the decoder may return a smaller image whose long side is still at least ``max_side``
    (JPEG's DCT scaling in draft mode; an integer box reduction for other formats), so a large upload with a
    small output never costs its full size downstream. Raises :class:`InvalidImageError` (empty, not an image,
    truncated, corrupt) or :class:`ImageTooLargeError` (over ``max_pixels``, checked before decoding).
    """
    image = _open(data, max_pixels)
    if (plain := _decode_plain_jpeg(data, image, max_side)) is not None:
        return DecodedImage(rgb=plain, alpha=None)
    try:
        if max_side is not None and image.format in ("JPEG", "MPO"):
            # draft() keeps the long side >= the request; EXIF rotation does not change the long side.
            width, height = working_size(*image.size, max_side)
            image.draft("RGB", (width, height))
        image.load()
        reducible = image.mode in ("RGB", "RGBA", "L", "LA")
        if max_side is not None and reducible and (factor := max(image.size) // max_side) >= 2:
            image = image.reduce(factor)
        image = _to_srgb(image)
        # In place: without, Pillow returns a copy of every photo that needs no turn (~1.6 ms at 1080p).
        ImageOps.exif_transpose(image, in_place=True)
        return _pixels(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise InvalidImageError(f"image data is {reason} ({exc})") from None


def read_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode untrusted bytes to an upright ``H x W x 3`` uint8 RGB array (see :func:`decode_image`)."""
    return decode_image(data, max_pixels).rgb


def encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    """Encode ``H x W x 3`` (RGB) or ``H x W x 4`` (RGBA) uint8 pixels as ``png``, ``jpeg`` or ``webp``.

    JPEG drops an alpha channel, so callers composite first. OpenCV wants BGR(A) channel order.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected H x W x 3|4 uint8 pixels, got {pixels.shape} {pixels.dtype}")
    if fmt == "jpeg" and pixels.shape[2] == 4:
        raise ValueError("JPEG has no alpha channel: composite over a background colour first")
    code = cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
    bgr = cv2.cvtColor(pixels, code)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, PNG_PARAMS)
    elif fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    elif fmt == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY])
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    if not ok:
        raise ValueError(f"OpenCV could not encode a {pixels.shape} image as {fmt}")
    return buf.tobytes()


def encode_mask(alpha: np.ndarray) -> bytes:
    """Encode an ``H x W`` uint8 alpha matte as an 8-bit grayscale PNG."""
    if alpha.dtype != np.uint8 or alpha.ndim != 2:
        raise ValueError(f"expected an H x W uint8 mask, got {alpha.shape} {alpha.dtype}")
    ok, buf = cv2.imencode(".png", alpha, PNG_PARAMS)
    if not ok:
        raise ValueError("OpenCV could not encode the mask")
    return buf.tobytes()


def encode_image_with(pixels: np.ndarray, fmt: str, quality: int | None = None, dpi: int | None = None) -> bytes:
    """Like :func:`encode_image`, with a chosen JPEG/WebP ``quality`` (1-100) and/or a ``dpi`` stored in the
    file (JFIF density, PNG pHYs, WebP EXIF): what a print lab reads as the physical size. Uses Pillow, which
    writes the density fields that OpenCV leaves at 1:1."""
    if quality is None and dpi is None:
        return encode_image(pixels, fmt)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected H x W x 3|4 uint8 pixels, got {pixels.shape} {pixels.dtype}")
    if fmt == "jpeg" and pixels.shape[2] == 4:
        raise ValueError("JPEG has no alpha channel: composite over a background colour first")
    image = Image.fromarray(pixels)
    params: dict[str, object] = {}
    if dpi is not None:
        params["dpi"] = (dpi, dpi)
    if fmt == "jpeg":
        params["quality"] = quality or JPEG_QUALITY
        params["optimize"] = quality is not None  # a size-bounded file is worth the extra Huffman pass
    elif fmt == "webp":
        params["quality"] = quality or WEBP_QUALITY
    elif fmt == "png":
        params["compress_level"] = 9 if quality is not None else PNG_COMPRESSION
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt.upper(), **params)
    return buffer.getvalue()


def encode_image_within(
    pixels: np.ndarray, fmt: str, max_bytes: int, dpi: int | None = None
) -> tuple[bytes, int | None, str | None]:
    """Encode at the best quality whose file is at most ``max_bytes``: a binary search over JPEG/WebP quality
    (10-95). Returns (bytes, the quality chosen or None for PNG, a warning or None).

    PNG is lossless, so only its strongest compression is tried; when even the lowest quality is too big the
    smallest file is returned with a warning (the caller may lower ``max_side``).
    """
    if fmt == "png":
        data = encode_image_with(pixels, fmt, quality=100, dpi=dpi)
        if len(data) > max_bytes:
            return (
                data,
                None,
                (
                    f"PNG is lossless: the smallest is {len(data) / 1024:.0f} KB, over the {max_bytes / 1024:.0f} KB "
                    "limit; use jpeg or webp, or a smaller max_side"
                ),
            )
        return data, None, None
    low, high = 10, 95
    best: tuple[bytes, int] | None = None
    while low <= high:
        quality = (low + high) // 2
        data = encode_image_with(pixels, fmt, quality=quality, dpi=dpi)
        if len(data) <= max_bytes:
            best = (data, quality)
            low = quality + 1
        else:
            high = quality - 1
    if best is None:
        data = encode_image_with(pixels, fmt, quality=10, dpi=dpi)
        return (
            data,
            10,
            (
                f"even at quality 10 the file is {len(data) / 1024:.0f} KB, over the {max_bytes / 1024:.0f} KB limit; "
                "use a smaller max_side"
            ),
        )
    return best[0], best[1], None
