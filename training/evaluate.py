"""Quality evaluation: a model (and optionally the teachers) scored against masks, side by side.

Metrics per image, then mean/median over the set:

- IoU of ``alpha >= 0.5`` against ``mask >= 128`` (binary masks; what the hidden benchmark measures).
- Where the ground truth is soft (a matte, not a 0/255 mask): SAD (sum of absolute differences / 1000),
  MSE, and gradient error (Rhemann et al.: squared difference of Gaussian-derivative gradient magnitudes / 1000).

Runs on onnxruntime (no torch needed) for ``default`` and ``onnx:<path>`` models; ``torch:<path>`` uses
:mod:`matteflow.core.unet`.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from matteflow.core.confidence import estimate_confidence
from matteflow.core.postprocess import upsample_alpha_guided
from matteflow.training.labels import read_gray, read_rgb

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]  # H x W x 3 uint8 RGB -> H x W float32 alpha in [0, 1]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_STEM = "matteflow-unet"


def to_network_input(rgb: np.ndarray, input_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """1 x 3 x h x w float32 in [0, 1] and the (h, w) of the content, exactly as the engine prepares it
    (long side ``input_size``, short side padded to a multiple of 32), so eval scores what production runs."""
    from matteflow.core.engine import make_network_input

    tensor, valid = make_network_input(rgb, input_size)
    return tensor[None], valid


def from_network_output(alpha: np.ndarray, valid: tuple[int, int], height: int, width: int) -> np.ndarray:
    """Network alpha (h x w, padded) cropped to its content and resized to the photo, float32 in [0, 1]."""
    alpha = alpha[: valid[0], : valid[1]].astype(np.float32)
    return np.clip(cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)


def read_sidecar_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


class OnnxPredictor:
    """The exported network through onnxruntime on the CPU."""

    def __init__(self, path: str | Path, input_size: int | None = None, threads: int = 0, guided: bool = True) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX model at {path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        sidecar = read_sidecar_json(path.with_suffix(".json"))
        self.input_size = int(input_size or sidecar.get("input_size", 320))
        self.guided = guided

    def predict_with_confidence(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The full-size alpha and the confidence production reports for it (from the network's own output)."""
        x, valid = to_network_input(rgb, self.input_size)
        alpha = self.session.run(["alpha"], {"image": x})[0][0, 0]
        confidence = estimate_confidence(alpha[: valid[0], : valid[1]])
        if self.guided:
            return upsample_alpha_guided(alpha[: valid[0], : valid[1]], rgb), confidence
        return from_network_output(alpha, valid, rgb.shape[0], rgb.shape[1]), confidence

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.predict_with_confidence(rgb)[0]


class TorchPredictor:
    """A torch MatteUNet (in memory or loaded from safetensors + sidecar)."""

    def __init__(self, model: Any, input_size: int, device: str = "cpu") -> None:
        self.model = model.eval()
        self.input_size = input_size
        self.device = device

    @classmethod
    def from_safetensors(cls, path: str | Path, device: str = "cpu", input_size: int | None = None) -> TorchPredictor:
        from matteflow.core.unet import for_inference, load_unet_safetensors

        path = Path(path)
        sidecar = read_sidecar_json(path.with_suffix(".json"))
        model = for_inference(load_unet_safetensors(path, sidecar.get("arch", "matteflow-unet-s"), device), sidecar)
        return cls(model, int(input_size or sidecar.get("input_size", 320)), device)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import torch

        x, valid = to_network_input(rgb, self.input_size)
        with torch.inference_mode():
            alpha = self.model(torch.from_numpy(x).to(self.device))[0, 0].float().cpu().numpy()
        return from_network_output(alpha, valid, rgb.shape[0], rgb.shape[1])


def load_predictor(spec: str, threads: int = 0, input_size: int | None = None, guided: bool = True) -> Predictor:
    """``default`` (shipped ONNX), ``onnx:<path>`` or ``torch:<path>`` (safetensors) -> predictor.

    ``input_size`` overrides the sidecar's long side; ``guided`` brings ONNX mattes to full size with the
    engine's guided filter (what ``matteflow matte`` writes) instead of a plain bilinear resize.
    """
    if spec == "default":
        return OnnxPredictor(MODELS_DIR / f"{DEFAULT_STEM}.onnx", input_size, threads, guided)
    kind, sep, path = spec.partition(":")
    if sep and kind == "onnx":
        return OnnxPredictor(path, input_size, threads, guided)
    if sep and kind == "torch":
        return TorchPredictor.from_safetensors(path, input_size=input_size)
    raise ValueError(f"unknown model spec {spec!r}: use default, onnx:<path> or torch:<path>")


