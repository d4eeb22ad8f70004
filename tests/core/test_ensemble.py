"""``ensemble``: both networks, combined where they agree on the subject, else ``auto``'s choice."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matteflow.core.confidence import estimate_confidence
from matteflow.core.engine import MatteEngine, make_network_input
from matteflow.core.ensemble import (
    AGREE_FROM,
    agreement,
    combine,
    ensemble_matte,
    on_grid,
)
from matteflow.core.options import parse_options
from matteflow.core.postprocess import upsample_alpha_guided
from matteflow.core.registry import ENSEMBLE, GENERAL, PEOPLE, ModelSet, parse_model_name

DATA = Path(__file__).resolve().parents[1] / "data"


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float, inside: float = 1.0) -> np.ndarray:
    """A float32 matte: ``inside`` in a disc (centre and radius as fractions of the height), 0 elsewhere."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    disc = (y - centre[0] * h) ** 2 + (x - centre[1] * h) ** 2 <= (radius * h) ** 2
    return np.where(disc, inside, 0.0).astype(np.float32)


def test_agreement_is_the_iou_of_the_mattes_cut_at_one_half() -> None:
    a = np.zeros((4, 4), np.float32)
    b = a.copy()
    assert agreement(a, b) == 1.0  # neither marks anything: nothing to disagree on
    a[:, :2] = 0.9
    b[:, 1:3] = 0.6
    assert agreement(a, b) == pytest.approx(4 / 12)
    assert agreement(a, a) == 1.0
    b[:, :] = 0.4  # all below the cut
    assert agreement(a, b) == 0.0


def test_combine_decides_by_the_mean_and_takes_the_surer_value() -> None:
    people = np.array([[0.95, 0.7, 0.7, 0.3, 0.1]], np.float32)
    general = np.array([[0.0, 0.4, 0.2, 0.6, 0.3]], np.float32)
    # 0.95: the people model is sure of a person, so it stays in whatever the general model says;
    # 0.7 / 0.4: mean 0.55, in, valued by the surer "in" (0.7); 0.7 / 0.2: mean 0.45, out, valued 0.2;
    # 0.3 / 0.6: mean 0.45, out (0.3); 0.1 / 0.3: out (0.1).
    np.testing.assert_allclose(combine(people, general), [[0.95, 0.7, 0.2, 0.3, 0.1]])
    # Never less decisive than the mean: no half-transparent pixel where the two disagree.
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 50, 50), dtype=np.float32)
    assert np.all(np.abs(combine(a, b) - 0.5) >= np.abs((a + b) / 2 - 0.5) - 1e-6)


def test_mattes_that_agree_are_combined_on_the_people_grid() -> None:
    people = _disc((96, 64), (0.5, 0.33), 0.3, inside=0.8)
    general = _disc((80, 80), (0.5, 0.5), 0.3, inside=0.9)  # the square grid the general model sees
    assert agreement(people, on_grid(general, people.shape)) >= AGREE_FROM
    matte, name, evidence = ensemble_matte(people, general)
    assert name == ENSEMBLE and matte.shape == people.shape and matte.dtype == np.float32
    np.testing.assert_allclose(matte, combine(people, on_grid(general, people.shape)))
    assert matte.max() == pytest.approx(0.9)
    # The confidence reads the members' mean: their disagreement (the rim only one marks) counts as undecided.
    np.testing.assert_allclose(evidence, (people + on_grid(general, people.shape)) / 2)
    assert estimate_confidence(evidence) < estimate_confidence(matte)


def test_mattes_that_disagree_fall_back_to_autos_choice() -> None:
    shape = (64, 64)
    person_left = _disc(shape, (0.5, 0.25), 0.2)
    thing_right = _disc(shape, (0.5, 0.75), 0.2)
    # The people model is sure of its subject: it stays, unaveraged (averaging would halve it below the cut).
    matte, name, evidence = ensemble_matte(person_left, thing_right)
    assert name == PEOPLE and matte is person_left and evidence is person_left
    # The people model is a fog (unsure) and the general model is sure of another subject: the general one.
    fog = _disc(shape, (0.5, 0.25), 0.3, inside=0.55)
    matte, name, _ = ensemble_matte(fog, thing_right)
    assert name == GENERAL and matte is thing_right


