"""``ensemble``: both networks on every photo, combined where they agree on the subject.

The people model (our distilled U-Net) and the general model (U^2-Net-p) make different mistakes: the
people model leaves a half-transparent fog around people and keeps blurred bystanders; the general model
draws a tighter outline but misses what is not salient (a hand, a second person) and fails on some people
photos outright. Where both find the same subject, the combined matte is better than either (people_dev
mean IoU 0.878 people, 0.876 general, 0.896 ensemble; objects_dev 0.742 people, 0.902 general, 0.969
ensemble; models/README.md, "Ensemble" and "Auto"):

- the **mean** of the two decides in or out, pixel by pixel;
- where the people model is **sure of a person** (alpha >= ``UNDECIDED_HIGH``) the pixel stays in: the
  general model's misses there are hands, sleeves and second people, not background;
- the **value** comes from the network surer of that decision (the larger alpha where the pixel is in, the
  smaller where it is out), so the result is as decisive as its members. A plain mean halves every pixel
  the two disagree on: half-transparent bodies and ghosts on a coloured background, though the IoU rose.

Where they disagree on *what* the subject is (a crowd the general model cuts down to its most salient
person), the photo keeps ``auto``'s choice of one network (:func:`~matteflow.core.autoselect.choose_model`).
Agreement is the IoU of the two mattes cut at 0.5, on the people model's grid; ``AGREE_FROM`` (0.6) was the
best round value on the sets we may tune on (the 49 COCO photos with person masks of the training data, the
5 test photos, objects_dev).

The general network gives this second opinion at its own 320 x 320 input, as when it runs alone. From
2026-12-02 to 12-03 it ran at 256 x 256 (0.58x the network time: 184 vs 315 ms per photo, int8 on the CPU).
On the hard photos where ``choose_model`` decides, its mattes are more decisive at 320 (the COCO crowds:
median +0.07; objects_dev's flowering cactus 0.850 -> 0.94, so it is no longer left to the people model's
fog; on 300 ordinary training photos the two sizes differ by 0.004), and the sure-threshold went from 0.85
to 0.9 with it (:data:`~matteflow.core.autoselect.GENERAL_SURE_FROM`). Through the pipeline, 256 -> 320:
``auto`` people_dev 0.8953 -> 0.8965 (SAD 10.63 -> 10.33), objects_dev 0.897 -> 0.966 (SAD 31.8 -> 11.0),
the 49 COCO crowds 0.5415 -> 0.5437; ``ensemble`` people_dev 0.8964 -> 0.8985; 12 % more CPU per 1080p
photo for ``auto`` (models/README.md, "Auto").

It costs both networks on every photo (bench/README.md): the choice for quality over speed; ``auto``, the
default, asks the general model only about the photos the people model is not sure of.
"""

from __future__ import annotations

import cv2
import numpy as np

from .autoselect import choose_model
from .confidence import UNDECIDED_HIGH
from .registry import ENSEMBLE, GENERAL

# Minimum IoU of the two mattes (each cut at 0.5) for them to count as the same subject.
AGREE_FROM = 0.6


def on_grid(alpha: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``alpha`` resampled (bilinear) to ``shape`` (H, W): the networks see the photo at different sizes
    (people: long side 384; general: squeezed to a 320 x 320 square), both covering the whole photo."""
    if alpha.shape == shape:
        return alpha
    return cv2.resize(alpha, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def agreement(first: np.ndarray, second: np.ndarray) -> float:
    """IoU of two same-shape mattes cut at 0.5; 1.0 when neither marks anything (nothing to disagree on)."""
    a, b = first >= 0.5, second >= 0.5
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 1.0


def combine(people_alpha: np.ndarray, general_alpha: np.ndarray) -> np.ndarray:
    """Two same-shape mattes of one subject as one: in or out by their mean (or the people model's sure
    pixels), valued by the network surer of that answer."""
    keep = ((people_alpha + general_alpha) >= 1.0) | (people_alpha >= UNDECIDED_HIGH)
    return np.where(keep, np.maximum(people_alpha, general_alpha), np.minimum(people_alpha, general_alpha))


def ensemble_matte(people_alpha: np.ndarray, general_alpha: np.ndarray) -> tuple[np.ndarray, str, np.ndarray]:
    """The low-resolution matte of one photo, what made it, and the matte its confidence is read from.

    ``ensemble`` (:func:`combine`, on the people model's grid) when the two agree on the subject; its
    confidence reads the members' *mean*, where their disagreement shows as undecided pixels (the combined
    matte is decisive by construction and would never ask for a second look). Else ``people`` or
    ``general`` as ``auto`` chooses, with that matte's own confidence.
    """
    general_here = on_grid(general_alpha, people_alpha.shape)
    if agreement(people_alpha, general_here) >= AGREE_FROM:
        mean = (people_alpha + general_here) * np.float32(0.5)
        return combine(people_alpha, general_here), ENSEMBLE, mean
    chosen = choose_model(people_alpha, general_alpha)
    matte = general_alpha if chosen == GENERAL else people_alpha
    return matte, chosen, matte
