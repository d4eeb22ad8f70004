"""``auto``: which model a photo goes through, decided from the people model's own matte (which runs first).

The people model was trained on people photos and on background photos without people, so on a photo
without a person it either finds nothing or answers with a fog of half-transparent pixels. When it answers
with a decisive matte of a subject, the photo stays with it; otherwise the general (salient-object) model runs.
The rule costs nothing beyond the people model's pass: a people photo never pays for the general model.

What it decides is "is the people model sure of a subject here", not "is there a person": measured on
objects_dev (models/README.md), the people model is also sure of, and better than the general model on, the
plush toys and the doll with a human face, and unsure of the flowers and plants that the general model cuts
out well. Thresholds are fixed round numbers, not tuned per photo.
"""

from __future__ import annotations

import numpy as np

from .registry import GENERAL, PEOPLE

# A pixel between these alphas is one the people model is undecided about.
UNDECIDED_LOW = 0.15
UNDECIDED_HIGH = 0.85
# The people model keeps the photo when at most this share of the pixels it gives any weight to are undecided.
MAX_UNDECIDED_SHARE = 0.5
# ... and its decided subject covers at least this share of the frame (else it found nobody).
MIN_SUBJECT_SHARE = 0.005


def people_model_is_sure(people_alpha: np.ndarray) -> bool:
    """Whether the people model's matte (H x W float in [0, 1], network resolution) shows a subject it is
    sure of: a subject of some size, and most of what it marked decided (clearly in or clearly out)."""
    if people_alpha.ndim != 2 or people_alpha.size == 0:
        raise ValueError(f"expected an H x W alpha matte, got shape {people_alpha.shape}")
    marked = people_alpha > UNDECIDED_LOW
    candidates = int(np.count_nonzero(marked))
    if candidates == 0:
        return False
    subject_share = np.count_nonzero(people_alpha >= 0.5) / people_alpha.size
    if subject_share < MIN_SUBJECT_SHARE:
        return False
    undecided = int(np.count_nonzero(marked & (people_alpha < UNDECIDED_HIGH)))
    return undecided / candidates <= MAX_UNDECIDED_SHARE


def choose_model(people_alpha: np.ndarray) -> str:
    """``people`` or ``general`` for one photo, given the people model's matte of it."""
    return PEOPLE if people_model_is_sure(people_alpha) else GENERAL