def teacher_predictors(teachers_dir: str | Path, threads: int = 0) -> dict[str, Predictor]:
    """u2netp, selfie and their mean (each run once per image, as they would be used)."""
    from matteflow.training.teachers import ensemble_probability, load_teachers

    u2, selfie = load_teachers(teachers_dir, threads=threads)
    cache: dict[tuple[int, str], np.ndarray] = {}

    def cached(teacher: Any) -> Callable[[np.ndarray], np.ndarray]:
        # The ensemble reuses each teacher's map of the image just scored instead of running it again.
        def predict(rgb: np.ndarray) -> np.ndarray:
            key = (id(rgb), teacher.name)
            if key not in cache:
                if any(k[0] != id(rgb) for k in cache):
                    cache.clear()
                cache[key] = teacher.predict(rgb)
            return cache[key]

        return predict

    u2_predict, selfie_predict = cached(u2), cached(selfie)
    return {
        "u2netp": u2_predict,
        "selfie": selfie_predict,
        "teacher-ensemble": lambda rgb: ensemble_probability([u2_predict(rgb), selfie_predict(rgb)]),
    }


def iou(alpha: np.ndarray, mask: np.ndarray) -> float:
    """IoU of alpha >= 0.5 vs mask >= 0.5 (both float in [0, 1]); 1.0 when both are empty."""
    a, m = alpha >= 0.5, mask >= 0.5
    union = np.logical_or(a, m).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, m).sum() / union)


def is_soft(mask: np.ndarray) -> bool:
    """True when more than 0.5 % of the pixels are strictly between 0 and 1 (a matte, not a mask)."""
    return float(((mask > 0.02) & (mask < 0.98)).mean()) > 0.005


