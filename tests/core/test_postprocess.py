from __future__ import annotations

import cv2
import numpy as np

from matteflow.core import postprocess as pp


def _step_scene(
    h: int = 256, w: int = 256, amplitude: float = 12.0, period: float = 9.0
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy photo with a sharp, wavy vertical boundary (subject left, background right) and its true alpha."""
    yy, xx = np.mgrid[0:h, 0:w]
    boundary = w / 2 + amplitude * np.sin(yy / period)
    alpha = (xx < boundary).astype(np.float32)
    colours = np.where(alpha[:, :, None] > 0, [200, 120, 90], [30, 80, 170])
    noise = np.random.default_rng(0).normal(0, 4, (h, w, 3))
    return np.clip(colours + noise, 0, 255).astype(np.uint8), alpha


def test_guided_upsampling_puts_the_edge_where_the_photo_has_it() -> None:
    image, truth = _step_scene(512, 512, amplitude=30, period=7)
    low = cv2.resize(truth, (512 // 6, 512 // 6), interpolation=cv2.INTER_AREA)  # a network at 1/6 size
    guided = pp.upsample_alpha_guided(low, image, guide_side=512, radius=4, eps=1e-3)
    bilinear = cv2.resize(low, (512, 512), interpolation=cv2.INTER_LINEAR)
    assert guided.shape == truth.shape and guided.dtype == np.float32
    assert guided.min() >= 0.0 and guided.max() <= 1.0
    # The guided filter keeps the local mean of the matte (so the mean error stays the same) but moves the
    # 0.5 contour onto the photo's real edge: far fewer pixels land on the wrong side.
    wrong_guided = ((guided > 0.5) != (truth > 0.5)).mean()
    wrong_bilinear = ((bilinear > 0.5) != (truth > 0.5)).mean()
    assert wrong_guided < wrong_bilinear / 3, (wrong_guided, wrong_bilinear)
    assert np.abs(guided - truth).mean() < 1.05 * np.abs(bilinear - truth).mean()


def test_flat_regions_are_exactly_solid_or_clear() -> None:
    image, truth = _step_scene()
    low = cv2.resize(truth, (64, 64), interpolation=cv2.INTER_AREA)
    alpha = pp.upsample_alpha_guided(low, image)
    assert (alpha[:, :60] == 1.0).all() and (alpha[:, -60:] == 0.0).all()


def test_alpha_threshold_clears_faint_haze_only() -> None:
    alpha = np.array([[0.01, 0.05, 0.5, 1.0]], np.float32)
    out = pp.apply_alpha_threshold(alpha, 15)  # 15/255 ~ 0.059
    assert out.tolist() == [[0.0, 0.0, 0.5, 1.0]]
    assert pp.apply_alpha_threshold(alpha, 0) is alpha


def test_erode_shrinks_a_disc_by_the_requested_pixels() -> None:
    alpha = np.zeros((101, 101), np.float32)
    cv2.circle(alpha, (50, 50), 30, 1.0, -1)
    eroded = pp.erode_alpha(alpha, 3)
    radius_before = np.sqrt(alpha.sum() / np.pi)
    radius_after = np.sqrt(eroded.sum() / np.pi)
    assert abs((radius_before - radius_after) - 3) < 0.6


def test_feather_softens_only_the_edge() -> None:
    alpha = np.zeros((101, 101), np.float32)
    alpha[:, :50] = 1.0
    out = pp.feather_alpha(alpha, sigma=2.0)
    assert (out[:, :40] == 1.0).all() and (out[:, 60:] == 0.0).all()
    edge = out[50, 45:55]
    assert ((edge > 0.01) & (edge < 0.99)).sum() >= 4  # a soft ramp replaced the hard step
    assert np.all(np.diff(edge) <= 1e-6)


def test_foreground_estimation_removes_the_old_background_colour() -> None:
    h, w = 64, 128
    foreground = np.zeros((h, w, 3), np.float32)
    foreground[:] = (0.9, 0.6, 0.3)
    background = np.zeros((h, w, 3), np.float32)
    background[:] = (0.0, 0.2, 1.0)
    alpha = np.tile(np.clip((np.arange(w) - 40) / 48.0, 0, 1)[::-1], (h, 1)).astype(np.float32)  # soft ramp
    a = alpha[:, :, None]
    photo = ((foreground * a + background * (1 - a)) * 255 + 0.5).astype(np.uint8)
    estimate = pp.finish_foreground(photo, alpha).astype(np.float32) / 255
    soft = (alpha > 0.1) & (alpha < 0.9)
    naive_error = np.abs(photo.astype(np.float32) / 255 - foreground)[soft].mean()
    estimate_error = np.abs(estimate - foreground)[soft].mean()
    assert estimate_error < 0.25 * naive_error, (estimate_error, naive_error)
    assert np.array_equal(estimate[alpha == 1.0], photo[alpha == 1.0].astype(np.float32) / 255)


def test_compositing_is_exact_at_solid_and_clear_pixels() -> None:
    fg = np.full((2, 3, 3), 100, np.uint8)
    alpha = np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.25]], np.float32)
    over = pp.composite_over_color(fg, alpha, (255, 0, 0))
    assert over[0, 0].tolist() == [255, 0, 0] and over[0, 2].tolist() == [100, 100, 100]
    assert abs(int(over[0, 1, 0]) - 178) <= 1 and abs(int(over[0, 1, 1]) - 50) <= 1
    rgba = pp.compose_rgba(fg, alpha)
    assert rgba[0, 0].tolist() == [0, 0, 0, 0] and rgba[0, 2].tolist() == [100, 100, 100, 255]
    assert rgba[0, 1, 3] == 128


def test_a_backdrop_covers_the_frame_centred_never_stretched() -> None:
    backdrop = np.zeros((100, 400, 3), np.uint8)  # 4:1, three bands left to right
    backdrop[:, :150] = (255, 0, 0)
    backdrop[:, 150:250] = (0, 255, 0)
    backdrop[:, 250:] = (0, 0, 255)
    covered = pp.cover(backdrop, (50, 50))  # a square frame: the middle 100 x 100 of it, halved
    assert covered.shape == (50, 50, 3) and (covered == (0, 255, 0)).all()
    foreground = np.full((50, 50, 3), 200, np.uint8)
    alpha = np.zeros((50, 50), np.float32)
    alpha[10:20, 10:20] = 1.0
    alpha[30, 30] = 0.5
    out = pp.composite_over_image(foreground, alpha, backdrop)
    assert (out[10:20, 10:20] == 200).all() and (out[0, 0] == (0, 255, 0)).all()
    assert np.abs(out[30, 30].astype(int) - [100, 228, 100]).max() <= 1  # half the subject, half the backdrop
    big = pp.cover(backdrop, (800, 100))  # wider than the backdrop: scaled up to cover, then cropped
    assert big.shape == (100, 800, 3)


def test_a_drop_shadow_lies_under_the_subject_and_leaves_it_untouched() -> None:
    h, w = 200, 160
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = (((xx - 80) / 40.0) ** 2 + ((yy - 90) / 50.0) ** 2 <= 1.0).astype(np.float32)  # rows 40-140
    foreground = np.full((h, w, 3), (200, 120, 90), np.uint8)
    shaded, combined = pp.add_drop_shadow(foreground, alpha)
    assert np.array_equal(combined[alpha == 1], alpha[alpha == 1])  # opaque subject: as it was
    assert np.array_equal(shaded[alpha == 1], foreground[alpha == 1])
    assert combined[:40].max() < 0.01  # nothing above the subject
    below = combined[141:155, 60:100]
    shadow_only = (alpha[141:155] == 0) & (combined[141:155] > 0.01)
    assert 0.15 < below.max() <= pp.SHADOW_OPACITY and (shaded[141:155][shadow_only] == 0).all()  # black
    assert combined[141:155, :20].max() < 0.05  # under the subject, not beside it
    assert pp.touches_bottom(alpha) is False and pp.touches_bottom(np.ones((4, 4), np.float32)) is True
    empty = np.zeros((h, w), np.float32)
    same_fg, same_alpha = pp.add_drop_shadow(foreground, empty)
    assert same_fg is foreground and same_alpha is empty  # no subject: nothing to shade
