"""Build the shipped general model (``models/general-u2netp.onnx``) from the U^2-Net-p teacher file.

U^2-Net-p (Qin et al. 2020, xuebinqin/U-2-Net, Apache-2.0) is a salient-object network. Its ONNX file takes
``input.1`` 1 x 3 x 320 x 320 (RGB / 255, then ImageNet mean/std) and returns seven side outputs. This script
rewrites the graph into MatteFlow's model interface, so the engine runs it like the people model:

- input ``image`` N x 3 x H x W float32 RGB in [0, 1] (batch, height and width dynamic; the network's own
  resizes follow the input's shape), ImageNet normalisation inside the graph;
- only the first (fused) output, min-max normalised per image inside the graph as its authors (and rembg) do:
  the sigmoid output of this small network rarely reaches 0 or 1, and stretching it to [0, 1] makes the
  subject solid and the background clear (measured in models/README.md);
- output ``alpha`` N x 1 x H x W in [0, 1].

Run ``matteflow train --stage export-general`` (or ``python -m matteflow.training.export_general``); the
result is byte-for-byte reproducible from the teacher file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

TEACHER_FILE = "u2netp.onnx"
MODEL_STEM = "general-u2netp"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# u2netp was trained on 320 x 320 squares: the whole photo squeezed into the square scored better on
# objects_dev than the long side at 320 padded to a multiple of 32 (models/README.md, "General model").
SIDECAR: dict[str, Any] = {
    "name": "general",
    "arch": "u2netp",
    "input_size": 320,
    "resize": "square",
    "version": "1",
    "origin": "xuebinqin/U-2-Net (u2netp), Apache-2.0; see general-u2netp.LICENSE",
}
_MIN_RANGE = 1e-6  # a flat output (all one value) stays finite instead of dividing by zero


def convert_u2netp(teacher: Path, min_max: bool = True) -> Any:
    """The teacher's ONNX graph rewritten to MatteFlow's interface (an ``onnx.ModelProto``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(teacher))
    graph = model.graph
    if len(graph.input) != 1 or not graph.output:
        raise ValueError(f"{teacher} is not the u2netp graph (one input, seven outputs expected)")
    old_input = graph.input[0].name
    first_output = graph.output[0].name

    # Normalisation in front: image -> (image - mean) / std -> the network's old input.
    mean = numpy_helper.from_array(np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1), "mf_imagenet_mean")
    std = numpy_helper.from_array(np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1), "mf_imagenet_std")
    graph.initializer.extend([mean, std])
    front = [
        helper.make_node("Sub", ["image", "mf_imagenet_mean"], ["mf_centred"], name="mf_sub_mean"),
        helper.make_node("Div", ["mf_centred", "mf_imagenet_std"], [old_input], name="mf_div_std"),
    ]
    if min_max:
        floor = numpy_helper.from_array(np.array(_MIN_RANGE, np.float32), "mf_min_range")
        graph.initializer.append(floor)
        back = [
            helper.make_node("ReduceMin", [first_output], ["mf_lo"], axes=[1, 2, 3], keepdims=1, name="mf_min"),
            helper.make_node("ReduceMax", [first_output], ["mf_hi"], axes=[1, 2, 3], keepdims=1, name="mf_max"),
            helper.make_node("Sub", [first_output, "mf_lo"], ["mf_shifted"], name="mf_shift"),
            helper.make_node("Sub", ["mf_hi", "mf_lo"], ["mf_range"], name="mf_range"),
            helper.make_node("Max", ["mf_range", "mf_min_range"], ["mf_safe_range"], name="mf_floor"),
            helper.make_node("Div", ["mf_shifted", "mf_safe_range"], ["alpha"], name="mf_stretch"),
        ]
    else:
        back = [helper.make_node("Identity", [first_output], ["alpha"], name="mf_alpha")]

    nodes = [*front, *graph.node, *back]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("alpha", TensorProto.FLOAT, ["batch", 1, "height", "width"]))
    # The exporter recorded 320 x 320 shapes for intermediate values; dropping them keeps the graph dynamic.
    del graph.value_info[:]
    graph.name = MODEL_STEM
    del model.metadata_props[:]
    model.doc_string = "U^2-Net-p (xuebinqin/U-2-Net, Apache-2.0) in MatteFlow's model interface"
    onnx.checker.check_model(model)
    # The unused side outputs are dead now: drop them so the file is smaller and nothing computes them.
    from onnx import utils

    return utils.Extractor(model).extract_model(["image"], ["alpha"])


