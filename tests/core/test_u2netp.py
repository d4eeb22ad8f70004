"""The general model in torch (core/u2netp.py) gives the shipped ONNX file's mattes, on the CPU and on CUDA."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matteflow.core.model import GENERAL_MODEL_NAME, OnnxMattingModel, load_model, shipped_model_files

torch = pytest.importorskip("torch")

from matteflow.core.model import TorchMattingModel, _torch_general  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTOS = sorted((DATA / "people").glob("*.jpg")) + sorted((DATA / "objects").glob("*.jpg"))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# On the CPU the two runtimes differ by float rounding alone. On CUDA cuDNN's convolutions run in TF32: an H200
# gave max 0.094, mean 0.0019 on these photos (2026-12-04).
TOLERANCE = {"cpu": (5e-4, 1e-5), "cuda": (0.15, 4e-3)}  # (max, mean) absolute difference of alpha


@pytest.fixture(scope="module")
def onnx_general() -> OnnxMattingModel:
    files = shipped_model_files(GENERAL_MODEL_NAME)
    assert files.onnx is not None and files.weights is not None, "general-u2netp.onnx and .safetensors ship"
    return OnnxMattingModel(files.onnx, 320, name=GENERAL_MODEL_NAME, resize="square")


def photo_batch(size: tuple[int, int] = (320, 320)) -> np.ndarray:
    assert len(PHOTOS) >= 4
    arrays = [np.asarray(Image.open(p).convert("RGB").resize(size), np.float32) / 255.0 for p in PHOTOS]
    return np.stack(arrays).transpose(0, 3, 1, 2).copy()


@pytest.mark.parametrize("device", DEVICES)
def test_the_torch_general_model_gives_the_onnx_files_mattes(onnx_general: OnnxMattingModel, device: str) -> None:
    model = _torch_general(device)
    assert isinstance(model, TorchMattingModel)
    assert (model.input_size, model.resize, model.name) == (320, "square", GENERAL_MODEL_NAME)
    batch = photo_batch()
    expected = onnx_general.predict(batch)
    got = model.predict(batch)
    assert got.shape == expected.shape == (len(PHOTOS), 320, 320)
    difference = np.abs(got - expected)
    worst, mean = TOLERANCE[device]
    assert difference.max() < worst and difference.mean() < mean, (difference.max(), difference.mean())
    # Stretched per image as the ONNX graph does: every matte spans [0, 1].
    assert np.allclose(got.min(axis=(1, 2)), 0, atol=1e-6) and np.allclose(got.max(axis=(1, 2)), 1, atol=1e-6)


def test_any_input_shape_the_engine_may_send_matches_too(onnx_general: OnnxMattingModel) -> None:
    batch = photo_batch((320, 224))  # 224 x 320: the network's own resizes follow the input's shape
    model = _torch_general("cpu")
    assert model is not None
    assert np.abs(model.predict(batch) - onnx_general.predict(batch)).max() < TOLERANCE["cpu"][0]


def test_the_shipped_torch_weights_are_the_onnx_files_weights() -> None:
    pytest.importorskip("onnx")
    from safetensors.torch import load_file

    from matteflow.training.export_general import torch_weights_from_onnx

    files = shipped_model_files(GENERAL_MODEL_NAME)
    shipped = load_file(str(files.weights))
    rebuilt = torch_weights_from_onnx(files.onnx)
    assert shipped.keys() == rebuilt.keys() and len(shipped) == 2 * 119  # 112 folded conv-BN-ReLU, 6 sides, fusion
    assert all(torch.equal(shipped[name], rebuilt[name]) for name in shipped)


def test_general_on_the_cpu_stays_the_int8_onnx_file() -> None:
    model = load_model("general", "cpu")
    assert isinstance(model, OnnxMattingModel) and model.name == "general-u2netp-int8"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_general_on_cuda_is_the_torch_network_in_fp32() -> None:
    model = load_model("general", "cuda")
    assert isinstance(model, TorchMattingModel) and model.device.startswith("cuda")
    assert next(model._module.parameters()).dtype == torch.float32
    assert isinstance(load_model("general-int8", "cuda"), OnnxMattingModel)  # int8 pins the ONNX file


@pytest.mark.parametrize("device", DEVICES)
def test_calls_from_several_threads_at_once_give_each_its_own_mattes(device: str) -> None:
    """A GPU worker's chunk threads call one model at once (its lock lets one in at a time, and the post-
    processing of another chunk runs meanwhile): every call gets the mattes of its own batch."""
    model = _torch_general(device)
    assert model is not None
    batch = photo_batch((320, 224))
    # Each call its own images and batch size, so a mix-up between calls shows.
    batches = [batch[i % len(batch) :][: 1 + i % 3] for i in range(12)]
    alone = [model.predict(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(model.predict, batches))
    for want, got in zip(alone, together, strict=True):
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4
