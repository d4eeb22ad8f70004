from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from matteflow.core.cropping import NO_SUBJECT_WARNING, Box, canvas_box, find_subject_box, frame_cutout
from matteflow.core.options import parse_options
from matteflow.core.postprocess import SHADOW_WARNING

from .conftest import encode

DATA = Path(__file__).resolve().parents[1] / "data"


def _scene(h: int = 200, w: int = 300, box: tuple[int, int, int, int] = (60, 40, 140, 100)) -> tuple:
    """A photo whose every pixel encodes its own position (so a crop can be checked pixel for pixel) and a
    matte with one solid rectangle (left, top, right, bottom) with a soft 0.3 rim one pixel wide."""
    yy, xx = np.mgrid[0:h, 0:w]
    photo = np.stack([xx % 256, yy % 256, (xx // 256) * 16 + yy // 256], axis=2).astype(np.uint8)
    alpha = np.zeros((h, w), np.float32)
    left, top, right, bottom = box
    alpha[max(top - 1, 0) : bottom + 1, max(left - 1, 0) : right + 1] = 0.3
    alpha[top:bottom, left:right] = 1.0
    return photo, alpha


def test_the_subject_box_holds_the_soft_rim_but_not_haze_or_specks() -> None:
    _, alpha = _scene()
    alpha[0:5, :] = 0.05  # faint haze along the top, below what is visible
    alpha[190, 290] = 1.0  # a one-pixel glint in the corner
    assert find_subject_box(alpha) == Box(59, 39, 141, 101)
    assert find_subject_box(np.zeros((20, 20), np.float32)) is None


def test_a_subject_crop_is_the_subjects_own_pixels_with_the_margin_around_them() -> None:
    photo, alpha = _scene()
    fg, a, warnings = frame_cutout(photo, alpha, "subject", margin_percent=10)
    # Box 82 x 62 px; 10 % of the long side (82) is 8 px on every side.
    assert warnings == [] and a.shape == (62 + 16, 82 + 16) and fg.shape == (78, 98, 3)
    assert np.array_equal(fg, photo[39 - 8 : 101 + 8, 59 - 8 : 141 + 8])
    assert np.array_equal(a, alpha[39 - 8 : 101 + 8, 59 - 8 : 141 + 8])
    tight_fg, tight, _ = frame_cutout(photo, alpha, "subject")
    assert tight.shape == (62, 82) and tight[0].max() == pytest.approx(0.3) and tight[1, 1] == 1.0


def test_a_square_crop_centres_the_subject_and_pads_beyond_the_photo_with_transparency() -> None:
    photo, alpha = _scene(h=120, w=400, box=(100, 20, 300, 100))  # wide subject in a short photo
    fg, a, _ = frame_cutout(photo, alpha, "square", margin_percent=5)
    side = 202 + 2 * 10
    assert a.shape == (side, side) and fg.shape == (side, side, 3)
    # Centred: as many clear rows above the subject's rim as below it; the rows beyond the photo are clear.
    rows = np.flatnonzero(a.max(axis=1) > 0)
    assert rows[0] == side - 1 - rows[-1]
    assert a.sum() == pytest.approx(alpha.sum())  # nothing of the subject lost, nothing added
    assert (fg[: rows[0] - 19] == 0).all()  # above the photo: zeros (the background colour covers them)


def test_a_subject_cut_by_the_photos_edge_stays_on_the_canvas_edge() -> None:
    # A person cut off at the waist by the bottom edge: no margin below, the square grows upwards.
    photo, alpha = _scene(h=200, w=300, box=(120, 80, 180, 200))
    _, a, _ = frame_cutout(photo, alpha, "square", margin_percent=10)
    assert a[-1].max() == 1.0  # the body still reaches the bottom edge
    assert a.shape[0] == a.shape[1] == 121 + 12
    assert a[:12].max() == 0.0 and a[12].max() > 0  # the margin is above the head only
    _, tight, _ = frame_cutout(photo, alpha, "subject", margin_percent=10)
    assert tight.shape == (121 + 12, 62 + 2 * 12) and tight[-1].max() == 1.0


def test_no_visible_subject_keeps_the_photo_and_says_so() -> None:
    photo = np.full((50, 80, 3), 128, np.uint8)
    alpha = np.full((50, 80), 0.02, np.float32)
    fg, a, warnings = frame_cutout(photo, alpha, "square", margin_percent=10)
    assert fg is photo and a is alpha and warnings == [NO_SUBJECT_WARNING]
    assert frame_cutout(photo, alpha, "none") == (photo, alpha, [])
    with pytest.raises(ValueError, match="crop mode"):
        frame_cutout(photo, alpha, "circle")


def test_the_canvas_of_a_subject_filling_the_photo_is_the_photo() -> None:
    assert canvas_box(Box(0, 0, 300, 200), (200, 300), margin_percent=20) == Box(0, 0, 300, 200)
    square = canvas_box(Box(0, 0, 300, 200), (200, 300), margin_percent=20, aspect=1.0)
    assert square == Box(0, -50, 300, 250)  # cut on every side: the square grows evenly


def test_an_output_size_scales_the_framed_subject_to_exactly_that() -> None:
    photo, alpha = _scene(h=200, w=300, box=(100, 50, 160, 150))  # 62 x 102 with its rim
    fg, a, warnings = frame_cutout(photo, alpha, "subject", margin_percent=0, output_size=(400, 300))
    assert warnings == [] and fg.shape == (300, 400, 3) and a.shape == (300, 400)
    assert a.min() >= 0.0 and a.max() <= 1.0
    # The canvas took the output's shape around the subject (102 rows -> 300: x2.94), centred left to right.
    cols = np.flatnonzero(a.max(axis=0) >= 0.5)
    assert abs(cols[0] - (399 - cols[-1])) <= 2 and abs((cols[-1] - cols[0] + 1) - 60 * 300 / 102) <= 3
    rows = np.flatnonzero(a.max(axis=1) >= 0.5)
    assert rows[0] <= 4 and rows[-1] >= 295  # the subject (and its soft rim) fills the height


def test_an_output_size_without_a_crop_letterboxes_the_whole_photo() -> None:
    photo, alpha = _scene(h=100, w=200)
    fg, a, warnings = frame_cutout(photo, alpha, "none", output_size=(300, 300))
    assert warnings == [] and a.shape == (300, 300)
    # 200 x 100 -> 300 x 150 in the middle, transparent bands of 75 rows above and below.
    assert a[:75].max() == 0 and a[-75:].max() == 0 and (fg[:75] == 0).all()
    assert np.array_equal(fg[75:225], cv2.resize(photo, (300, 150), interpolation=cv2.INTER_CUBIC))
    assert a[225:].max() == 0 and a[224].max() == 1.0  # the subject cut by the photo's edge: no bleed
    same, _, _ = frame_cutout(photo, alpha, "none", output_size=(200, 100))
    assert same is not photo and np.array_equal(same, photo)  # already that size: copied, not resampled


# -- through the engine, with the shipped networks, on a real photo ------------------------------------------


def test_the_marketplace_preset_centres_the_product_on_a_white_square(shipped_engine) -> None:
    photo = DATA / "objects" / "flower.jpg"
    truth = np.asarray(Image.open(DATA / "objects" / "flower_mask.png").convert("L")) >= 128
    result = shipped_engine.process_bytes(photo.read_bytes(), parse_options(preset="marketplace", mask=True))
    image = np.asarray(Image.open(io.BytesIO(result.image)))
    mask = np.asarray(Image.open(io.BytesIO(result.mask)))
    assert result.media_type == "image/jpeg" and image.shape[0] == image.shape[1] and mask.shape == image.shape[:2]
    assert (result.width, result.height) == (image.shape[1], image.shape[0]) and result.warnings == []
    # The flower (its true outline) fills about 1 / 1.16 of the side and sits in the middle.
    rows, cols = np.flatnonzero(truth.any(axis=1)), np.flatnonzero(truth.any(axis=0))
    flower_side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    assert flower_side / image.shape[0] == pytest.approx(1 / 1.16, abs=0.04)
    solid_rows, solid_cols = np.flatnonzero((mask >= 128).any(axis=1)), np.flatnonzero((mask >= 128).any(axis=0))
    assert abs(solid_rows[0] - (image.shape[0] - 1 - solid_rows[-1])) <= 0.04 * image.shape[0]
    assert abs(solid_cols[0] - (image.shape[1] - 1 - solid_cols[-1])) <= 0.04 * image.shape[1]
    corners = image[[0, 0, -1, -1], [0, -1, 0, -1]].astype(int)
    assert (corners >= 250).all()  # pure white (JPEG rounding aside) where the photo's background was


def test_a_photo_without_a_subject_is_kept_whole_with_a_warning(shipped_engine) -> None:
    grey = np.full((120, 160, 3), 128, np.uint8)
    result = shipped_engine.process_bytes(encode(Image.fromarray(grey), "PNG"), parse_options(crop="subject"))
    assert (result.width, result.height) == (160, 120) and result.warnings == [NO_SUBJECT_WARNING]


def test_a_shadow_falls_under_a_whole_product_and_not_under_a_cut_portrait(shipped_engine) -> None:
    photo = (DATA / "objects" / "flower.jpg").read_bytes()
    plain = shipped_engine.process_bytes(photo, parse_options())
    shaded = shipped_engine.process_bytes(photo, parse_options(shadow=True))
    alpha_plain = np.asarray(Image.open(io.BytesIO(plain.image)))[:, :, 3].astype(int)
    alpha_shaded = np.asarray(Image.open(io.BytesIO(shaded.image)))[:, :, 3].astype(int)
    base = np.flatnonzero((alpha_plain >= 128).any(axis=1))[-1]
    band = slice(base + 1, min(alpha_plain.shape[0], base + 15))
    assert shaded.warnings == [] and (alpha_shaded[band] - alpha_plain[band]).max() > 40  # a shadow under it
    top = np.flatnonzero((alpha_plain >= 128).any(axis=1))[0]
    assert np.array_equal(alpha_shaded[:top], alpha_plain[:top])  # and none above it
    # The astronaut is cut by the photo's bottom edge: she stands on no floor, so no shadow, and it is said.
    portrait = (DATA / "portraits" / "astronaut.jpg").read_bytes()
    options = {"background": "#ffffff", "format": "png"}
    cut = shipped_engine.process_bytes(portrait, parse_options(options, shadow=True))
    assert cut.warnings == [SHADOW_WARNING]
    assert cut.image == shipped_engine.process_bytes(portrait, parse_options(options)).image
