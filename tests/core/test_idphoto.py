"""Real ID photos from the shipped model on committed photos: pixel size, stored DPI, background colour, the
head inside the size's rule; the warnings for a photo without a face; keep=main and the file-size search."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matteflow.core.engine import MatteEngine
from matteflow.core.idphoto import detect_faces
from matteflow.core.idsizes import ID_SIZES, find_id_size, mm_to_pixels
from matteflow.core.imageio import encode_image_within
from matteflow.core.options import parse_options
from matteflow.core.postprocess import keep_main_subject

DATA = Path(__file__).resolve().parents[1] / "data"
PORTRAIT = DATA / "portraits" / "astronaut.jpg"  # NASA photo of Eileen Collins, public domain
NO_FACE = DATA / "people" / "000000522418.jpg"  # a person seen from the side: no frontal face


@pytest.fixture(scope="module")
def engine() -> MatteEngine:
    from matteflow.core.model import load_model

    return MatteEngine(load_model("default", "cpu"), max_pixels=10_000_000)


def test_standard_sizes_at_300_dpi() -> None:
    assert ID_SIZES["1inch"].pixels == (295, 413)
    assert ID_SIZES["2inch"].pixels == (413, 579)
    assert ID_SIZES["35x45"].pixels == (413, 531)
    assert ID_SIZES["33x48"].pixels == (390, 567)
    assert ID_SIZES["2x2in"].pixels == (600, 600)
    assert mm_to_pixels(25.4) == 300
    assert find_id_size(45, 35).name == "35x45"  # passport sizes first; either orientation
    assert find_id_size(10, 10) is None


@pytest.mark.parametrize(
    ("preset", "colour"),
    [("id-2inch", "#438edb"), ("passport-35x45", "#ffffff"), ("passport-2x2in", "#ffffff"), ("id-1inch", "#d9262e")],
)
def test_id_photo_size_dpi_background_and_head(engine: MatteEngine, preset: str, colour: str) -> None:
    options = parse_options(preset=preset, background=colour, mask=True)
    size = ID_SIZES[options.id_size or ""]
    result = engine.process_bytes(PORTRAIT.read_bytes(), options)
    # The portrait is 512 px: the bigger passport heads are honestly flagged as upscaled, nothing else.
    assert [w for w in result.warnings if "scaled up" not in w] == []
    image = Image.open(io.BytesIO(result.image))
    assert image.format == "JPEG" and image.size == size.pixels
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.5)
    pixels = np.asarray(image.convert("RGB")).astype(int)
    expected = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    for corner in (pixels[2, 2], pixels[2, -3]):  # the top corners are background in every ID photo
        assert np.abs(corner - expected).max() <= 6

    # The head, found again on the result, sits inside the rule: crown from the matte, face by detection.
    alpha = np.asarray(Image.open(io.BytesIO(result.mask or b""))) >= 128
    faces = detect_faces(pixels.astype(np.uint8))
    assert faces, "the framed face must still be detectable"
    x, y, w, h = faces[0]
    height = size.pixels[1]
    crown = np.flatnonzero(alpha[:, x : x + w].any(axis=1))[0]
    chin = y + 1.12 * h
    assert size.top[0] <= crown / height <= size.top[2]
    assert size.head[0] - 0.05 <= (chin - crown) / height <= size.head[2] + 0.05
    assert abs((x + w / 2) - size.pixels[0] / 2) <= 0.08 * size.pixels[0]  # centred


def test_photo_without_a_face_gets_a_warning(engine: MatteEngine) -> None:
    result = engine.process_bytes(NO_FACE.read_bytes(), parse_options(preset="id-2inch"))
    assert any("no face found" in w for w in result.warnings)
    assert Image.open(io.BytesIO(result.image)).size == (413, 579)


def test_empty_matte_gets_a_warning(engine: MatteEngine) -> None:
    blank = io.BytesIO()
    Image.new("RGB", (200, 260), (120, 160, 200)).save(blank, format="PNG")
    result = engine.process_bytes(blank.getvalue(), parse_options(preset="passport-35x45"))
    assert any("no person found" in w for w in result.warnings)


def test_keep_main_subject_drops_small_pieces_and_keeps_soft_edges() -> None:
    alpha = np.zeros((200, 200), np.float32)
    alpha[40:180, 60:140] = 1.0  # the person
    alpha[40:180, 59] = 0.5  # the person's soft edge
    alpha[10:20, 10:20] = 1.0  # a small piece of clutter
    alpha[150:190, 170:195] = 1.0  # a second, bigger piece still far below the person's size
    alpha[100, 5] = 0.3  # a faint ghost far away
    kept = keep_main_subject(alpha)
    assert kept[100, 100] == 1.0 and kept[100, 59] == 0.5
    assert kept[15, 15] == 0.0 and kept[170, 180] == 0.0 and kept[100, 5] == 0.0


def test_keep_main_subject_keeps_two_people_of_similar_size() -> None:
    alpha = np.zeros((100, 200), np.float32)
    alpha[20:90, 20:70] = 1.0
    alpha[25:90, 120:165] = 1.0
    np.testing.assert_array_equal(keep_main_subject(alpha), alpha)


def test_size_limit_finds_the_best_jpeg_quality() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    data, quality, warning = encode_image_within(noisy, "jpeg", 60 * 1024, dpi=300)
    assert len(data) <= 60 * 1024 and warning is None and quality is not None
    higher, _, _ = encode_image_within(noisy, "jpeg", 10**9)
    assert len(higher) > len(data)  # with room to spare the search goes to the top quality
    assert Image.open(io.BytesIO(data)).info["dpi"] == pytest.approx((300, 300), abs=0.5)
    _, _, too_small = encode_image_within(noisy, "jpeg", 1024)
    assert too_small is not None and "quality 10" in too_small


def test_max_kb_option_bounds_the_result(engine: MatteEngine) -> None:
    result = engine.process_bytes(PORTRAIT.read_bytes(), parse_options(preset="id-2inch", max_kb=20))
    assert len(result.image) <= 20 * 1024 and result.warnings == []


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        (lambda im: im.rotate(20, resample=Image.BICUBIC, fillcolor=(255, 255, 255)), "tilted"),
        (lambda im: im.crop((0, 40, 512, 512)), "top of the head is cut off"),
        (lambda im: im.resize((200, 200)), "the face is small"),
        (lambda im: im.crop((150, 0, 512, 512)), "cut by the photo's side edge"),
    ],
    ids=["tilted", "head-cut", "small", "side-cut"],
)
def test_a_bad_portrait_gets_its_warning(engine: MatteEngine, change: object, warning: str) -> None:
    changed = change(Image.open(PORTRAIT))  # type: ignore[operator]
    result = engine.process_bytes(_png(changed), parse_options(preset="id-2inch"))
    assert any(warning in w for w in result.warnings), result.warnings


@pytest.mark.parametrize(
    ("size", "copies", "sheet_shape"),
    [("1inch", 16, (1800, 1200)), ("2inch", 8, (1200, 1800)), ("2x2in", 2, (1200, 1800))],
)
def test_print_sheet_fits_the_most_copies_with_cut_lines(size: str, copies: int, sheet_shape: tuple) -> None:
    from matteflow.core.idphoto import CUT_LINE_GREY, layout_print_sheet

    w, h = ID_SIZES[size].pixels
    photo = np.zeros((h, w, 3), np.uint8)
    photo[:] = (67, 142, 219)
    sheet, count = layout_print_sheet(photo)
    assert count == copies and sheet.shape[:2] == sheet_shape
    blue = np.all(sheet == (67, 142, 219), axis=2)
    assert blue.sum() == copies * w * h  # every copy whole, none overlapping
    assert (sheet[:, :, 0] == CUT_LINE_GREY).any(axis=0).sum() >= 2  # vertical cut lines in the gaps


def test_sheet_option_gives_a_printable_6_inch_sheet(engine: MatteEngine) -> None:
    result = engine.process_bytes(PORTRAIT.read_bytes(), parse_options(preset="id-1inch", sheet=True))
    image = Image.open(io.BytesIO(result.image))
    assert image.size == (1200, 1800) and image.info["dpi"] == pytest.approx((300, 300), abs=0.5)


def test_sheet_needs_an_id_size_and_a_colour() -> None:
    from matteflow.core.errors import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="id_size"):
        parse_options(sheet=True)
    with pytest.raises(InvalidOptionError, match="background colour"):
        parse_options(preset="id-1inch", sheet=True, background="transparent", format="png")
