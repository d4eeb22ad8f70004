"""Model registry: matting networks built by name, loaded once and reused.

Specs understood by :func:`load_model`:

- ``default`` (also ``people``): the people model shipped in ``matteflow/models`` (ONNX through onnxruntime
  on the CPU; the safetensors weights through torch in fp16 on a CUDA device).
- ``general``: the shipped salient-object model (U^2-Net-p) for products and objects: int8
  (``general-u2netp-int8.onnx``) on the CPU; on a CUDA device the same network in torch
  (``general-u2netp.safetensors``, :mod:`matteflow.core.u2netp`), else the fp32 ONNX file where onnxruntime
  has the CUDA provider; ``general-fp32`` and ``general-int8`` pin a precision (int8: always the ONNX file).
- ``onnx:<path>``: any ONNX file with input ``image`` (N x 3 x H x W float32 RGB in [0, 1]) and output
  ``alpha`` (N x 1 x H x W in [0, 1]); a ``<path>.json`` sidecar may give ``input_size`` and ``resize``.
- ``torch:<path>``: a safetensors file of an architecture from :mod:`matteflow.core.unet`, with sidecar.
- ``unet-random``: an untrained network of the shipped people architecture (tests of plumbing).

Which spec serves which *name* a request can ask for (``people``, ``general``, ``auto``) is
:mod:`matteflow.core.registry`'s business. Only the torch backend imports torch, and only when it is asked
for (or, with device ``auto``, when the machine has an NVIDIA GPU to offer).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "matteflow-unet"
GENERAL_MODEL_NAME = "general-u2netp"
GENERAL_INT8_NAME = "general-u2netp-int8"
# Specs that pin the general model's precision (``general`` itself picks by device).
GENERAL_PRECISIONS = {
    "general-fp32": "fp32",
    GENERAL_MODEL_NAME: "fp32",
    "general-int8": "int8",
    GENERAL_INT8_NAME: "int8",
}
DEFAULT_INPUT_SIZE = 320
STRIDE = 32
# How the engine fits a photo to the network: the long side at input_size with the short side padded to a
# multiple of STRIDE ("long-side", the people model), or squeezed into an input_size square ("square",
# networks trained on squares such as U^2-Net-p).
RESIZE_MODES = ("long-side", "square")


class MattingModel(Protocol):
    """What the engine needs of a network."""

    device: str  # "cpu", "cuda:0", ...
    input_size: int  # long side, in pixels, the network runs at (a multiple of 32)
    resize: str  # one of RESIZE_MODES
    name: str

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``batch``: N x 3 x H x W float32 RGB in [0, 1], H and W multiples of 32 -> N x H x W float32 alpha."""
        ...


@dataclass(frozen=True)
class ModelFiles:
    onnx: Path | None
    weights: Path | None
    sidecar: dict


def _read_sidecar(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"model sidecar {path} is unreadable: {exc}") from exc


def shipped_model_files(stem: str = DEFAULT_MODEL_NAME) -> ModelFiles:
    """The files of a model shipped inside the package (``matteflow/models``), by file stem."""
    folder = Path(str(resources.files("matteflow.models")))
    onnx = folder / f"{stem}.onnx"
    weights = folder / f"{stem}.safetensors"
    return ModelFiles(
        onnx=onnx if onnx.is_file() else None,
        weights=weights if weights.is_file() else None,
        sidecar=_read_sidecar(folder / f"{stem}.json"),
    )


def _resize_mode(sidecar: dict, source: object) -> str:
    mode = str(sidecar.get("resize", "long-side"))
    if mode not in RESIZE_MODES:
        raise ModelError(f"sidecar of {source} has resize {mode!r}; expected one of {', '.join(RESIZE_MODES)}")
    return mode


def _check_batch(batch: np.ndarray) -> None:
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a N x 3 x H x W batch, got shape {batch.shape}")
    if batch.shape[2] % STRIDE or batch.shape[3] % STRIDE:
        raise ValueError(
            f"height and width must be multiples of {STRIDE}, got {batch.shape[2]}x{batch.shape[3]}; "
            "pad the image (the engine does this)"
        )


