"""Edge refinement: closed-form alpha matting in a narrow band around the network's edge.

The network sees the photo at a few hundred pixels and the guided filter carries its matte to full size, so a
soft edge (hair, fur, a plush toy, a blurred shoulder) comes out as a smooth ramp or a faint glow of
background colour, not the strands themselves. Closed-form matting (Levin, Lischinski & Weiss 2008, through
pymatting) solves the alpha of the undecided pixels from the colours of the photo around them, given pixels
known to be subject or background: it is what rembg's ``alpha_matting`` option runs, here restricted to a
band of a few pixels where the network is undecided and solved at a bounded size, then carried to full size
by the same guided filter as the network's matte (so it costs about the same at any resolution).

Decisions the network was sure of are kept on their side of 0.5: the solver may sharpen and soften edges,
never erase a thin arm whose core had no seed pixel (the same guard the training labels use). Measured in
``models/README.md`` ("Edge refinement").
"""

from __future__ import annotations

import importlib
import logging

import cv2
import numpy as np

from .postprocess import snap_alpha, upsample_alpha_guided

log = logging.getLogger(__name__)

REFINE_SIDE = 512  # long side at which the matting problem is solved (0.2-0.9 s of CPU per photo at 512)
SEED_DECIDED = 0.95  # alpha at or above is subject, at or below 1 - this is background: the trimap's seeds
BAND_PX = 2  # seeds are eroded by this many pixels (at REFINE_SIDE), so every edge gets an undecided band
KEEP_DECIDED = 0.75  # where the network was this sure, the refined alpha keeps its side of 0.5
# The solve's cost grows faster than the number of pixels to solve: an edge band at 512 px has 10-40 thousand
# (people_dev's largest 38k, 1.2 s; objects_dev's soft plush toys up to 54k, 2.8 s), but a matte that is fog
# over most of the photo has hundreds of thousands (20 s). Such a matte is solved at a smaller size, so the
# work stays bounded (about 4 s) whatever the network gave.
MAX_UNDECIDED = 60_000
# Diagonal shifts for the incomplete Cholesky preconditioner: a matting Laplacian block is only positive
# semi-definite, and pymatting's default first try (no shift) fails and prints a warning on most photos.
_ICHOL_SHIFTS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
# Thin guided filter to carry the solved matte back to full size: follows edges, adds no smoothing of its own.
_UPSAMPLE_RADIUS = 2
_UPSAMPLE_EPS = 1e-4


def make_trimap(
    alpha: np.ndarray,
    band_px: int = BAND_PX,
    subject_from: float = SEED_DECIDED,
    background_to: float = 1.0 - SEED_DECIDED,
) -> np.ndarray:
    """Trimap (float64: 1 subject, 0 background, 0.5 to solve) from an alpha or a probability: the sure pixels
    (>= ``subject_from``, <= ``background_to``) eroded by ``band_px``, so each boundary and everything left
    soft is to be solved. The training labels build theirs with it too (training/labels.py)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1, 2 * band_px + 1))
    subject = cv2.erode((alpha >= subject_from).astype(np.uint8), kernel)
    background = cv2.erode((alpha <= background_to).astype(np.uint8), kernel)
    trimap = np.full(alpha.shape, 0.5)
    trimap[subject > 0] = 1.0
    trimap[background > 0] = 0.0
    return trimap


def keep_sure_side(
    alpha: np.ndarray, prior: np.ndarray, sure: float, floor: float = 0.55, ceiling: float = 0.45
) -> np.ndarray:
    """``alpha`` clamped so that where ``prior`` was sure (>= ``sure``, or <= 1 - ``sure``) it stays on that
    side of 0.5: at least ``floor``, at most ``ceiling``. A solve may sharpen and soften, never flip a sure
    decision (that would erase a thin limb or a small person whose trimap had no seed)."""
    lower = np.where(prior >= sure, floor, 0.0).astype(np.float32)
    upper = np.where(prior <= 1.0 - sure, ceiling, 1.0).astype(np.float32)
    return np.clip(alpha, lower, upper)


def _log_ichol_retry(*args: object, **_: object) -> None:
    log.debug("pymatting: %s", " ".join(str(arg) for arg in args))


def _preconditioner(matrix):  # noqa: ANN001, ANN202 (scipy sparse in, pymatting's callable out)
    # The module, not the function of the same name that pymatting.preconditioner re-exports over it.
    ichol_module = importlib.import_module("pymatting.preconditioner.ichol")
    # pymatting print()s a "PERFORMANCE WARNING" to stdout for each diagonal shift that fails before one
    # works: noise in the CLI's output stream. A module global named print shadows the builtin in that module
    # only (thread-safe, unlike swapping sys.stdout under the other threads), and sends it to the debug log.
    ichol_module.print = _log_ichol_retry
    return ichol_module.ichol(matrix, shifts=list(_ICHOL_SHIFTS))


def _solve(image: np.ndarray, trimap: np.ndarray) -> np.ndarray | None:
    """Closed-form matting of ``image`` (h x w x 3 uint8) with ``trimap``; None where pymatting gives up."""
    from pymatting import estimate_alpha_cf  # imported on first use: numba compiles at import

    try:
        solved = estimate_alpha_cf(image.astype(np.float64) / 255.0, trimap, preconditioner=_preconditioner)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        log.warning("edge refinement skipped: closed-form matting failed (%s)", exc)
        return None
    return np.clip(solved, 0.0, 1.0).astype(np.float32)


def refine_edges(alpha: np.ndarray, image: np.ndarray, side: int = REFINE_SIDE) -> np.ndarray:
    """The matte ``alpha`` (H x W float32 in [0, 1]) with its undecided band solved against ``image``
    (H x W x 3 uint8 RGB). A matte with nothing to solve (all subject, all background, no sure subject)
    comes back unchanged."""
    height, width = alpha.shape
    while True:
        scale = min(1.0, side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            small_alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        else:
            small_image, small_alpha = image, alpha
        trimap = make_trimap(small_alpha)
        undecided = trimap == 0.5
        count = int(np.count_nonzero(undecided))
        if count <= MAX_UNDECIDED:
            break
        # Fog shrinks with the area, a band only with the side: step down until the count fits.
        side = int(min(side, max(height, width)) * max(0.5, (MAX_UNDECIDED / count) ** 0.5))
    if not count or not (trimap == 1.0).any() or not (trimap == 0.0).any():
        return alpha
    solved = _solve(small_image, trimap)
    if solved is None:
        return alpha
    if scale < 1.0:
        solved = upsample_alpha_guided(
            solved, image, guide_side=max(small_image.shape[:2]), radius=_UPSAMPLE_RADIUS, eps=_UPSAMPLE_EPS
        )
        undecided = cv2.resize(undecided.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    refined = alpha.copy()
    refined[undecided] = solved[undecided]
    return snap_alpha(keep_sure_side(refined, alpha, KEEP_DECIDED, floor=0.5, ceiling=0.49))
