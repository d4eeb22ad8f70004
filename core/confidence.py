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


def estimate_confidence(alpha: np.ndarray) -> float:
    """Confidence in [0, 1] of a matte ``alpha`` (H x W float in [0, 1], any resolution; raw network output).

    ``1 - undecided / candidate`` where *candidate* is every pixel the model gives any weight to
    (alpha > UNDECIDED_LOW) and *undecided* those of them it is unsure about; scaled down when the decided
    subject covers less than ``MIN_SUBJECT_SHARE`` of the frame.
    """
    if alpha.ndim != 2 or alpha.size == 0:
        raise ValueError(f"expected an H x W alpha matte, got shape {alpha.shape}")
    alpha = np.asarray(alpha, dtype=np.float32)
    candidate = float(np.count_nonzero(alpha > UNDECIDED_LOW))
    if candidate == 0:
        return 0.0
    undecided = float(np.count_nonzero((alpha > UNDECIDED_LOW) & (alpha < UNDECIDED_HIGH)))
    decisiveness = 1.0 - undecided / candidate
    subject_share = float(np.count_nonzero(alpha >= 0.5)) / alpha.size
    presence = min(1.0, subject_share / MIN_SUBJECT_SHARE)
    return float(np.clip(decisiveness * presence, 0.0, 1.0))