class OnnxMattingModel:
    """An ONNX network run by onnxruntime; one session shared by all threads.

    On the CPU by default; with ``device`` ``cuda[:n]`` through onnxruntime's CUDA provider when the installed
    onnxruntime has one (a GPU worker's image), else the CPU (said in the log).
    """

    def __init__(
        self,
        path: Path,
        input_size: int,
        threads: int = 0,
        name: str | None = None,
        resize: str = "long-side",
        device: str = "cpu",
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # 0 lets onnxruntime use every core; callers running several images at once ask for 1 each.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers: list[object] = ["CPUExecutionProvider"]
        self.device = "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" in ort.get_available_providers():
                index = int(device.partition(":")[2] or 0)
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
                self.device = f"cuda:{index}"
            else:
                log.warning("onnxruntime has no CUDA provider here: %s runs on the CPU", path.name)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"cannot load ONNX model {path}: {exc}") from exc
        inputs = {i.name for i in self._session.get_inputs()}
        if "image" not in inputs:
            raise ModelError(f"ONNX model {path} has inputs {sorted(inputs)}; expected one named 'image'")
        self.input_size = input_size
        self.resize = resize
        self.name = name or path.stem

    def predict(self, batch: np.ndarray) -> np.ndarray:
        _check_batch(batch)
        (alpha,) = self._session.run(["alpha"], {"image": np.ascontiguousarray(batch, dtype=np.float32)})
        return alpha[:, 0]


class TorchMattingModel:
    """A torch network, in fp16 on CUDA (the GPU workers' path; ``half=False`` keeps fp32) or fp32 on the CPU."""

    def __init__(
        self,
        module: object,
        device: str,
        input_size: int,
        name: str,
        resize: str = "long-side",
        half: bool = True,
    ) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._half = half and self._device.type == "cuda"
        module = module.to(self._device).eval()  # type: ignore[attr-defined]
        self._module = module.half() if self._half else module
        self.device = str(self._device)
        self.input_size = input_size
        self.resize = resize
        self.name = name
        self._lock = threading.Lock()  # CPU torch already uses every core; one call at a time

    def predict(self, batch: np.ndarray) -> np.ndarray:
        _check_batch(batch)
        torch = self._torch
        with self._lock, torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._device)
            if self._half:
                tensor = tensor.half()
            alpha = self._module(tensor)  # type: ignore[operator]
            return alpha[:, 0].float().cpu().numpy()


