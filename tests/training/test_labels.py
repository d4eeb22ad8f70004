"""Label building and augmentation on small synthetic arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from training_helpers import synthetic_person

from matteflow.training.dataset import Augmenter, PackedSample, assign_splits
from matteflow.training.labels import guided_filter, mask_iou, soft_alpha_from_probability, trimap_from_probability
from matteflow.training.teachers import ensemble_probability


def test_trimap_has_a_band_of_the_requested_width() -> None:
    prob = np.zeros((64, 64), np.float32)
    prob[16:48, 16:48] = 1.0
    trimap = trimap_from_probability(prob, band=3)
    assert set(np.unique(trimap)) == {0, 128, 255}
    assert trimap[32, 32] == 255 and trimap[0, 0] == 0
    assert trimap[16, 32] == 128 and trimap[14, 32] == 128  # both sides of the edge are unknown


def test_soft_alpha_follows_the_photo_and_keeps_confident_pixels() -> None:
    rng = np.random.default_rng(1)
    rgb, mask = synthetic_person(rng, 128, 96)
    truth = mask.astype(np.float32) / 255.0
    # A teacher-like probability: right place, but blurry and a few pixels too wide.
    prob = cv2.GaussianBlur(cv2.dilate(truth, np.ones((5, 5), np.uint8)), (0, 0), 3)
    alpha = soft_alpha_from_probability(rgb, prob)
    assert alpha.shape == prob.shape and alpha.dtype == np.float32
    assert mask_iou(alpha, truth) >= mask_iou(prob, truth) - 0.01
    assert np.all(alpha[prob >= 0.75] >= 0.5)
    assert np.all(alpha[prob <= 0.25] < 0.5)


def test_guided_filter_keeps_range_and_shape() -> None:
    rng = np.random.default_rng(2)
    rgb, mask = synthetic_person(rng, 64, 48)
    out = guided_filter(rgb, mask.astype(np.float32) / 255.0)
    assert out.shape == (64, 48) and out.min() >= 0.0 and out.max() <= 1.0
    assert mask_iou(out, mask / 255.0) > 0.9


def test_ensemble_is_a_weighted_mean() -> None:
    a, b = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    np.testing.assert_allclose(ensemble_probability([a, b]), 0.5)
    np.testing.assert_allclose(ensemble_probability([a, b], [1.0, 3.0]), 0.75)
    with pytest.raises(ValueError):
        ensemble_probability([])


def test_splits_are_deterministic_and_disjoint() -> None:
    masked = [f"m{i}" for i in range(20)]
    other = [f"o{i}" for i in range(50)]
    s1 = assign_splits(masked, other, 0.5, 0.1, seed=7)
    s2 = assign_splits(list(reversed(masked)), other, 0.5, 0.1, seed=7)
    assert s1 == s2
    assert sum(v == "holdout" for v in s1.values()) == 10
    assert sum(v == "val" for v in s1.values()) == 5
    assert all(s1[k] != "holdout" for k in other)


def test_composite_puts_the_person_on_a_new_background(training_config: dict) -> None:
    rng = np.random.default_rng(3)
    img, mask = synthetic_person(rng, 96, 72)
    bg = np.full((50, 60, 3), (0, 200, 0), np.uint8)
    aug = Augmenter(64, training_config["augment"])
    out, alpha = aug.composite(np.random.default_rng(4), img, mask, bg)
    assert out.shape == img.shape and alpha.shape == mask.shape
    assert 0.3 * mask.sum() <= alpha.sum() <= mask.sum() * 1.01  # the person was scaled, not lost
    # Where alpha is 0 only the green background shows.
    bgpix = out[alpha == 0].astype(int)
    assert np.abs(bgpix[:, 1] - 200).max() <= 1 and bgpix[:, 0].max() <= 1


def test_augmented_sample_shapes(training_config: dict) -> None:
    rng = np.random.default_rng(5)
    img, mask = synthetic_person(rng, 120, 80)
    sample = PackedSample("k", "s", "train", "mask", img, mask)
    aug = Augmenter(64, training_config["augment"])
    for seed in range(10):
        out, alpha = aug(np.random.default_rng(seed), sample, [img])
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8
        assert alpha.shape == (64, 64) and alpha.dtype == np.uint8
