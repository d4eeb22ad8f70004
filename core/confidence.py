"""How sure the network is of one cut-out: a score in [0, 1] computed from its own alpha matte.

A good matte is decisive: nearly every pixel is clearly in (alpha near 1) or clearly out (near 0), and the
undecided pixels sit in a thin band along the subject's outline. A photo the model does not understand shows
as a wide fog of half-transparent pixels (a "ghost" subject) or as no subject at all. The score turns those
two signs into one number so a batch can point its user at the results worth a second look.
"""

from __future__ import annotations

import numpy as np

# Pixels between these two alphas count as undecided.
UNDECIDED_LOW = 0.15
UNDECIDED_HIGH = 0.85
# Below this share of the frame the model found no subject worth the name.
MIN_SUBJECT_SHARE = 0.005
# Results below this confidence are pointed out to the user as worth a look (the page's "Check this one", the
# CLI's closing line); on people_dev 5 of the 8 photos below 0.7 IoU fall in the lowest 15 % of the scores.
WORTH_A_LOOK_BELOW = 0.5


def _share_decided(alpha: np.ndarray) -> float | None:
    """Of the pixels the model gives any weight to (alpha > UNDECIDED_LOW), the share it is decisive about
    (alpha >= UNDECIDED_HIGH); None when it gives no pixel any weight."""
    if alpha.ndim != 2 or alpha.size == 0:
        raise ValueError(f"expected an H x W alpha matte, got shape {alpha.shape}")
    alpha = np.asarray(alpha, dtype=np.float32)
    marked = alpha > UNDECIDED_LOW
    candidate = int(np.count_nonzero(marked))
    if candidate == 0:
        return None
    undecided = int(np.count_nonzero(marked & (alpha < UNDECIDED_HIGH)))
    return 1.0 - undecided / candidate


def _subject_share(alpha: np.ndarray) -> float:
    return float(np.count_nonzero(alpha >= 0.5)) / alpha.size


def decisiveness(alpha: np.ndarray) -> float:
    """How decided a matte (H x W float in [0, 1], network resolution) is, in [0, 1]: the share of the pixels
    it gives any weight to that are clearly in or out; 0 when it found no subject of ``MIN_SUBJECT_SHARE``.
    The yes/no signal ``auto`` chooses models by (:mod:`matteflow.core.autoselect`)."""
    decided = _share_decided(alpha)
    if decided is None or _subject_share(alpha) < MIN_SUBJECT_SHARE:
        return 0.0
    return decided


def estimate_confidence(alpha: np.ndarray) -> float:
    """Confidence in [0, 1] of a matte ``alpha`` (H x W float in [0, 1], any resolution; raw network output).

    The same share of decided pixels as :func:`decisiveness`, but scaled down smoothly (not cut to 0) when
    the decided subject covers less than ``MIN_SUBJECT_SHARE`` of the frame, so a score can rank results.
    """
    decided = _share_decided(alpha)
    if decided is None:
        return 0.0
    presence = min(1.0, _subject_share(alpha) / MIN_SUBJECT_SHARE)
    return float(np.clip(decided * presence, 0.0, 1.0))