def test_ensemble_is_a_model_name_and_a_single_network_engine_does_not_combine(
    random_engine: MatteEngine, portrait_jpeg: bytes
) -> None:
    assert parse_model_name(" Ensemble") == ENSEMBLE
    assert parse_options(model="ensemble").model == ENSEMBLE
    result = random_engine.process_bytes(portrait_jpeg, parse_options(model="ensemble"))
    assert result.model == PEOPLE  # one network behind both names: nothing to combine


# -- with the shipped networks ----------------------------------------------------------------------------


def _iou(result_mask: bytes, truth_path: Path) -> float:
    alpha = np.asarray(Image.open(io.BytesIO(result_mask))) >= 128
    truth = np.asarray(Image.open(truth_path).convert("L")) >= 128
    return np.count_nonzero(alpha & truth) / np.count_nonzero(alpha | truth)


def _network_matte(engine: MatteEngine, name: str, rgb: np.ndarray) -> np.ndarray:
    """The named network's matte as auto and ensemble get it (each at its own input size)."""
    model = engine.models.get(name)
    tensor, (h, w) = make_network_input(rgb, model.input_size, model.resize)
    return model.predict(tensor[None])[0, :h, :w]


def test_combining_the_two_mattes_beats_both_where_they_err_on_different_sides(shipped_engine: MatteEngine) -> None:
    # The combination rule itself, on two mattes that err on different sides (through the pipeline: people
    # 0.77, general 0.77, combined 0.91). They agree on the subject (0.62, past the gate), so auto and
    # ensemble both combine this photo.
    rgb = np.asarray(Image.open(DATA / "people" / "000000522418.jpg").convert("RGB"))
    truth = np.asarray(Image.open(DATA / "people_masks" / "000000522418.png").convert("L")) >= 128
    people = _network_matte(shipped_engine, PEOPLE, rgb)
    general = on_grid(_network_matte(shipped_engine, GENERAL, rgb), people.shape)
    assert agreement(people, general) >= AGREE_FROM

    def score(low: np.ndarray) -> float:
        cut = upsample_alpha_guided(low.astype(np.float32), rgb) >= 0.5
        return np.count_nonzero(cut & truth) / np.count_nonzero(cut | truth)

    scores = {"people": score(people), "general": score(general), "combined": score(combine(people, general))}
    assert scores["combined"] > max(scores["people"], scores["general"]) + 0.05, scores


def test_where_the_networks_agree_the_ensemble_combines_them(shipped_engine: MatteEngine) -> None:
    # A photo the two agree on well past the gate (0.74): the ensemble's matte is their combination.
    photo = DATA / "people" / "000000412151.jpg"
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    people = _network_matte(shipped_engine, PEOPLE, rgb)
    general = on_grid(_network_matte(shipped_engine, GENERAL, rgb), people.shape)
    assert agreement(people, general) >= AGREE_FROM + 0.1
    result = shipped_engine.process_bytes(photo.read_bytes(), parse_options(model=ENSEMBLE, mask=True))
    assert result.model == ENSEMBLE and 0.0 <= result.confidence <= 1.0
    combined = upsample_alpha_guided(combine(people, general), rgb)
    written = np.asarray(Image.open(io.BytesIO(result.mask))).astype(np.float32) / 255.0
    assert np.abs(written - combined).mean() < 0.01


def test_where_they_disagree_the_photo_keeps_one_network(shipped_engine: MatteEngine) -> None:
    # A crowd the general model cuts down to one salient figure: combining would lose the others.
    photo = (DATA / "people" / "000000060623.jpg").read_bytes()
    ensemble = shipped_engine.process_bytes(photo, parse_options(model="ensemble", mask=True))
    people = shipped_engine.process_bytes(photo, parse_options(model="people", mask=True))
    assert ensemble.model == PEOPLE
    assert ensemble.mask == people.mask
    # The flower the people model is unsure of and the general model is sure of: the general model's cut-out.
    flower = (DATA / "objects" / "flower.jpg").read_bytes()
    assert shipped_engine.process_bytes(flower, parse_options(model="ensemble")).model == GENERAL


