"""The student voice of the label ensemble (self-training): the shipped model run as a teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matteflow.training.labels import read_gray, read_rgb
from matteflow.training.teachers import KNOWN_TEACHERS, load_teachers, predict_with_flip

DATA = Path(__file__).resolve().parents[1] / "data"


def test_student_voice_is_a_person_probability_of_the_photo_size() -> None:
    photo = sorted((DATA / "people").glob("*.jpg"))[0]
    rgb = read_rgb(photo)
    mask = read_gray(DATA / "people_masks" / f"{photo.stem}.png") >= 128
    (student,) = load_teachers("/nonexistent", names=("student",))  # the shipped model needs no teacher folder
    prob = predict_with_flip(student, rgb)
    assert prob.shape == rgb.shape[:2] and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    # It must find the person, not merely return something of the right shape.
    inside, outside = prob[mask].mean(), prob[~mask].mean()
    assert inside > outside + 0.3


def test_unknown_teacher_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="student"):
        load_teachers("/nonexistent", names=("nobody",))
    assert "student" in KNOWN_TEACHERS