def _nvidia_gpu_present() -> bool:
    """Whether the kernel shows an NVIDIA GPU, without importing torch (which takes seconds and hundreds of MB):
    a CPU machine answers ``auto`` from this alone."""
    return Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``. ``cuda`` without a GPU is an error."""
    if device == "cpu":
        return "cpu"
    if device == "auto" and not _nvidia_gpu_present():
        return "cpu"
    try:
        import torch
    except ImportError:
        if device == "auto":
            return "cpu"
        raise ModelError(f"device {device!r} was asked for but torch is not installed") from None
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} was asked for but no CUDA GPU is available")
    return device


def _torch_matting_model(
    load: Callable[[], object], weights: Path, sidecar: dict, device: str, name: str, half: bool = True
) -> TorchMattingModel:
    """A :class:`TorchMattingModel` around the module ``load()`` builds from ``weights``, sized and resized as
    ``sidecar`` says; a file that does not load is a :class:`ModelError`."""
    from safetensors import SafetensorError  # not an OSError: a truncated or foreign file raises this

    try:
        module = load()
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"cannot load torch weights {weights}: {exc}") from exc
    size = int(sidecar.get("input_size", DEFAULT_INPUT_SIZE))
    return TorchMattingModel(module, device, size, name=name, resize=_resize_mode(sidecar, weights), half=half)


def _torch_model(weights: Path, sidecar: dict, device: str) -> TorchMattingModel:
    from . import unet

    def load() -> object:
        arch = sidecar.get("arch", "matteflow-unet-s")
        return unet.for_inference(unet.load_unet_safetensors(weights, arch=arch, device="cpu"), sidecar)

    return _torch_matting_model(load, weights, sidecar, device, name=weights.stem)


def _onnx_on_cuda(device: str) -> bool:
    """Whether an ONNX model for ``device`` runs on a GPU: a CUDA device and an onnxruntime with CUDA."""
    if not device.startswith("cuda"):
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _torch_general(device: str) -> TorchMattingModel | None:
    """The general model in torch on a CUDA ``device`` (:mod:`matteflow.core.u2netp`), or None where torch or
    the shipped weights are missing. fp32 (cuDNN's default TF32 convolutions): fp16's rounding would be
    stretched by the per-image min-max where the network's output range is small. On an H200 TF32 left the
    alpha 0.002 from the ONNX file's on average (single pixels 0.09); strict fp32 made this network the
    worker's bottleneck (26 against 43 images/s: bench/README.md, section 5)."""
    files = shipped_model_files(GENERAL_MODEL_NAME)
    if files.weights is None:
        return None
    try:
        from .u2netp import load_general
    except ImportError:  # no torch: the ONNX file serves
        return None
    weights, sidecar = files.weights, files.sidecar
    return _torch_matting_model(
        lambda: load_general(weights, min_max=bool(sidecar.get("min_max", True))),
        weights,
        sidecar,
        device,
        name=GENERAL_MODEL_NAME,
        half=False,
    )


def _shipped_general(device: str, threads: int, precision: str = "auto") -> MattingModel:
    """The shipped general model. On a CUDA device in torch, on the GPU beside the people model (a GPU
    worker's onnxruntime seldom has the CUDA provider, and the general model on its CPU held an H200 worker to
    15 images/s: bench/README.md, section 5). Elsewhere ONNX: ``precision`` ``auto`` takes the int8 file
    wherever it runs on the CPU (~1.7x faster, the same cut-outs: models/README.md, "General model, int8") and
    the fp32 one where onnxruntime's CUDA provider runs it on a GPU; ``fp32`` / ``int8`` force one file."""
    if device.startswith("cuda") and precision != "int8" and (model := _torch_general(device)) is not None:
        return model
    use_int8 = precision == "int8" or (precision == "auto" and not _onnx_on_cuda(device))
    stem = GENERAL_INT8_NAME if use_int8 else GENERAL_MODEL_NAME
    files = shipped_model_files(stem)
    if files.onnx is None and precision == "auto" and use_int8:
        stem, files = GENERAL_MODEL_NAME, shipped_model_files(GENERAL_MODEL_NAME)
    if files.onnx is None:
        raise ModelError(
            f"the general model ({stem}.onnx) is missing from matteflow/models; reinstall MatteFlow or rebuild it "
            "with `matteflow train --stage export-general --stage quantize-general`"
        )
    size = int(files.sidecar.get("input_size", DEFAULT_INPUT_SIZE))
    resize = _resize_mode(files.sidecar, files.onnx)
    return OnnxMattingModel(files.onnx, size, threads=threads, name=stem, resize=resize, device=device)


def load_model(spec: str = "default", device: str = "auto", threads: int = 0) -> MattingModel:
    """Build a model from its registry spec (see the module docstring). Call once per process.

    ``threads`` bounds onnxruntime's intra-op threads (0 = all cores). Raises :class:`ModelError` when the
    files are missing or unreadable, or a GPU was asked for and none exists.
    """
    wanted = resolve_device(device)
    if spec in ("default", "people", DEFAULT_MODEL_NAME):
        files = shipped_model_files()
        size = int(files.sidecar.get("input_size", DEFAULT_INPUT_SIZE))
        if wanted != "cpu" and files.weights is not None:
            return _torch_model(files.weights, files.sidecar, wanted)
        if files.onnx is None:
            raise ModelError(
                "the shipped model is missing from matteflow/models; reinstall MatteFlow or pass --model onnx:<path>"
            )
        return OnnxMattingModel(files.onnx, size, threads=threads, name=DEFAULT_MODEL_NAME)
    if spec == "general":
        return _shipped_general(wanted, threads)
    if spec in GENERAL_PRECISIONS:
        return _shipped_general(wanted, threads, precision=GENERAL_PRECISIONS[spec])
    if spec.startswith("onnx:"):
        path = Path(spec[len("onnx:") :]).expanduser()
        if not path.is_file():
            raise ModelError(f"ONNX model file not found: {path}")
        sidecar = _read_sidecar(path.with_suffix(".json"))
        size = int(sidecar.get("input_size", DEFAULT_INPUT_SIZE))
        return OnnxMattingModel(path, size, threads=threads, resize=_resize_mode(sidecar, path), device=wanted)
    if spec.startswith("torch:"):
        path = Path(spec[len("torch:") :]).expanduser()
        if not path.is_file():
            raise ModelError(f"torch weights file not found: {path}")
        return _torch_model(path, _read_sidecar(path.with_suffix(".json")), wanted)
    if spec == "unet-random":
        import torch

        from . import unet

        torch.manual_seed(0)
        # The shipped people architecture (from its sidecar), so plumbing tests exercise the real shapes.
        arch = shipped_model_files().sidecar.get("arch", "matteflow-unet-m")
        return TorchMattingModel(unet.build_unet(arch), wanted, DEFAULT_INPUT_SIZE, name="unet-random")
    raise ModelError(
        f"unknown model spec {spec!r}; use default, people, general, general-fp32, general-int8, onnx:<path>, "
        "torch:<path> or unet-random"
    )
