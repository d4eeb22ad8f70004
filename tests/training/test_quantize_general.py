"""The int8 general model: the recipe that builds it, and that it cuts out what the fp32 model cuts out."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from matteflow.core.confidence import decisiveness
from matteflow.core.engine import make_network_input
from matteflow.core.model import load_model, shipped_model_files
from matteflow.training.quantize_general import KEEP_FLOAT, output_head, quantize_general

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTOS = [DATA / "objects" / "flower.jpg", *sorted((DATA / "people").glob("*.jpg"))]


def _matte(model, path: Path) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    tensor, (h, w) = make_network_input(rgb, model.input_size, model.resize)
    return model.predict(tensor[None])[0, :h, :w]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    first, second = a >= 0.5, b >= 0.5
    return np.count_nonzero(first & second) / max(1, np.count_nonzero(first | second))


def test_general_runs_int8_on_the_cpu_and_fp32_can_be_pinned() -> None:
    assert load_model("general", "cpu", threads=1).name == "general-u2netp-int8"
    assert load_model("general-int8", "cpu", threads=1).name == "general-u2netp-int8"
    assert load_model("general-fp32", "cpu", threads=1).name == "general-u2netp"
    sidecar = shipped_model_files("general-u2netp-int8").sidecar
    assert (sidecar["precision"], sidecar["input_size"], sidecar["resize"]) == ("int8", 320, "square")


def test_shipped_int8_general_cuts_out_what_the_fp32_one_does() -> None:
    fp32 = load_model("general-fp32", "cpu", threads=1)
    int8 = load_model("general-int8", "cpu", threads=1)
    decisive = 0
    for photo in PHOTOS:
        reference, quantized = _matte(fp32, photo), _matte(int8, photo)
        assert float(np.abs(reference - quantized).mean()) < 0.025, photo.name
        # Where the fp32 model is sure of a subject (the mattes auto and ensemble take from it), the cut is the
        # same; on a crowd it is unsure of, values near 0.5 may fall either side of the cut.
        if decisiveness(reference) >= 0.7:
            decisive += 1
            assert _iou(reference, quantized) >= 0.97, photo.name
    assert decisive >= 2


def test_quantize_general_keeps_the_head_in_float_and_the_weights_in_7_bits(tmp_path: Path) -> None:
    # A stand-in for the training data: the committed photos in the folder layout calibration reads.
    images = tmp_path / "data" / "people" / "committed" / "images"
    images.mkdir(parents=True)
    for photo in PHOTOS:
        shutil.copy(photo, images / photo.name)
    shipped = shipped_model_files("general-u2netp").onnx
    assert shipped is not None
    built = quantize_general(shipped, tmp_path / "data", tmp_path / "out", photos=4)
    assert built.name == "general-u2netp-int8.onnx" and built.with_suffix(".json").is_file()

    graph = onnx.load(str(built)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convs = {node.name: node for node in graph.node if node.op_type == "Conv"}
    float_convs = {name for name, node in convs.items() if node.input[1] not in dequantized}
    head = set(output_head(onnx.load(str(shipped))))
    assert set(KEEP_FLOAT) <= float_convs
    assert float_convs == {name for name in convs if name in head} | set(KEEP_FLOAT)
    assert len(convs) - len(float_convs) > 100  # the body is quantized
    # 7-bit weights (reduce_range): on x86 CPUs without VNNI, onnxruntime's u8 x s8 kernels add pairs of
    # products in int16 and saturate with full-range weights (the matte of a crowd photo broke: mean |alpha
    # difference| 0.15 against fp32).
    weights = [
        onnx.numpy_helper.to_array(init) for init in graph.initializer if init.data_type == onnx.TensorProto.INT8
    ]
    assert len(weights) > 100
    assert all(w.min() >= -64 and w.max() <= 64 for w in weights)  # 2 x 255 x 64 < 2^15

    model = load_model(f"onnx:{built}", "cpu", threads=1)
    reference = load_model("general-fp32", "cpu", threads=1)
    assert _iou(_matte(reference, PHOTOS[0]), _matte(model, PHOTOS[0])) >= 0.95


def test_too_few_calibration_photos_is_a_clear_error(tmp_path: Path) -> None:
    shipped = shipped_model_files("general-u2netp").onnx
    assert shipped is not None
    with pytest.raises(FileNotFoundError, match="calibration photos"):
        quantize_general(shipped, tmp_path, tmp_path / "out", photos=4)
