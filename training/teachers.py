"""The two teacher models used to label people photos that have no mask (see /work/shared/teachers/README.md).

Both return a person probability map of the input's own size, float32 in [0, 1]:

- :class:`U2NetpTeacher`: U^2-Net-p (salient object) through onnxruntime, 320 x 320, ImageNet-normalised input,
  first of its seven outputs, min-max normalised as its authors do.
- :class:`SelfieTeacher`: MediaPipe selfie segmentation (general 256 x 256 model) through ai-edge-litert.

Neither is a dependency of the runtime: both are imported lazily and only training/eval use them.
:func:`ensemble_probability` averages them (each with a horizontal-flip pass), which scores better than either.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

U2NETP_FILE = "u2netp.onnx"
SELFIE_FILE = "selfie_segmentation.tflite"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class U2NetpTeacher:
    """U^2-Net-p via onnxruntime. ``predict(rgb)`` -> H x W float32 probability."""

    name = "u2netp"

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        x = cv2.resize(rgb, (320, 320), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        # The authors normalise by the image's max before the ImageNet mean/std; for 8-bit photos that is ~1.
        x = (x / max(float(x.max()), 1e-6) - IMAGENET_MEAN) / IMAGENET_STD
        out = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[0][0, 0]
        lo, hi = float(out.min()), float(out.max())
        prob = (out - lo) / max(hi - lo, 1e-6)
        return cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


class SelfieTeacher:
    """MediaPipe selfie segmentation (256 x 256, general) via ai-edge-litert."""

    name = "selfie"

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        _, self.in_h, self.in_w, _ = self.input["shape"]

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        x = cv2.resize(rgb, (int(self.in_w), int(self.in_h)), interpolation=cv2.INTER_AREA)
        x = (x.astype(np.float32) / 255.0)[None]
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        prob = np.clip(self.interpreter.get_tensor(self.output["index"])[0, :, :, 0], 0.0, 1.0)
        return cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


class StudentTeacher:
    """MatteFlow's own shipped people model as a third voice (self-training, Xie et al. 2020 "noisy student").

    Its errors are only partly those of the two teachers it learnt from, so averaging it in makes better
    labels than the teachers alone (people_dev mean IoU: teachers 0.899, teachers + student 0.903). It runs
    at a larger input than it ships with by default (``input_size``): the photos here are small, and a
    long side of 448 scored better than 320 on every split we have.
    """

    name = "student"
    flip_built_in = True  # the shipped graph already averages the photo with its mirror image

    def __init__(self, path: str | Path | None = None, threads: int = 0, input_size: int = 448) -> None:
        from matteflow.core.model import OnnxMattingModel, shipped_model_files

        onnx = Path(path) if path else shipped_model_files().onnx
        if onnx is None or not onnx.is_file():
            raise FileNotFoundError(f"student model not found: {onnx}")
        self.model = OnnxMattingModel(onnx, input_size, threads=threads, name="student")

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        from matteflow.core.engine import make_network_input

        h, w = rgb.shape[:2]
        tensor, (vh, vw) = make_network_input(rgb, self.model.input_size)
        prob = self.model.predict(tensor[None])[0][:vh, :vw]
        return cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


Teacher = U2NetpTeacher | SelfieTeacher | StudentTeacher


def predict_with_flip(teacher: Teacher, rgb: np.ndarray) -> np.ndarray:
    """Mean of the prediction on the image and on its mirror image (cheap test-time augmentation)."""
    if getattr(teacher, "flip_built_in", False):
        return teacher.predict(rgb)
    a = teacher.predict(rgb)
    b = teacher.predict(np.ascontiguousarray(rgb[:, ::-1]))[:, ::-1]
    return (a + b) * 0.5


TEACHER_FILES = {"u2netp": U2NETP_FILE, "selfie": SELFIE_FILE}
KNOWN_TEACHERS = (*TEACHER_FILES, StudentTeacher.name)


def load_teachers(
    directory: str | Path, threads: int = 0, names: tuple[str, ...] = ("u2netp", "selfie")
) -> list[Teacher]:
    """The named teachers from ``directory`` (``student`` is the shipped model, not a file there);
    FileNotFoundError names a missing file, ValueError a bad name."""
    directory = Path(directory)
    teachers: list[Teacher] = []
    for name in names:
        if name not in KNOWN_TEACHERS:
            raise ValueError(f"unknown teacher {name!r}; known: {', '.join(KNOWN_TEACHERS)}")
        if name == StudentTeacher.name:
            teachers.append(StudentTeacher(threads=threads))
            continue
        path = directory / TEACHER_FILES[name]
        if not path.is_file():
            raise FileNotFoundError(f"teacher model {path.name} not found in {directory}")
        teachers.append(U2NetpTeacher(path, threads) if name == "u2netp" else SelfieTeacher(path, threads or 1))
    return teachers


def ensemble_probability(probs: list[np.ndarray], weights: list[float] | None = None) -> np.ndarray:
    """Weighted mean of teacher probability maps (same shape), float32 in [0, 1]."""
    if not probs:
        raise ValueError("no teacher predictions to ensemble")
    weights = weights or [1.0] * len(probs)
    total = sum(weights)
    out = sum(w * p for w, p in zip(weights, probs, strict=True)) / total
    return np.clip(out, 0.0, 1.0).astype(np.float32)