def test_the_device_engine_combines_a_batch_as_the_numpy_engine_does(shipped_engine: MatteEngine) -> None:
    pytest.importorskip("torch")
    from matteflow.core.device_engine import DeviceMatteEngine

    photos = [
        DATA / "people" / "000000412151.jpg",
        DATA / "people" / "000000060623.jpg",
        DATA / "objects" / "flower.jpg",
    ]
    datas = [p.read_bytes() for p in photos]
    options = parse_options(model="ensemble", mask=True)
    device = DeviceMatteEngine(shipped_engine.models, max_pixels=50_000_000, device="cpu", decode_threads=2)
    try:
        got = device.process_many(datas, options)
    finally:
        device.close()
    want = shipped_engine.process_many(datas, options)
    assert [r.model for r in got] == [r.model for r in want] == [ENSEMBLE, PEOPLE, GENERAL]
    for have, expected in zip(got, want, strict=True):
        assert have.confidence == pytest.approx(expected.confidence)
        a = np.asarray(Image.open(io.BytesIO(have.mask))).astype(int)
        b = np.asarray(Image.open(io.BytesIO(expected.mask))).astype(int)
        assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.999


class _SurePeopleNetwork:
    """A people network that is sure of every photo: a crisp disc (decisiveness 1.0), as on a clean portrait."""

    device, input_size, resize, name = "cpu", 384, "long-side", "sure-disc"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        n, _, h, w = batch.shape
        return np.repeat(_disc((h, w), (0.5, 0.5 * w / h), 0.3)[None], n, axis=0)


class _CountingNetwork:
    """The shipped general network, recording the input shape of every call."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, []
        self.device, self.input_size, self.resize, self.name = model.device, model.input_size, model.resize, model.name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape)
        return self.model.predict(batch)


def test_auto_asks_the_general_model_only_about_unsure_photos(
    shipped_engine: MatteEngine,
) -> None:
    general = _CountingNetwork(shipped_engine.models.get(GENERAL))
    photo = (DATA / "people" / "000000522418.jpg").read_bytes()
    sure = MatteEngine(ModelSet({PEOPLE: _SurePeopleNetwork, GENERAL: lambda: general}), max_pixels=50_000_000)
    assert sure.process_bytes(photo, parse_options()).model == PEOPLE
    assert general.calls == []  # a photo the people model is sure of never pays for the general network
    assert sure.process_bytes(photo, parse_options(model="ensemble")).model in (ENSEMBLE, PEOPLE, GENERAL)
    # At its own input size, as alone: its decisiveness is read at the size it was made for.
    side = general.input_size
    assert general.calls == [(1, 3, side, side)]
    assert sure.process_bytes(photo, parse_options(model="general")).model == GENERAL
    assert general.calls[-1] == (1, 3, side, side)
    # The real people model is unsure of this crowd (decisiveness 0.41, below PEOPLE_SURE_FROM): auto asks both
    # networks, which disagree on the subject (agreement 0.33), and the general model is not sure enough of its
    # own (0.75) to replace the people model's matte, which stands.
    crowd = (DATA / "people" / "000000060623.jpg").read_bytes()
    both = _CountingNetwork(shipped_engine.models.get(GENERAL))
    real = MatteEngine(ModelSet({PEOPLE: lambda: shipped_engine.models.get(PEOPLE), GENERAL: lambda: both}), 50_000_000)
    auto = real.process_bytes(crowd, parse_options(mask=True))
    assert auto.model == PEOPLE and len(both.calls) == 1
    assert auto.mask == real.process_bytes(crowd, parse_options(model="people", mask=True)).mask


def test_auto_combines_the_photos_it_asks_both_networks_about(shipped_engine: MatteEngine) -> None:
    # Unsure of this one (a group), and the general model finds the same subject: the ensemble's matte.
    unsure = (DATA / "people" / "000000412151.jpg").read_bytes()
    auto = shipped_engine.process_bytes(unsure, parse_options(mask=True))
    both = shipped_engine.process_bytes(unsure, parse_options(model="ensemble", mask=True))
    assert auto.model == both.model == ENSEMBLE
    assert auto.mask == both.mask and auto.confidence == both.confidence


def test_words_asking_for_quality_win_over_the_deployment_default() -> None:
    from matteflow.core.instructions import resolve_options

    assert resolve_options({}, "best quality", default_model="people").options.model == ENSEMBLE
    assert resolve_options({}, "最佳质量", default_model="people").options.model == ENSEMBLE
    assert resolve_options({}, "white background", default_model="people").options.model == PEOPLE
    assert resolve_options({"model": "general"}, "best quality").options.model == GENERAL  # explicit wins
