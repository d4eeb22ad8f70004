"""``auto``: which model a photo goes through, decided from the models' own mattes, cheaply.

The people model runs first. When its matte shows a subject it is sure of (decisive: most pixels it marks
are clearly in or out), the photo stays with it, and most people photos never pay for a second network.
When it is not sure (a fog of half-transparent pixels, or nothing found), the general (salient-object) model
runs too. Where the two agree on the subject their mattes are combined (:mod:`matteflow.core.ensemble`, as
``ensemble`` does on every photo); where they do not, the general model's matte is used only if *it* is sure
of its subject (:func:`choose_model`), otherwise the people model's matte stands.

What this decides is "which model is sure of a subject here", not "is there a person". Measured through the
pipeline (models/README.md, "Auto"): the people model is sure of, and better than the general model on, the
doll with a human face of objects_dev, and unsure of its flowers and plants, which the general model cuts out
surely and well; on people photos where the people model is unsure the general model is mostly unsure too
(crowds, cluttered scenes: those stay with the people model). The thresholds are global round numbers, not
tuned per photo. Two of them, because asking for a second opinion and handing the photo over are not the
same risk:

- below ``PEOPLE_SURE_FROM`` (0.9) the general network runs, and where the two agree on the subject they are
  combined: a plush toy the people model half-finds, a person with a fog around them, a bystander kept as a
  ghost beside a subject the people model is otherwise sure of;
- only below ``PEOPLE_KEPT_FROM`` (0.5) may the general model's matte *replace* the people model's where they
  disagree. Between the two, a street scene whose most salient thing is not its people (a bus) would lose
  every person (one of the 49 COCO training scenes: IoU 0.46 -> 0.0 with a single threshold at 0.6).

Each unsure photo pays for the general network too (int8, 320 x 320, its own input size: ~315 ms of one
core per photo). That price is what sets the first threshold. Measured through the pipeline with the
second opinion at 256 x 256, as it was then (models/README.md, "Auto"), ``PEOPLE_SURE_FROM`` 0.6 / 0.85 /
**0.9** / 0.95 / always: people_dev mean IoU 0.883 / 0.894 / **0.895** / 0.896 / 0.896, objects_dev 0.953 /
0.960 / **0.967** / 0.969 / 0.969, with both networks on 7 / 51 / **64** / 90 / 100 % of people_dev's photos
(9 / 28 / 34 / 63 / 100 % of the 32 bench photos). 0.9 keeps nearly all of the ensemble's gain for about a
third of its cost on the bench photos. At 320 (since 2026-12-03, :mod:`matteflow.core.ensemble`): people_dev
0.8965, objects_dev 0.966, 5.5 images/s at 1080p against rembg's 1.5 (bench/README.md).
"""

from __future__ import annotations

import numpy as np

from .confidence import decisiveness
from .registry import GENERAL, PEOPLE

# Decisiveness (share of the marked pixels that are decided, :func:`decisiveness`) from which each model counts
# as sure (below PEOPLE_SURE_FROM the general model runs too), and from which the people model's matte is never
# replaced by the general one, only combined with it where they agree.
PEOPLE_SURE_FROM = 0.9
PEOPLE_KEPT_FROM = 0.5
# 0.85 until stop 27; with the second opinion at 320 (more decisive on hard photos) 0.9: the 49 COCO crowds
# 0.5351 -> 0.5437 (street scenes whose general matte is 0.86-0.88 sure of something other than their people
# stay with the people model), objects_dev and people_dev unchanged (the products it takes there are 0.94-0.98
# sure). Swept on the pipeline's mattes: 0.8 / 0.85 / 0.9 give the COCO crowds 0.535 / 0.535 / 0.544.
GENERAL_SURE_FROM = 0.9


def people_model_is_sure(people_alpha: np.ndarray) -> bool:
    """Whether the people model's matte settles the photo (no second model needed)."""
    return decisiveness(people_alpha) >= PEOPLE_SURE_FROM


def choose_model(people_alpha: np.ndarray, general_alpha: np.ndarray | None = None) -> str:
    """``people`` or ``general`` for one photo whose two mattes disagree on the subject. ``general`` only where
    the people model is well short of sure (below ``PEOPLE_KEPT_FROM``) and the general model is sure of its
    subject; without ``general_alpha`` the answer is ``people``."""
    if general_alpha is None or decisiveness(people_alpha) >= PEOPLE_KEPT_FROM:
        return PEOPLE
    return GENERAL if decisiveness(general_alpha) >= GENERAL_SURE_FROM else PEOPLE
