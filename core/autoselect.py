"""``auto``: which model a photo goes through, decided from the models' own mattes, cheaply.

The people model runs first. When its matte shows a subject it is sure of (decisive: most pixels it marks
are clearly in or out), the photo stays with it, and most people photos never pay for a second network.
When it is not sure (a fog of half-transparent pixels, or nothing found), the general (salient-object) model
runs too. Where the two agree on the subject their mattes are combined (:mod:`matteflow.core.ensemble`, as
``ensemble`` does on every photo); where they do not, the general model's matte is used only if *it* is sure
of its subject (:func:`choose_model`), otherwise the people model's matte stands.

What this decides is "which model is sure of a subject here", not "is there a person". Measured through the
pipeline (models/README.md, "Auto"): the people model is sure of, and better than the general model on, the
plush toys and the doll with a human face of objects_dev, and unsure of its flowers and plants, which the
general model cuts out surely and well; on people photos where the people model is unsure the general model is
mostly unsure too (crowds, cluttered scenes: those stay with the people model). The thresholds are global
round numbers, not tuned per photo. The people threshold trades quality for CPU, since each unsure photo also
runs the general network (~4.8x the people network's cost): 0.6 measured better (objects_dev 0.955 vs 0.917
IoU, people_dev 0.882 vs 0.878) but sent 3 of the 32 bench photos through both networks (+13-22 % CPU per
image on that run), too close to the CLI's 3x-rembg speed bar; 0.5 sends 1 of 32.
"""

from __future__ import annotations

import numpy as np

from .confidence import decisiveness
from .registry import GENERAL, PEOPLE

# Decisiveness (share of the marked pixels that are decided, :func:`decisiveness`) from which each model counts
# as sure.
PEOPLE_SURE_FROM = 0.5
GENERAL_SURE_FROM = 0.85


def people_model_is_sure(people_alpha: np.ndarray) -> bool:
    """Whether the people model's matte settles the photo (no second model needed)."""
    return decisiveness(people_alpha) >= PEOPLE_SURE_FROM


def choose_model(people_alpha: np.ndarray, general_alpha: np.ndarray | None = None) -> str:
    """``people`` or ``general`` for one photo. ``general_alpha`` is the general model's matte, needed only
    when the people model is not sure (:func:`people_model_is_sure`); without it the answer is ``people``."""
    if people_model_is_sure(people_alpha) or general_alpha is None:
        return PEOPLE
    return GENERAL if decisiveness(general_alpha) >= GENERAL_SURE_FROM else PEOPLE
