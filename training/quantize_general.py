"""Build the int8 general model (``models/general-u2netp-int8.onnx``) from the fp32 one, for CPU inference.

U^2-Net-p is ~4.8x the people network's CPU time, which is what kept ``auto`` from asking it for a second
opinion more often and made ``ensemble`` cost twice ``auto``. onnxruntime's static quantization (QDQ format,
int8 weights per output channel, uint8 activations, MinMax ranges calibrated on training photos) runs it
~1.7x faster on the CPU with the same cut-outs (models/README.md, "General model, int8"). Two parts stay in
float, both found with onnxruntime's ``qdq_loss_debug`` (per-tensor SNR of the quantized graph against the
float one):

- the **output head**: the 1-channel side convolutions, their resizes, the fusing convolution, the sigmoid
  and the min-max stretch. Their values are logits and an alpha whose every step is visible;
- ``Conv_787``, the first convolution of the last decoder stage (stage 1d), whose input concatenates the
  upsampled stage-2d features with the first encoder stage's: one uint8 scale cannot hold both ranges, and
  quantizing it dropped the tensor's SNR from 41 dB to -5 dB (mean |alpha difference| 0.12 against 0.006
  with it kept in float).

``Add`` stays float too: quantizing it with everything else (Concat, Resize) broke the matte again, for
little speed.

**Saturation**: the weights are quantized to 7 bits (``reduce_range``, values in [-64, 64]). On x86 CPUs
without VNNI (AVX2 only, e.g. the AMD EPYC machines CI may run on), onnxruntime's uint8 x int8 kernels use
``vpmaddubsw``, which adds pairs of products in int16 and saturates when weights use the full 8 bits (2 x 255 x
127 > 32767). The full-range model matched fp32 on a VNNI machine but, on an AVX2-only one, broke the matte of
a crowd photo (mean |alpha difference| 0.15, IoU against fp32 0.56); with 7-bit weights it is 0.013 / 0.99
there (onnxruntime's quantization docs recommend ``reduce_range`` for non-VNNI machines), and the same
integer sums on every x86 CPU.

Calibration reads photos from the training data's ``people/*/images`` and ``backgrounds`` folders only, never a
dev split. The result is deterministic for a given calibration set.

Run ``matteflow train --stage quantize-general`` (or ``python -m matteflow.training.quantize_general``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from matteflow.core.engine import make_network_input

from .export_general import MODEL_STEM, SIDECAR

INT8_STEM = f"{MODEL_STEM}-int8"
# The quantized graph needs per-channel DequantizeLinear (axis attribute): opset 13 or later.
QUANT_OPSET = 17
QUANTIZED_OPS = ("Conv", "Relu", "MaxPool", "Concat", "Resize")
KEEP_FLOAT = ("Conv_787",)  # see the module docstring
# 7-bit weights: see the module docstring ("Saturation").
REDUCE_RANGE = True
CALIBRATION_PHOTOS = 48
CALIBRATION_SEED = 0
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def calibration_photos(data_dir: Path, count: int = CALIBRATION_PHOTOS, seed: int = CALIBRATION_SEED) -> list[Path]:
    """``count`` training photos (people and backgrounds, never a dev split) drawn reproducibly."""
    folders = sorted((data_dir / "people").glob("*/images")) + sorted((data_dir / "backgrounds").glob("*"))
    photos = sorted(
        p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES
    )
    if len(photos) < count:
        raise FileNotFoundError(f"need {count} calibration photos under {data_dir}/people/*/images and backgrounds")
    random.Random(seed).shuffle(photos)
    return photos[:count]


def output_head(model: Any) -> list[str]:
    """Names of the nodes from the first 1-channel convolution on: the side outputs and what fuses them."""
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    tainted: set[str] = set()
    head = []
    for node in model.graph.node:
        side_output = node.op_type == "Conv" and weights.get(node.input[1], (0,))[0] == 1
        if side_output or any(name in tainted for name in node.input):
            head.append(node.name)
            tainted.update(node.output)
    return head


class _Reader(CalibrationDataReader):
    """onnxruntime's calibration data reader: one network input per photo, as the engine makes it."""

    def __init__(self, photos: list[Path], input_size: int, resize: str) -> None:
        self._photos: Iterator[Path] = iter(photos)
        self._input_size = input_size
        self._resize = resize

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self._photos, None)
        if path is None:
            return None
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"calibration photo {path} cannot be read")
        tensor, _ = make_network_input(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._input_size, self._resize)
        return {"image": tensor[None]}


def quantize_general(
    fp32_path: Path, data_dir: Path, out_dir: Path, photos: int = CALIBRATION_PHOTOS, seed: int = CALIBRATION_SEED
) -> Path:
    """Write ``<out_dir>/general-u2netp-int8.onnx`` and its sidecar (calibrated on ``photos`` training photos
    drawn with ``seed``); returns the ONNX path."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if not fp32_path.is_file():
        raise FileNotFoundError(f"no fp32 general model at {fp32_path} (build it with --stage export-general)")
    sidecar = (
        json.loads(fp32_path.with_suffix(".json").read_text()) if fp32_path.with_suffix(".json").is_file() else SIDECAR
    )
    chosen = calibration_photos(data_dir, photos, seed)
    model = version_converter.convert_version(onnx.load(str(fp32_path)), QUANT_OPSET)
    missing = [name for name in KEEP_FLOAT if name not in {node.name for node in model.graph.node}]
    if missing:
        raise ValueError(f"{fp32_path} has no nodes {missing}: not the graph export_general writes")
    reader = _Reader(chosen, int(sidecar["input_size"]), str(sidecar["resize"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{INT8_STEM}.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        upgraded = Path(scratch) / "fp32-opset.onnx"
        onnx.save(model, str(upgraded))
        quantize_static(
            str(upgraded),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=REDUCE_RANGE,
            nodes_to_exclude=[*output_head(model), *KEEP_FLOAT],
        )
    target.with_suffix(".json").write_text(
        json.dumps(
            {
                **sidecar,
                "name": "general",
                "precision": "int8",
                "quantized_from": hashlib.sha256(fp32_path.read_bytes()).hexdigest(),
                "calibration": f"{len(chosen)} training photos (people/*/images, backgrounds), seed {seed}",
            },
            indent=2,
        )
        + "\n"
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantize_general", description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", default=f"models/{MODEL_STEM}.onnx", help="the fp32 general model")
    parser.add_argument("--data-dir", default="../shared/data", help="training data (people/, backgrounds/)")
    parser.add_argument("--export-dir", default="models", help=f"where to write {INT8_STEM}.onnx (+ .json)")
    args = parser.parse_args(argv)
    try:
        path = quantize_general(Path(args.fp32), Path(args.data_dir), Path(args.export_dir))
    except (FileNotFoundError, ValueError) as exc:
        print(f"quantize_general: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
