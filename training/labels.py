"""Training labels: real COCO person masks where they exist, teacher-ensemble alphas everywhere else.

Steps (all reproducible from /work/shared/data and /work/shared/teachers, nothing downloaded):

1. :func:`list_people` finds every people photo (and its COCO mask, if any).
2. :func:`cache_teacher_predictions` runs both teachers (with a mirror pass) once per photo and caches their
   probability maps as 8-bit PNGs (resumable: existing files are skipped).
3. :func:`soft_alpha_from_probability` turns the ensemble probability into a soft alpha that follows the
   photo's edges: a trimap from the probability, then closed-form matting (pymatting) in the unknown band.

The data has unclear licences: caches and packed sets live in git-ignored folders (.train/, .carry/) and must
never be committed. Only the trained weights are shipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from matteflow.core.refine import keep_sure_side, make_trimap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeopleImage:
    """One people photo: its set (folder name), stable id, path, and COCO mask path if it has one."""

    set_name: str
    key: str  # "<set>__<stem>": unique across sets, safe as a file name
    image: Path
    mask: Path | None


def list_people(data_dir: str | Path) -> list[PeopleImage]:
    """Every ``people/<set>/images/*.jpg`` under ``data_dir``, sorted (the order seeds the splits)."""
    root = Path(data_dir) / "people"
    if not root.is_dir():
        raise FileNotFoundError(f"no people/ folder in {data_dir}")
    items = []
    for set_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted((set_dir / "images").glob("*.jpg")):
            mask = set_dir / "masks" / (img.stem + ".png")
            items.append(
                PeopleImage(set_dir.name, f"{set_dir.name}__{img.stem}", img, mask if mask.is_file() else None)
            )
    return items


def list_backgrounds(data_dir: str | Path) -> list[Path]:
    """Every background photo (no people) under ``backgrounds/*/images``, sorted."""
    root = Path(data_dir) / "backgrounds"
    return sorted(root.glob("*/images/*.jpg"))


def read_rgb(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 RGB; ValueError naming the file if OpenCV cannot decode it."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_gray(path: str | Path) -> np.ndarray:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ValueError(f"cannot decode mask {path}")
    return gray


def teacher_cache_path(cache_dir: Path, key: str, teacher: str) -> Path:
    return cache_dir / f"{key}.{teacher}.png"


def cache_teacher_predictions(
    images: list[tuple[str, Path]],
    teachers_dir: str | Path,
    cache_dir: str | Path,
    names: tuple[str, ...] = ("u2netp", "selfie"),
    threads: int = 1,
    flip: bool = True,
) -> int:
    """Run the named teachers on every (key, image path) not yet cached; return how many maps were written."""
    from matteflow.training.teachers import load_teachers, predict_with_flip

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo_all = [(k, p) for k, p in images if any(not teacher_cache_path(cache_dir, k, n).is_file() for n in names)]
    if not todo_all:
        return 0
    # Load only the teachers that still have work (the other's runtime may not even be installed here).
    needed = tuple(n for n in names if any(not teacher_cache_path(cache_dir, k, n).is_file() for k, _ in todo_all))
    teachers = load_teachers(teachers_dir, threads=threads, names=needed)
    written = 0
    for n, (key, image) in enumerate(todo_all):
        rgb = read_rgb(image)
        for teacher in teachers:
            out = teacher_cache_path(cache_dir, key, teacher.name)
            if out.is_file():
                continue
            prob = predict_with_flip(teacher, rgb) if flip else teacher.predict(rgb)
            tmp = out.with_suffix(".tmp.png")
            cv2.imwrite(str(tmp), np.round(prob * 255).astype(np.uint8))
            tmp.replace(out)  # atomic: a cut-off run never leaves a half-written cache file
            written += 1
        if n % 50 == 0:
            log.info("teachers: %d/%d", n, len(todo_all))
    return written


def load_teacher_probabilities(cache_dir: str | Path, key: str, teachers: tuple[str, ...]) -> list[np.ndarray]:
    """The cached probability maps of ``key``, float32 in [0, 1]."""
    return [read_gray(teacher_cache_path(Path(cache_dir), key, t)).astype(np.float32) / 255.0 for t in teachers]


def trimap_from_probability(prob: np.ndarray, band: int, lo: float = 0.2, hi: float = 0.8) -> np.ndarray:
    """uint8 trimap (0 bg, 128 unknown, 255 fg): confident regions shrunk by ``band`` pixels on each side
    (the runtime refinement's trimap, core/refine.py, in 8 bits)."""
    trimap = make_trimap(prob, band, subject_from=hi, background_to=lo)
    return np.where(trimap == 0.5, 128, trimap * 255).astype(np.uint8)


def soft_alpha_from_probability(
    rgb: np.ndarray,
    prob: np.ndarray,
    band_frac: float = 0.012,
    max_side: int = 512,
    confident: float = 0.75,
    min_agreement: float = 0.95,
) -> np.ndarray:
    """Soft alpha (float32 [0, 1], rgb's size) following the photo's edges, from a coarse probability map.

    Closed-form matting (Levin et al., via pymatting) solves the unknown band of a trimap built from ``prob``;
    it runs at most at ``max_side`` for speed. Pixels where ``prob`` is confident (>= ``confident`` or <=
    1 - ``confident``) keep their side of 0.5; where the result agrees with ``prob`` less than ``min_agreement``
    (IoU at 0.5) or the solver fails, the guided-filtered probability is used instead, so no photo is lost.
    """
    from pymatting import estimate_alpha_cf

    h, w = prob.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (round(w * scale), round(h * scale))
        rgb_s = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        prob_s = cv2.resize(prob, size, interpolation=cv2.INTER_LINEAR)
    else:
        rgb_s, prob_s = rgb, prob
    band = max(2, round(band_frac * max(rgb_s.shape[:2])))
    trimap = trimap_from_probability(prob_s, band)
    unknown = trimap == 128
    fallback = keep_sure_side(guided_filter(rgb, prob), prob, confident)
    if unknown.all() or not unknown.any() or not (trimap == 255).any():
        return fallback
    try:
        alpha = estimate_alpha_cf(rgb_s.astype(np.float64) / 255.0, trimap.astype(np.float64) / 255.0)
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        log.warning("closed-form matting failed (%s); using the guided-filtered probability", exc)
        return fallback
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    if scale < 1.0:
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = keep_sure_side(alpha, prob, confident)
    # On cluttered scenes the solver can still move large uncertain regions; there the teachers' own
    # boundary is the safer label, only smoothed along the photo's edges.
    return alpha if mask_iou(alpha, prob) >= min_agreement else fallback


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of a >= 0.5 vs b >= 0.5 (1.0 when both are empty)."""
    x, y = a >= 0.5, b >= 0.5
    union = np.logical_or(x, y).sum()
    return 1.0 if union == 0 else float(np.logical_and(x, y).sum() / union)


def guided_filter(rgb: np.ndarray, prob: np.ndarray, radius: int = 4, eps: float = 1e-3) -> np.ndarray:
    """Edge-aware smoothing of ``prob`` guided by the photo's luminance (He et al.), float32 in [0, 1]."""
    guide = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    p = prob.astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, k)

    mean_i, mean_p = box(guide), box(p)
    a = (box(guide * p) - mean_i * mean_p) / (box(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return np.clip(box(a) * guide + box(b), 0.0, 1.0).astype(np.float32)