def export_general(teachers_dir: Path, out_dir: Path, min_max: bool = True) -> Path:
    """Write ``<out_dir>/general-u2netp.onnx``, its sidecar JSON and the same weights for torch
    (``general-u2netp.safetensors``); returns the ONNX path."""
    import onnx

    teacher = Path(teachers_dir) / TEACHER_FILE
    if not teacher.is_file():
        raise FileNotFoundError(f"teacher model {TEACHER_FILE} not found in {teachers_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = convert_u2netp(teacher, min_max=min_max)
    target = out_dir / f"{MODEL_STEM}.onnx"
    onnx.save(model, str(target))
    sidecar = {
        **SIDECAR,
        "min_max": min_max,
        "teacher_sha256": hashlib.sha256(teacher.read_bytes()).hexdigest(),
    }
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    export_general_torch(target)
    return target


def torch_weights_from_onnx(onnx_path: Path) -> dict[str, Any]:
    """The state dict of :class:`matteflow.core.u2netp.U2NetP` from the general model's ONNX file: its Conv
    nodes (batch norms folded in by the exporter) in graph order, which is the network's execution order, paired
    with the torch module's convolutions in theirs; every pair's shape, padding and dilation must agree."""
    import onnx
    import torch
    from onnx import numpy_helper

    from matteflow.core.u2netp import U2NetP, conv_order

    graph = onnx.load(str(onnx_path)).graph
    initializers = {init.name: init for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    network = U2NetP()
    modules = dict(network.named_modules())
    order = conv_order(network)
    if len(convs) != len(order):
        raise ValueError(f"{onnx_path} has {len(convs)} convolutions; U2NetP has {len(order)}")
    state: dict[str, Any] = {}
    for prefix, node in zip(order, convs, strict=True):
        conv = modules[prefix]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight = numpy_helper.to_array(initializers[node.input[1]])
        bias = numpy_helper.to_array(initializers[node.input[2]])
        expected = (tuple(conv.weight.shape), list(conv.dilation), list(conv.padding) * 2)
        found = (weight.shape, list(attrs.get("dilations", [1, 1])), list(attrs.get("pads", [0, 0, 0, 0])))
        if expected != found:
            raise ValueError(f"{prefix}: ONNX node {node.name or node.output[0]} is {found}, expected {expected}")
        state[f"{prefix}.weight"] = torch.from_numpy(weight.copy())
        state[f"{prefix}.bias"] = torch.from_numpy(bias.copy())
    network.load_state_dict(state, strict=True)  # every parameter, no more
    return state


def export_general_torch(onnx_path: Path) -> Path:
    """Write ``general-u2netp.safetensors`` beside the ONNX file: the same network for torch on a GPU."""
    from safetensors.torch import save_file

    target = onnx_path.with_suffix(".safetensors")
    save_file(torch_weights_from_onnx(onnx_path), str(target), metadata={"source": onnx_path.name})
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export_general", description=__doc__.splitlines()[0])
    parser.add_argument("--teachers-dir", default="../shared/teachers", help="folder with u2netp.onnx")
    parser.add_argument("--export-dir", default="models", help="where to write general-u2netp.onnx (+ .json)")
    parser.add_argument("--no-min-max", action="store_true", help="keep the raw sigmoid output (comparison only)")
    args = parser.parse_args(argv)
    try:
        path = export_general(Path(args.teachers_dir), Path(args.export_dir), min_max=not args.no_min_max)
    except (FileNotFoundError, ValueError) as exc:
        print(f"export_general: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