def _gauss_gradient(a: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    a = cv2.GaussianBlur(a.astype(np.float64), (0, 0), sigma)
    gx = cv2.Sobel(a, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(a, cv2.CV_64F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def soft_metrics(alpha: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """SAD (/1000), MSE and gradient error (/1000) of alpha vs a soft ground truth, both in [0, 1]."""
    diff = alpha.astype(np.float64) - truth
    grad = ((_gauss_gradient(alpha) - _gauss_gradient(truth)) ** 2).sum() / 1000.0
    return {"sad": float(np.abs(diff).sum() / 1000.0), "mse": float((diff**2).mean()), "grad": float(grad)}


def find_pairs(images_dir: str | Path, masks_dir: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs matched by file stem; masks may be named ``<stem>.png`` or ``<stem>_mask.png``."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"not a folder: {d}")
    masks = {p.stem.removesuffix("_mask"): p for p in masks_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs, unmatched = [], []
    for img in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if img.stem in masks:
            pairs.append((img, masks[img.stem]))
        else:
            unmatched.append(img.name)
    if unmatched:
        log.warning("%d images have no mask and are skipped: %s", len(unmatched), ", ".join(unmatched[:5]))
    if not pairs:
        raise FileNotFoundError(f"no image in {images_dir} has a mask in {masks_dir}")
    return pairs


@dataclass
class Scores:
    """Per-image scores of one predictor."""

    iou: list[float] = field(default_factory=list)
    soft: list[dict[str, float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        out = {
            "n": len(self.iou),
            "mean_iou": float(np.mean(self.iou)),
            "median_iou": float(statistics.median(self.iou)),
            "share_below_0_7": float(np.mean(np.asarray(self.iou) < POOR_IOU)),
            "ms_per_image": 1000.0 * float(np.median(self.seconds)),
        }
        if self.confidence:
            out.update(confidence_check(self.iou, self.confidence))
        if self.soft:
            for k in ("sad", "mse", "grad"):
                out[f"mean_{k}"] = float(np.mean([s[k] for s in self.soft]))
            out["n_soft"] = len(self.soft)
        return out


POOR_IOU = 0.7  # a cut-out below this needs a human look
LOW_CONFIDENCE_SHARE = 0.15


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values))


def confidence_check(ious: list[float], confidences: list[float]) -> dict[str, float]:
    """How well the confidence points at poor cut-outs: of the photos with IoU < ``POOR_IOU``, the share that
    falls in the lowest-scoring ``LOW_CONFIDENCE_SHARE`` of confidences; and the mean IoU inside and outside
    that lowest group, plus the rank correlation of confidence with IoU."""
    iou_a, conf = np.asarray(ious), np.asarray(confidences)
    low = conf <= np.quantile(conf, LOW_CONFIDENCE_SHARE)
    poor = iou_a < POOR_IOU
    spearman = float(np.corrcoef(_ranks(iou_a), _ranks(conf))[0, 1]) if len(iou_a) > 2 else float("nan")
    return {
        "poor_in_low_confidence": float(poor[low].sum() / poor.sum()) if poor.any() else float("nan"),
        "mean_iou_low_confidence": float(iou_a[low].mean()),
        "mean_iou_other": float(iou_a[~low].mean()) if (~low).any() else float("nan"),
        "confidence_iou_spearman": spearman,
    }


def evaluate_pairs(
    predictors: dict[str, Predictor], samples: Iterable[tuple[str, np.ndarray, np.ndarray]]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Score every predictor on (name, rgb uint8, truth float [0,1]) samples.

    Returns (summary per predictor, per-image IoU per predictor keyed by image name).
    """
    scores = {name: Scores() for name in predictors}
    per_image: dict[str, dict[str, float]] = {name: {} for name in predictors}
    for image_name, rgb, truth in samples:
        soft = is_soft(truth)
        for name, predict in predictors.items():
            t0 = time.perf_counter()
            with_confidence = getattr(predict, "predict_with_confidence", None)
            if with_confidence is not None:
                alpha, confidence = with_confidence(rgb)
                scores[name].confidence.append(confidence)
            else:
                alpha = predict(rgb)
            scores[name].seconds.append(time.perf_counter() - t0)
            value = iou(alpha, truth)
            scores[name].iou.append(value)
            per_image[name][image_name] = value
            if soft:
                scores[name].soft.append(soft_metrics(alpha, truth))
    return {name: s.summary() for name, s in scores.items()}, per_image


def load_pairs(pairs: list[tuple[Path, Path]]) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    """Decode (image, mask) pairs; a mask of another size than its image is resized (nearest) with a warning."""
    for img_path, mask_path in pairs:
        rgb = read_rgb(img_path)
        truth = read_gray(mask_path)
        if truth.shape != rgb.shape[:2]:
            log.warning(
                "%s: mask size %s differs from image %s; resizing the mask",
                img_path.name,
                truth.shape[::-1],
                rgb.shape[1::-1],
            )
            truth = cv2.resize(truth, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
        yield img_path.name, rgb, truth.astype(np.float32) / 255.0


def format_table(summary: dict[str, dict[str, float]]) -> str:
    """A plain-text table, one row per predictor."""
    cols = ["n", "mean_iou", "median_iou", "share_below_0_7", "mean_sad", "mean_mse", "mean_grad", "ms_per_image"]
    width = max(len("model"), *(len(name) for name in summary)) + 2
    widths = [max(13, len(c) + 2) for c in cols]
    lines = ["model".ljust(width) + "".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    for name, row in summary.items():
        cells = []
        for c, w in zip(cols, widths, strict=True):
            v = row.get(c)
            cells.append(("-" if v is None else (f"{v:d}" if isinstance(v, int) else f"{v:.4f}")).rjust(w))
        lines.append(name.ljust(width) + "".join(cells))
    for name, row in summary.items():
        if "poor_in_low_confidence" in row:
            lines.append(
                f"{name}: confidence puts {row['poor_in_low_confidence']:.0%} of the photos with IoU < {POOR_IOU} in "
                f"its lowest {LOW_CONFIDENCE_SHARE:.0%}; mean IoU there {row['mean_iou_low_confidence']:.3f} vs "
                f"{row['mean_iou_other']:.3f} elsewhere; Spearman(confidence, IoU) {row['confidence_iou_spearman']:.2f}"
            )
    return "\n".join(lines)
