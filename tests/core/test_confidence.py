import numpy as np
import pytest

from matteflow.core.confidence import estimate_confidence


def _disc(size: int = 96, radius: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2).astype(np.float32)


def test_decisive_matte_scores_high_and_ghost_scores_low():
    crisp = _disc()
    ghost = crisp * 0.5 + 0.05  # the group-photo failure: nothing ever clearly foreground
    assert estimate_confidence(crisp) > 0.95
    assert estimate_confidence(ghost) < 0.1


def test_soft_outline_costs_little_but_fog_costs_a_lot():
    import cv2

    soft_edge = cv2.GaussianBlur(_disc(), (0, 0), 1.0)
    fog = np.clip(cv2.GaussianBlur(_disc(), (0, 0), 12.0) * 1.2, 0, 1)
    assert estimate_confidence(soft_edge) > estimate_confidence(fog) + 0.3


def test_no_subject_is_not_confident():
    assert estimate_confidence(np.zeros((64, 64), np.float32)) == 0.0
    speck = np.zeros((200, 200), np.float32)
    speck[0:2, 0:2] = 1.0
    assert estimate_confidence(speck) < 0.1


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match="H x W"):
        estimate_confidence(np.zeros((4, 4, 3), np.float32))
