"""Frame a cut-out: crop it to its subject, tight (``subject``) or centred on a square (``square``), with a
margin; and scale it to a fixed output size (a catalogue where every image is 1000 x 1000).

What product pipelines do after background removal: a marketplace listing wants the item centred on a square,
filling most of it; a design tool wants the transparent PNG without empty rows around the item; a catalogue
wants every image the same size. The crop is integer (no resampling unless an output size
asks for it), and where the canvas reaches beyond the photo it is filled with transparent pixels, which the
background colour then covers.

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
# Listings ask for 1000-3000 px; 5000 x 5000 is 25 MP, about 300 MB of working arrays in a worker.
MAX_OUTPUT_SIDE = 5000

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


def canvas_box(subject: Box, shape: tuple[int, int], margin_percent: int, aspect: float | None = None) -> Box:
    """The output canvas in photo coordinates around ``subject``, with ``margin_percent`` of the subject's long
    side added on each side not cut by the photo's edge, then widened to ``aspect`` (width / height) if one is
    given. ``shape`` is the photo's (height, width)."""
    height, width = shape
    margin = round(max(subject.width, subject.height) * margin_percent / 100)
    left, right = _grow(subject.left, subject.right, width, margin)
    top, bottom = _grow(subject.top, subject.bottom, height, margin)
    if aspect is not None:
        if (right - left) < aspect * (bottom - top):
            left, right = _widen(left, right, width, round(aspect * (bottom - top)))
        else:
            top, bottom = _widen(top, bottom, height, round((right - left) / aspect))
    return Box(left, top, right, bottom)


def cut_canvas(array: np.ndarray, box: Box, size: tuple[int, int] | None = None) -> np.ndarray:
    """The part of ``array`` (H x W or H x W x C) under ``box``, scaled to ``size`` (width, height) if given;
    parts of the box beyond the array are zeros.

    Only the part inside the photo is resampled (area averaging to shrink, bicubic to enlarge), so the photo's
    edge stays sharp against the zeros instead of bleeding into them."""
    height, width = array.shape[:2]
    out_w, out_h = size or (box.width, box.height)
    out = np.zeros((out_h, out_w, *array.shape[2:]), array.dtype)
    src_top, src_bottom = max(box.top, 0), min(box.bottom, height)
    src_left, src_right = max(box.left, 0), min(box.right, width)
    if src_top >= src_bottom or src_left >= src_right:
        return out
    scale_x, scale_y = out_w / box.width, out_h / box.height
    left, right = round((src_left - box.left) * scale_x), round((src_right - box.left) * scale_x)
    top, bottom = round((src_top - box.top) * scale_y), round((src_bottom - box.top) * scale_y)
    part = array[src_top:src_bottom, src_left:src_right]
    if (right - left, bottom - top) != (part.shape[1], part.shape[0]):
        shrinking = (right - left) * (bottom - top) < part.shape[0] * part.shape[1]
        part = cv2.resize(
            part, (right - left, bottom - top), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        )
    out[top:bottom, left:right] = part
    return out


def frame_cutout(
    foreground: np.ndarray,
    alpha: np.ndarray,
    crop: str,
    margin_percent: int = 0,
    output_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Frame a cut-out (H x W x 3 uint8 foreground, H x W float32 matte in [0, 1]) for ``crop`` in
    :data:`CROP_MODES`, then scale it to ``output_size`` (width, height) if one is given.

    ``subject`` keeps the subject's own box (plus margin), ``square`` widens it to a square; with an
    ``output_size`` both widen it to the output's shape instead, and ``none`` letterboxes the whole photo into
    it. Returns (foreground, matte, warnings); the matte is 0 where the canvas lies beyond the photo. When no
    subject is visible the whole photo is kept (with a warning).
    """
    if crop not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    aspect = output_size[0] / output_size[1] if output_size else (1.0 if crop == "square" else None)
    shape = alpha.shape[:2]
    warnings: list[str] = []
    subject = find_subject_box(alpha) if crop != "none" else None
    if crop != "none" and subject is None:
        warnings.append(NO_SUBJECT_WARNING)
    if subject is None:
        if output_size is None:
            return foreground, alpha, warnings
        # The whole photo, every side its own edge: centred on the output's shape.
        box = canvas_box(Box(0, 0, shape[1], shape[0]), shape, 0, aspect)
    else:
        box = canvas_box(subject, shape, margin_percent, aspect)
    # Bicubic enlargement overshoots a little at hard edges: the matte stays in [0, 1].
    alpha = np.clip(cut_canvas(alpha, box, output_size), 0.0, 1.0)
    return cut_canvas(foreground, box, output_size), alpha, warnings
