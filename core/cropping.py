"""Crop a cut-out to its subject: tight (``subject``) or centred on a square canvas (``square``), with a margin.

What product pipelines do after background removal: a marketplace listing wants the item centred on a square,
filling most of it; a catalogue or a design tool wants the transparent PNG without empty rows around the
item. The crop is integer (no resampling: the subject's pixels are the matte's own), and where the canvas
reaches beyond the photo it is filled with transparent pixels, which the background colour then covers.

A side where the subject touches the photo's edge (a person cut off at the waist, a product photographed too
close) gets no margin and stays on the canvas edge: a gap there would show a body that ends in mid-air.
Pure array functions, as :mod:`matteflow.core.postprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_MODES = ("none", "subject", "square")
MAX_CROP_MARGIN = 100  # percent of the subject's long side

# The subject's extent is where the cut-out is visible: alpha at least this (faint hair and soft edges count;
# the guided filter's near-zero haze over the background does not).
VISIBLE_ALPHA = 0.1
# Visible pieces smaller than this share of the largest piece are specks (a glint the matte caught), not part
# of the subject: they must not stretch the crop to the photo's corner.
SPECK_SHARE = 0.001

NO_SUBJECT_WARNING = "no subject found to crop to: the whole photo was kept"


@dataclass(frozen=True)
class Box:
    """A rectangle in photo pixels, ``left``/``top`` inclusive, ``right``/``bottom`` exclusive. May reach
    beyond the photo (negative or past its size) when it is a canvas."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def find_subject_box(alpha: np.ndarray) -> Box | None:
    """The bounding box of the visible subject in an H x W float32 matte in [0, 1], or ``None`` if nothing
    is visible. Specks far smaller than the largest visible piece are left out."""
    visible = (alpha >= VISIBLE_ALPHA).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(visible, connectivity=8)
    if count <= 1:
        return None
    pieces = stats[1:]
    areas = pieces[:, cv2.CC_STAT_AREA]
    kept = pieces[areas >= areas.max() * SPECK_SHARE]
    left = int(kept[:, cv2.CC_STAT_LEFT].min())
    top = int(kept[:, cv2.CC_STAT_TOP].min())
    right = int((kept[:, cv2.CC_STAT_LEFT] + kept[:, cv2.CC_STAT_WIDTH]).max())
    bottom = int((kept[:, cv2.CC_STAT_TOP] + kept[:, cv2.CC_STAT_HEIGHT]).max())
    return Box(left, top, right, bottom)


def _grow(low: int, high: int, extent: int, margin: int) -> tuple[int, int]:
    """Add ``margin`` to both ends of ``[low, high)`` on an axis of length ``extent``, except at an end that
    touches the photo's edge."""
    return (low - margin if low > 0 else low, high + margin if high < extent else high)


def _widen(low: int, high: int, extent: int, size: int) -> tuple[int, int]:
    """Widen ``[low, high)`` to ``size``: centred, unless the subject touches the photo's edge on one end,
    where it stays (the canvas grows the other way)."""
    extra = size - (high - low)
    if extra <= 0:
        return low, high
    cut_before, cut_after = low <= 0, high >= extent
    if cut_before and not cut_after:
        return low, high + extra
    if cut_after and not cut_before:
        return low - extra, high
    before = extra // 2
    return low - before, high + (extra - before)


def canvas_box(subject: Box, shape: tuple[int, int], mode: str, margin_percent: int) -> Box:
    """The output canvas in photo coordinates for ``mode`` (``subject`` or ``square``) around ``subject``,
    with ``margin_percent`` of the subject's long side added on each side not cut by the photo's edge.
    ``shape`` is the photo's (height, width)."""
    height, width = shape
    margin = round(max(subject.width, subject.height) * margin_percent / 100)
    left, right = _grow(subject.left, subject.right, width, margin)
    top, bottom = _grow(subject.top, subject.bottom, height, margin)
    if mode == "square":
        side = max(right - left, bottom - top)
        left, right = _widen(left, right, width, side)
        top, bottom = _widen(top, bottom, height, side)
    return Box(left, top, right, bottom)


def cut_canvas(array: np.ndarray, box: Box) -> np.ndarray:
    """The part of ``array`` (H x W or H x W x C) under ``box``; parts of the box beyond the array are zeros."""
    height, width = array.shape[:2]
    out = np.zeros((box.height, box.width, *array.shape[2:]), array.dtype)
    src_top, src_bottom = max(box.top, 0), min(box.bottom, height)
    src_left, src_right = max(box.left, 0), min(box.right, width)
    if src_top < src_bottom and src_left < src_right:
        out[src_top - box.top : src_bottom - box.top, src_left - box.left : src_right - box.left] = array[
            src_top:src_bottom, src_left:src_right
        ]
    return out


def crop_to_subject(
    foreground: np.ndarray, alpha: np.ndarray, mode: str, margin_percent: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Crop a cut-out (H x W x 3 uint8 foreground, H x W float32 matte) for ``mode`` in :data:`CROP_MODES`.

    Returns (foreground, matte, warnings) of the canvas's size; the matte is 0 where the canvas lies beyond
    the photo. With ``none``, or when no subject is visible (then with a warning), the inputs come back as
    they are.
    """
    if mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    if mode == "none":
        return foreground, alpha, []
    subject = find_subject_box(alpha)
    if subject is None:
        return foreground, alpha, [NO_SUBJECT_WARNING]
    box = canvas_box(subject, alpha.shape[:2], mode, margin_percent)
    return cut_canvas(foreground, box), cut_canvas(alpha, box), []
