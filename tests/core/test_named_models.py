"""Named models (people / general / auto): the registry, presets, the shipped general model, auto's choice."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matteflow.core.autoselect import (
    PEOPLE_KEPT_FROM,
    PEOPLE_SURE_FROM,
    choose_model,
    decisiveness,
    people_model_is_sure,
)
from matteflow.core.engine import MatteEngine
from matteflow.core.errors import InvalidOptionError, ModelError
from matteflow.core.model import load_model, shipped_model_files
from matteflow.core.options import parse_options
from matteflow.core.registry import ENSEMBLE, GENERAL, MODEL_NAMES, PEOPLE, ModelSet, parse_model_name

DATA = Path(__file__).resolve().parents[1] / "data"
# A person the people model is unsure of (decisiveness 0.62) and the general model finds too (agreement 0.62):
# auto combines the two.
PERSON_PHOTO = DATA / "people" / "000000522418.jpg"
OBJECT_PHOTO = DATA / "objects" / "flower.jpg"
TEACHERS = Path(__file__).resolve().parents[3] / "shared" / "teachers"


# -- names and options -----------------------------------------------------------------------------------


def test_model_names_and_the_default_alias() -> None:
    assert MODEL_NAMES == ("auto", "people", "general", "ensemble")
    assert parse_model_name("General ") == "general"
    assert parse_model_name("default") == "people"
    assert parse_options().model == "auto"


def test_unknown_model_is_an_option_error_listing_the_names() -> None:
    with pytest.raises(InvalidOptionError) as caught:
        parse_options(model="resnet")
    assert "auto, people, general, ensemble" in str(caught.value) and "'resnet'" in str(caught.value)


def test_presets_name_a_model_and_an_explicit_model_wins() -> None:
    assert parse_options(preset="ecommerce").model == "auto"  # chosen per photo: see the preset's comment
    assert parse_options(preset="id-photo").model == "auto"
    # The deployment's default (MATTEFLOW_DEFAULT_MODEL) fills in where neither request nor preset names one.
    assert parse_options(preset="ecommerce", default_model="ensemble").model == "ensemble"
    assert parse_options(model="people", default_model="ensemble").model == PEOPLE
    assert parse_options(preset="ecommerce", model="people").model == PEOPLE
    assert parse_options(preset="ecommerce", model="general").model == GENERAL
    assert parse_options(parse_options(preset="ecommerce", model="general").to_dict()).model == GENERAL  # queue


# -- the model set ------------------------------------------------------------------------------------


def test_model_set_loads_each_model_once_on_first_use() -> None:
    calls: list[str] = []
    real = load_model("unet-random", "cpu")

    def loader(name: str):
        def load():
            calls.append(name)
            return real

        return load

    models = ModelSet({PEOPLE: loader(PEOPLE), GENERAL: loader(GENERAL)})
    assert calls == [] and models.loaded() == {}
    threads = [threading.Thread(target=models.get, args=(PEOPLE,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [PEOPLE]
    models.get(GENERAL)
    models.get(GENERAL)
    assert calls == [PEOPLE, GENERAL]
    with pytest.raises(KeyError):
        models.get("auto")


def test_the_same_spec_for_both_names_is_one_network_loaded_once() -> None:
    models = ModelSet.from_specs("unet-random", "unet-random", "cpu")
    assert models.is_single
    assert models.get(GENERAL) is models.get(PEOPLE)
    assert not ModelSet.from_specs("unet-random", "general", "cpu").is_single


def test_a_single_model_engine_serves_every_name_without_choosing(random_engine: MatteEngine, portrait_jpeg) -> None:
    assert random_engine.models.is_single
    result = random_engine.process_bytes(portrait_jpeg, parse_options(model="auto"))
    assert result.model == PEOPLE and 0.0 <= result.confidence <= 1.0


# -- the shipped models ----------------------------------------------------------------------------------


def test_general_model_is_shipped_in_our_interface_with_a_licence() -> None:
    files = shipped_model_files("general-u2netp")
    assert files.onnx is not None and files.sidecar["resize"] == "square" and files.sidecar["input_size"] == 320
    assert "Apache License" in (files.onnx.parent / "general-u2netp.LICENSE").read_text()
    model = load_model("general", "cpu", threads=1)
    assert (model.resize, model.input_size, model.device) == ("square", 320, "cpu")
    rng = np.random.default_rng(0)
    batch = rng.random((2, 3, 320, 320), dtype=np.float32)
    alpha = model.predict(batch)
    assert alpha.shape == (2, 320, 320)
    # Min-max normalised per image inside the graph: each matte spans [0, 1] on its own.
    assert np.allclose(alpha.reshape(2, -1).min(axis=1), 0.0, atol=1e-5)
    assert np.allclose(alpha.reshape(2, -1).max(axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif(not (TEACHERS / "u2netp.onnx").is_file(), reason="the teacher file is not on this machine")
def test_export_general_rebuilds_the_shipped_file_byte_for_byte(tmp_path: Path) -> None:
    from matteflow.training.export_general import export_general

    built = export_general(TEACHERS, tmp_path)
    shipped = shipped_model_files("general-u2netp")
    assert built.read_bytes() == shipped.onnx.read_bytes()
    assert built.with_suffix(".safetensors").read_bytes() == shipped.weights.read_bytes()  # the GPU's copy too


def test_auto_combines_a_person_photo_the_people_model_is_unsure_of(shipped_engine: MatteEngine) -> None:
    result = shipped_engine.process_bytes(PERSON_PHOTO.read_bytes(), parse_options(mask=True))
    assert result.model == ENSEMBLE  # never handed to the general model alone: both networks, combined
    people = shipped_engine.process_bytes(PERSON_PHOTO.read_bytes(), parse_options(model="people", mask=True))
    truth = np.asarray(Image.open(DATA / "people_masks" / PERSON_PHOTO.with_suffix(".png").name)) >= 128

    def iou(mask: bytes) -> float:
        alpha = np.asarray(Image.open(io.BytesIO(mask))) >= 128
        return np.count_nonzero(alpha & truth) / np.count_nonzero(alpha | truth)

    assert iou(result.mask) > iou(people.mask) + 0.05  # measured 0.90 vs 0.77


def test_auto_sends_an_object_photo_to_the_general_model_which_cuts_it_out(shipped_engine: MatteEngine) -> None:
    result = shipped_engine.process_bytes(OBJECT_PHOTO.read_bytes(), parse_options(mask=True))
    assert result.model == GENERAL
    alpha = np.asarray(Image.open(io.BytesIO(result.mask))) >= 128
    truth = np.asarray(Image.open(OBJECT_PHOTO.with_name("flower_mask.png"))) >= 128
    iou = np.count_nonzero(alpha & truth) / np.count_nonzero(alpha | truth)
    assert iou > 0.85, iou
    # The people model on the same photo: not the model to use for it.
    people = shipped_engine.process_bytes(OBJECT_PHOTO.read_bytes(), parse_options(model="people", mask=True))
    people_alpha = np.asarray(Image.open(io.BytesIO(people.mask))) >= 128
    assert np.count_nonzero(people_alpha & truth) / max(1, np.count_nonzero(people_alpha | truth)) < iou


def test_a_mixed_batch_runs_each_model_once_on_its_own_images(shipped_engine: MatteEngine) -> None:
    person, thing = PERSON_PHOTO.read_bytes(), OBJECT_PHOTO.read_bytes()
    calls: dict[str, list[int]] = {PEOPLE: [], GENERAL: []}
    for name in calls:
        model = shipped_engine.models.get(name)
        original = model.predict

        def counting(batch, name=name, original=original):
            calls[name].append(batch.shape[0])
            return original(batch)

        model.predict = counting
    try:
        results = shipped_engine.process_many([person, thing, b"not an image", person], parse_options())
    finally:
        for name in calls:
            del shipped_engine.models.get(name).predict
    assert [getattr(r, "model", None) for r in results] == [ENSEMBLE, GENERAL, None, ENSEMBLE]
    assert isinstance(results[2], Exception)
    # people ran once over the three photos (one input shape); general once, over those it was not sure of
    # (all three here: the people model is sure of none of them).
    assert calls[PEOPLE] == [3]
    assert calls[GENERAL] == [3]


# -- the auto rule ----------------------------------------------------------------------------------------


def test_people_model_is_sure_of_a_decisive_subject_only() -> None:
    crisp = np.zeros((64, 64), np.float32)
    crisp[16:48, 20:44] = 1.0
    fog = np.full((64, 64), 0.4, np.float32)
    speck = np.zeros((64, 64), np.float32)
    speck[0, 0] = 1.0
    assert people_model_is_sure(crisp) and choose_model(crisp, fog) == PEOPLE
    assert not people_model_is_sure(fog)
    # Unsure people model: the general model's matte is used only if the general model is sure of it.
    assert choose_model(fog, crisp) == GENERAL
    assert choose_model(fog, fog) == PEOPLE
    assert choose_model(fog) == PEOPLE
    assert not people_model_is_sure(np.zeros((64, 64), np.float32))
    assert not people_model_is_sure(speck)
    assert decisiveness(crisp) == 1.0 and decisiveness(speck) == 0.0
    with pytest.raises(ValueError):
        people_model_is_sure(np.zeros((2, 64, 64), np.float32))


def test_a_half_sure_people_matte_asks_the_general_model_but_is_never_replaced_by_it() -> None:
    # 55 % of the marked pixels decided: between PEOPLE_KEPT_FROM (0.5) and PEOPLE_SURE_FROM (0.9).
    half_sure = np.zeros((64, 64), np.float32)
    half_sure.reshape(-1)[:1100] = 1.0
    half_sure.reshape(-1)[1100:2000] = 0.5
    other_subject = np.zeros((64, 64), np.float32)
    other_subject[40:64, 40:64] = 1.0
    assert PEOPLE_KEPT_FROM <= decisiveness(half_sure) < PEOPLE_SURE_FROM
    assert not people_model_is_sure(half_sure)  # the general model runs (its matte may be combined in)
    assert choose_model(half_sure, other_subject) == PEOPLE  # but a different subject does not replace it


# -- review fixes (issue 13) -------------------------------------------------------------------------------


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="a GPU machine rightly imports torch for auto")
def test_default_model_on_auto_device_does_not_import_torch_on_a_cpu_machine() -> None:
    code = (
        "import sys; from matteflow.core.model import load_model; m = load_model('default', 'auto'); "
        "assert m.device == 'cpu'; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_unet_random_has_the_shipped_architecture() -> None:
    from matteflow.core import unet

    arch = shipped_model_files().sidecar["arch"]
    model = load_model("unet-random", "cpu")
    shipped = unet.build_unet(arch)
    built = model._module  # the torch module inside the adapter
    assert unet.count_parameters(built) == unet.count_parameters(shipped)


def test_unknown_spec_names_the_model_names() -> None:
    with pytest.raises(ModelError, match="people, general"):
        load_model("resnet")


def test_the_device_engine_runs_named_models_like_the_base_engine(shipped_engine: MatteEngine) -> None:
    pytest.importorskip("torch")
    from matteflow.core.device_engine import DeviceMatteEngine

    device_engine = DeviceMatteEngine(shipped_engine.models, max_pixels=50_000_000, device="cpu", decode_threads=2)
    try:
        datas = [PERSON_PHOTO.read_bytes(), OBJECT_PHOTO.read_bytes(), b"not an image"]
        options = parse_options(mask=True)
        have = device_engine.process_many(datas, options)
        want = shipped_engine.process_many(datas, options)
    finally:
        device_engine.close()
    assert [getattr(r, "model", None) for r in have] == [ENSEMBLE, GENERAL, None]
    for got, expected in zip(have[:2], want[:2], strict=True):
        assert got.confidence == pytest.approx(expected.confidence)
        a = np.asarray(Image.open(io.BytesIO(got.mask)), np.int16)
        b = np.asarray(Image.open(io.BytesIO(expected.mask)), np.int16)
        assert np.mean(np.abs(a - b)) < 1.0  # same matte up to float rounding of the torch path
