from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from matteflow.core import iccprofile as icc
from matteflow.core.errors import ImageTooLargeError, InvalidImageError
from matteflow.core.imageio import _decode_plain_jpeg, decode_image, encode_image, encode_mask, probe_image, read_image

from .conftest import encode

LIMIT = 10_000_000


@pytest.mark.parametrize(
    ("fmt", "lossless"),
    [("PNG", True), ("BMP", True), ("TIFF", True), ("WEBP", False), ("JPEG", False), ("HEIF", False), ("AVIF", False)],
)
def test_reads_every_supported_format(portrait_rgb: np.ndarray, fmt: str, lossless: bool) -> None:
    params = {"quality": 95} if fmt in ("JPEG", "WEBP", "HEIF", "AVIF") else {}
    data = encode(Image.fromarray(portrait_rgb), fmt, **params)
    rgb = read_image(data, LIMIT)
    assert rgb.shape == portrait_rgb.shape and rgb.dtype == np.uint8
    error = np.abs(rgb.astype(int) - portrait_rgb.astype(int)).mean()
    assert error == 0 if lossless else error < 4
    assert probe_image(data, LIMIT).format in (fmt, "MPO")


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF", "AVIF"])
def test_exif_orientation_is_applied(portrait_rgb: np.ndarray, fmt: str) -> None:
    """A phone held sideways: applied once, whether the container rotates (HEIF's irot) or EXIF says so."""
    image = Image.fromarray(portrait_rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": stored landscape-on-its-side, shown upright
    data = encode(image, fmt, quality=95, exif=exif.tobytes())
    rgb = read_image(data, LIMIT)
    assert rgb.shape == (portrait_rgb.shape[1], portrait_rgb.shape[0], 3)
    expected = np.asarray(image.transpose(Image.Transpose.ROTATE_270))
    assert np.abs(rgb.astype(int) - expected.astype(int)).mean() < 5


def test_cmyk_jpeg_becomes_rgb(portrait_rgb: np.ndarray) -> None:
    data = encode(Image.fromarray(portrait_rgb).convert("CMYK"), "JPEG", quality=95)
    rgb = read_image(data, LIMIT)
    assert rgb.shape == portrait_rgb.shape
    assert np.abs(rgb.astype(int) - portrait_rgb.astype(int)).mean() < 8


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    data = encode(Image.fromarray(values), "PNG")  # Pillow stores uint16 as a 16-bit PNG
    rgb = read_image(data, LIMIT)
    assert rgb.shape == (4, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]


def test_grayscale_and_palette_inputs() -> None:
    gray = Image.linear_gradient("L").resize((64, 64))
    rgb = read_image(encode(gray, "PNG"), LIMIT)
    assert rgb.shape == (64, 64, 3) and (rgb[:, :, 0] == rgb[:, :, 2]).all()
    palette = gray.convert("P")
    assert read_image(encode(palette, "PNG"), LIMIT).shape == (64, 64, 3)


def test_rgba_input_keeps_its_alpha(portrait_rgb: np.ndarray) -> None:
    rgba = np.dstack([portrait_rgb, np.full(portrait_rgb.shape[:2], 255, np.uint8)])
    rgba[:, :40, 3] = 0
    decoded = decode_image(encode(Image.fromarray(rgba), "PNG"), LIMIT)
    assert decoded.alpha is not None and (decoded.alpha[:, :40] == 0).all() and (decoded.alpha[:, 40:] == 255).all()
    opaque = decode_image(encode(Image.fromarray(portrait_rgb).convert("RGBA"), "PNG"), LIMIT)
    assert opaque.alpha is None


def test_empty_text_truncated_and_unsupported_inputs_raise_clear_errors(portrait_jpeg: bytes) -> None:
    with pytest.raises(InvalidImageError, match="empty"):
        read_image(b"", LIMIT)
    with pytest.raises(InvalidImageError, match="not a supported image"):
        read_image(b"hello, I am a text file named photo.png\n", LIMIT)
    with pytest.raises(InvalidImageError, match="truncated"):
        read_image(portrait_jpeg[: len(portrait_jpeg) // 2], LIMIT)
    heic = encode(Image.new("RGB", (64, 48), (200, 30, 30)), "HEIF", quality=90)
    with pytest.raises(InvalidImageError):
        read_image(heic[: len(heic) // 2], LIMIT)
    gif = encode(Image.new("RGB", (8, 8)), "GIF")
    with pytest.raises(InvalidImageError, match="unsupported image format GIF"):
        probe_image(gif, LIMIT)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims width x height (a 'pixel bomb')."""
    data = encode(Image.new("L", (1, 1)), "PNG")
    ihdr = data[8 + 8 : 8 + 8 + 13]
    new_ihdr = struct.pack(">II", width, height) + ihdr[8:]
    chunk = b"IHDR" + new_ihdr
    patched = data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return patched + data[8 + 4 + 4 + 13 + 4 :]


def test_pixel_bomb_is_refused_from_the_header() -> None:
    bomb = _png_claiming_size(30000, 30000)
    with pytest.raises(ImageTooLargeError, match="900,000,000 pixels"):
        probe_image(bomb, LIMIT)
    with pytest.raises(ImageTooLargeError):
        read_image(bomb, LIMIT)
    assert probe_image(_png_claiming_size(100, 100), LIMIT).width == 100


def test_encoders_round_trip(portrait_rgb: np.ndarray) -> None:
    rgba = np.dstack([portrait_rgb, np.tile(np.arange(160, dtype=np.uint8), (240, 1))])
    png = encode_image(rgba, "png")
    back = np.asarray(Image.open(__import__("io").BytesIO(png)))
    assert back.shape == (240, 160, 4) and np.array_equal(back, rgba)
    assert Image.open(__import__("io").BytesIO(encode_image(portrait_rgb, "jpeg"))).format == "JPEG"
    assert Image.open(__import__("io").BytesIO(encode_image(rgba, "webp"))).mode == "RGBA"
    with pytest.raises(ValueError, match="JPEG has no alpha"):
        encode_image(rgba, "jpeg")
    mask = Image.open(__import__("io").BytesIO(encode_mask(rgba[:, :, 3])))
    assert mask.mode == "L" and np.array_equal(np.asarray(mask), rgba[:, :, 3])


# Colour profiles: a photo tagged with another profile is converted to sRGB as it is decoded.


def _saturated_srgb() -> np.ndarray:
    """Colours inside the Adobe RGB gamut where the two encodings differ most: pure primaries, skin, sky."""
    colours = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (230, 180, 150), (90, 150, 230), (128, 128, 128)]
    return np.repeat(np.array(colours, np.uint8)[None, :, :], 24, axis=0).repeat(24, axis=1)


def _encoded_in(profile_icc: bytes, srgb: np.ndarray) -> Image.Image:
    """The sRGB pixels re-encoded in the profile's colour space (what a camera set to that space writes)."""
    source = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    target = ImageCms.ImageCmsProfile(io.BytesIO(profile_icc))
    return ImageCms.profileToProfile(Image.fromarray(srgb), source, target, outputMode="RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "HEIF", "AVIF"])
def test_adobe_rgb_photo_is_converted_to_srgb(fmt: str) -> None:
    srgb = _saturated_srgb()
    adobe = _encoded_in(icc.rgb_profile(), srgb)
    assert np.abs(np.asarray(adobe, int) - srgb.astype(int)).max() > 30  # the untagged reading would be wrong
    params = {"quality": 98} if fmt in ("JPEG", "WEBP", "HEIF", "AVIF") else {}
    rgb = read_image(encode(adobe, fmt, icc_profile=icc.rgb_profile(), **params), LIMIT)
    error = np.abs(rgb.astype(int) - srgb.astype(int))
    assert error.mean() < (1.5 if fmt in ("PNG", "TIFF") else 4), error.mean()


def test_rgba_photo_keeps_its_alpha_through_the_conversion() -> None:
    srgb = _saturated_srgb()
    adobe = np.asarray(_encoded_in(icc.rgb_profile(), srgb))
    alpha = np.tile(np.linspace(0, 255, srgb.shape[1]).astype(np.uint8), (srgb.shape[0], 1))
    data = encode(Image.fromarray(np.dstack([adobe, alpha])), "PNG", icc_profile=icc.rgb_profile())
    decoded = decode_image(data, LIMIT)
    assert decoded.alpha is not None and np.array_equal(decoded.alpha, alpha)
    assert np.abs(decoded.rgb.astype(int) - srgb.astype(int)).mean() < 1.5


def test_grayscale_profile_is_honoured() -> None:
    linear = Image.fromarray(np.array([[0, 64, 128, 255]], np.uint8).repeat(4, axis=0))
    rgb = read_image(encode(linear, "PNG", icc_profile=icc.gray_profile(gamma=1.0)), LIMIT)
    # Linear light 128/255 is sRGB 188: the profile says these are light levels, not sRGB numbers.
    assert rgb[0, :, 0].tolist() == pytest.approx([0, 137, 188, 255], abs=2)
    assert (rgb[:, :, 0] == rgb[:, :, 2]).all()


def test_exif_rotation_still_applies_to_a_converted_photo(portrait_rgb: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    adobe = _encoded_in(icc.rgb_profile(), portrait_rgb)
    data = encode(adobe, "JPEG", quality=98, exif=exif.tobytes(), icc_profile=icc.rgb_profile())
    rgb = read_image(data, LIMIT)
    expected = np.asarray(Image.fromarray(portrait_rgb).transpose(Image.Transpose.ROTATE_270))
    assert rgb.shape == expected.shape and np.abs(rgb.astype(int) - expected.astype(int)).mean() < 4


def test_srgb_tagged_photos_are_left_byte_for_byte(portrait_rgb: np.ndarray) -> None:
    builtin = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    # An sRGB-equivalent profile under another name (a camera maker's) must not cost a rounding pass either.
    renamed = icc.rgb_profile("Camera maker RGB", colorants=icc.SRGB_COLORANTS, gamma=icc.SRGB_CURVE)
    rgba = np.dstack([portrait_rgb, np.full(portrait_rgb.shape[:2], 128, np.uint8)])
    for profile in (builtin, renamed):
        rgb = read_image(encode(Image.fromarray(portrait_rgb), "PNG", icc_profile=profile), LIMIT)
        assert np.array_equal(rgb, portrait_rgb)
        decoded = decode_image(encode(Image.fromarray(rgba), "PNG", icc_profile=profile), LIMIT)
        assert np.array_equal(decoded.rgb, portrait_rgb)


# A Display P3 photo as an Android phone's HEIC gives it: nclx codes (primaries 12, sRGB transfer), no ICC.
P3_PRIMARIES = ((0.68, 0.32), (0.265, 0.69), (0.15, 0.06))
D65_WHITE = (0.3127, 0.329)


def _heic_with_nclx(pixels: Image.Image, primaries: int, transfer: int) -> bytes:
    tagged = pixels.copy()
    tagged.info["nclx_profile"] = {
        "color_primaries": primaries,
        "transfer_characteristics": transfer,
        "matrix_coefficients": 6,
        "full_range_flag": 1,
    }
    return encode(tagged, "HEIF", quality=-1, save_nclx_profile=True)  # quality -1: lossless


def test_heic_colour_given_by_nclx_is_converted_like_its_icc_twin() -> None:
    srgb = _saturated_srgb()
    p3_icc = icc.rgb_profile("Display P3", icc.colorants_d50(P3_PRIMARIES, D65_WHITE), icc.SRGB_CURVE)
    p3 = _encoded_in(p3_icc, srgb)
    assert np.abs(np.asarray(p3, int) - srgb.astype(int)).max() > 20  # taken as sRGB it would be off
    by_nclx = read_image(_heic_with_nclx(p3, primaries=12, transfer=13), LIMIT)
    by_icc = read_image(encode(p3, "HEIF", quality=-1, icc_profile=p3_icc), LIMIT)
    assert np.abs(by_nclx.astype(int) - by_icc.astype(int)).max() <= 1
    assert np.abs(by_nclx.astype(int) - srgb.astype(int)).mean() < 2.5


def test_colorants_of_srgb_primaries_are_srgbs() -> None:
    colorants = icc.colorants_d50(((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), D65_WHITE)
    assert np.allclose(colorants, icc.SRGB_COLORANTS, atol=2e-4)


@pytest.mark.parametrize(("primaries", "transfer"), [(1, 13), (2, 2), (9, 16), (9, 18)])
def test_nclx_srgb_unspecified_or_hdr_is_taken_as_it_is(primaries: int, transfer: int) -> None:
    """BT.709 and unspecified primaries are sRGB's; PQ/HLG would need tone mapping, not a profile."""
    srgb = _saturated_srgb()
    decoded = read_image(_heic_with_nclx(Image.fromarray(srgb), primaries, transfer), LIMIT)
    assert np.abs(decoded.astype(int) - srgb.astype(int)).max() <= 2  # the lossless coder's own rounding


def test_a_broken_or_mismatched_profile_costs_nothing(portrait_rgb: np.ndarray) -> None:
    broken = icc.rgb_profile()[:100]  # truncated inside the header
    gray_on_rgb = icc.gray_profile()
    for profile in (broken, gray_on_rgb, b"not a profile at all"):
        rgb = read_image(encode(Image.fromarray(portrait_rgb), "PNG", icc_profile=profile), LIMIT)
        assert np.array_equal(rgb, portrait_rgb)


PHOTOS = sorted((Path(__file__).resolve().parents[1] / "data").rglob("*.jpg"))


def _pillow_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    return np.asarray(ImageOps.exif_transpose(image.convert("RGB")))


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_plain_jpeg_photos_decode_to_pillows_pixels_exactly(photo: Path) -> None:
    data = photo.read_bytes()
    image = Image.open(io.BytesIO(data))
    taken = _decode_plain_jpeg(data, image, None)
    assert taken is not None, "a plain JPEG photo takes OpenCV's path"
    assert np.array_equal(taken, _pillow_pixels(data))
    assert np.array_equal(decode_image(data, LIMIT).rgb, taken)


def test_jpegs_that_need_pillow_stay_on_its_path(portrait_rgb: np.ndarray, portrait_jpeg: bytes) -> None:
    def plain(data: bytes, max_side: int | None = None) -> np.ndarray | None:
        return _decode_plain_jpeg(data, Image.open(io.BytesIO(data)), max_side)

    assert plain(portrait_jpeg) is not None
    height, width = portrait_rgb.shape[:2]
    assert plain(portrait_jpeg + b"trailing bytes") is None  # not ending in EOI: truncated, or a trailer
    assert plain(portrait_jpeg[: len(portrait_jpeg) // 2]) is None
    assert plain(portrait_jpeg, max_side=max(width, height) // 2) is None  # Pillow's draft mode shrinks it
    exif = Image.Exif()
    exif[0x0112] = 6
    assert plain(encode(Image.fromarray(portrait_rgb), "JPEG", exif=exif.tobytes())) is None  # turned by Pillow
    adobe = encode(Image.fromarray(portrait_rgb), "JPEG", icc_profile=icc.rgb_profile())
    assert plain(adobe) is None  # converted to sRGB by LittleCMS
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert plain(encode(Image.fromarray(portrait_rgb), "JPEG", icc_profile=srgb)) is not None  # nothing to convert
    assert plain(encode(Image.fromarray(portrait_rgb).convert("CMYK"), "JPEG")) is None
    assert plain(encode(Image.fromarray(portrait_rgb).convert("L"), "JPEG")) is None
