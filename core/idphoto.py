"""Real ID photos: find the head, then crop and scale the cut-out so the head follows the size's rule.

The crown comes from the matte (its top edge above the face), the chin from OpenCV's frontal-face detector
(the Haar cascade that ships inside ``opencv-python``: no download). Without a face the head is estimated from
the matte's outline and the result carries a warning. Pure array functions; sizes and rules live in
:mod:`matteflow.core.idsizes`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .idsizes import IdSize

# The Haar box runs from mid-forehead to about the lower lip; the chin sits a little below its bottom edge.
CHIN_BELOW_FACE_BOX = 0.12
# A face whose box is narrower than this (pixels in the photo) is too small to print sharply.
MIN_FACE_PIXELS = 80
MAX_TILT_DEGREES = 8.0


@dataclass(frozen=True)
class HeadBox:
    """Where the head is in the photo, in pixels: crown and chin rows, centre column, tilt in degrees."""

    crown_y: float
    chin_y: float
    center_x: float
    tilt_degrees: float | None = None

    @property
    def height(self) -> float:
        return self.chin_y - self.crown_y


@dataclass
class Framing:
    """The affine map from photo to ID frame, where the head lands in the frame, and what went wrong."""

    matrix: np.ndarray  # 2 x 3 float64, photo -> frame
    size: tuple[int, int]  # (width, height) of the frame in pixels
    head_top: float  # crown row in the frame
    head_height: float  # crown-to-chin in frame pixels
    warnings: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=2)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise RuntimeError(f"OpenCV's cascade {path} could not be loaded")
    return classifier


def detect_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces in an H x W x 3 uint8 RGB photo as (x, y, w, h) boxes, largest first."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    side = min(gray.shape)
    min_size = max(24, side // 12)
    faces = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size)
    )
    boxes = [tuple(int(v) for v in face) for face in faces]
    return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)  # type: ignore[return-value]


def _eye_tilt(rgb: np.ndarray, face: tuple[int, int, int, int]) -> float | None:
    """Angle of the line through the two eyes in degrees (0 = level), or None when two eyes are not found."""
    x, y, w, h = face
    upper = cv2.cvtColor(rgb[y : y + h // 2 + h // 8, x : x + w], cv2.COLOR_RGB2GRAY)
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(upper, 1.1, 5, minSize=(max(8, w // 8), max(8, w // 8)))
    if len(eyes) < 2:
        return None
    two = sorted(eyes, key=lambda e: e[2] * e[3], reverse=True)[:2]
    (ax, ay, aw, ah), (bx, by, bw, bh) = sorted(two, key=lambda e: e[0])
    dx = (bx + bw / 2) - (ax + aw / 2)
    dy = (by + bh / 2) - (ay + ah / 2)
    if dx <= 0:
        return None
    return math.degrees(math.atan2(dy, dx))


def _side_cut(solid: np.ndarray, top: int, bottom: int) -> list[str]:
    """A warning when the person touches the photo's left or right edge next to the head and shoulders."""
    band = solid[max(0, top) : max(top + 1, bottom)]
    if band[:, 0].any() or band[:, -1].any():
        return ["the person is cut by the photo's side edge: the ID photo shows a straight cut"]
    return []


def locate_head(rgb: np.ndarray, alpha: np.ndarray) -> tuple[HeadBox | None, list[str]]:
    """Find the head of the main person: H x W x 3 uint8 photo, H x W float32 matte in [0, 1].

    Returns the head box (None when the matte is empty) and warnings (no face, several faces, tilt, small).
    """
    warnings: list[str] = []
    solid = alpha >= 0.5
    rows = np.flatnonzero(solid.any(axis=1))
    if rows.size == 0:
        return None, ["no person found in the photo: the ID photo cannot be framed"]
    # Faces inside the person only: a face on a poster in the background is not the subject.
    faces = [f for f in detect_faces(rgb) if solid[f[1] + f[3] // 2, f[0] + f[2] // 2]]
    if faces:
        x, y, w, h = faces[0]
        if len(faces) > 1 and faces[1][2] > 0.6 * w:
            warnings.append(f"{len(faces)} faces found: framed on the largest")
        band = solid[:, max(0, x) : x + w]
        band_rows = np.flatnonzero(band.any(axis=1))
        crown = float(band_rows[0]) if band_rows.size else float(y)
        crown = min(crown, float(y))
        chin = y + h * (1.0 + CHIN_BELOW_FACE_BOX)
        tilt = _eye_tilt(rgb, faces[0])
        if tilt is not None and abs(tilt) > MAX_TILT_DEGREES:
            warnings.append(f"the head is tilted by about {abs(tilt):.0f} degrees: ID photos need it level")
        if w < MIN_FACE_PIXELS:
            warnings.append(f"the face is small ({w} px wide): the ID photo will be blurry")
        if crown <= 0:
            warnings.append("the top of the head is cut off by the photo's edge")
        if chin >= alpha.shape[0] - 1:
            warnings.append("the chin is cut off by the photo's edge")
        warnings += _side_cut(solid, int(crown), int(min(chin + h, alpha.shape[0])))
        return HeadBox(crown, chin, x + w / 2.0, tilt), warnings

    # No face: the head is the top of the matte; its height is estimated from the width of the outline
    # a little below the crown (a head is about 1.3 times as tall as wide).
    crown = float(rows[0])
    subject_width = float(np.ptp(np.flatnonzero(solid.any(axis=0))) + 1)
    probe = int(min(alpha.shape[0] - 1, crown + 0.25 * subject_width))
    cols = np.flatnonzero(solid[probe])
    head_width = float(np.ptp(cols) + 1) if cols.size else subject_width
    head_width = min(head_width, subject_width)
    center = float(cols.mean()) if cols.size else alpha.shape[1] / 2.0
    warnings.append("no face found: the head was estimated from the outline; check the framing")
    warnings += _side_cut(solid, int(crown), int(min(crown + 2.6 * head_width, alpha.shape[0])))
    return HeadBox(crown, crown + 1.3 * head_width, center), warnings


def frame_for_size(head: HeadBox, size: IdSize) -> Framing:
    """The photo -> frame map that puts the head at the size's target height and top margin, centred."""
    out_w, out_h = size.pixels
    target_head = size.head[1] * out_h
    scale = target_head / max(head.height, 1.0)
    top_margin = size.top[1] * out_h
    tx = out_w / 2.0 - scale * head.center_x
    ty = top_margin - scale * head.crown_y
    matrix = np.array([[scale, 0.0, tx], [0.0, scale, ty]], dtype=np.float64)
    warnings = []
    if scale > 2.5:
        warnings.append(f"the head is small in the photo: scaled up {scale:.1f}x, the ID photo will be soft")
    return Framing(matrix, (out_w, out_h), top_margin, target_head, warnings)


def warp_to_frame(foreground: np.ndarray, alpha: np.ndarray, framing: Framing) -> tuple[np.ndarray, np.ndarray]:
    """Apply the framing to the H x W x 3 uint8 foreground and H x W float32 matte.

    Outside the photo the matte is 0, so the background colour fills any border the crop reaches beyond.
    """
    width, height = framing.size
    flags = cv2.INTER_AREA if framing.matrix[0, 0] < 1 else cv2.INTER_CUBIC
    fg = cv2.warpAffine(foreground, framing.matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(alpha, framing.matrix, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    return fg, np.clip(a, 0.0, 1.0)


def make_id_photo(
    rgb: np.ndarray, foreground: np.ndarray, alpha: np.ndarray, size: IdSize
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Frame a cut-out as an ID photo of ``size``: returns (foreground, matte, warnings) at the size's pixels.

    ``rgb`` is the photo (for face detection), ``foreground`` its decontaminated colours, ``alpha`` the final
    matte (H x W float32). The caller composites over the background colour.
    """
    head, warnings = locate_head(rgb, alpha)
    if head is None:
        width, height = size.pixels
        empty = np.zeros((height, width), np.float32)
        fg = cv2.resize(foreground, (width, height), interpolation=cv2.INTER_AREA)
        return fg, empty, warnings
    framing = frame_for_size(head, size)
    fg, a = warp_to_frame(foreground, alpha, framing)
    return fg, a, warnings + framing.warnings


# A 6-inch print (4 x 6 in) at 300 dpi, the paper photo labs and kiosks print ID-photo sheets on.
SHEET_PIXELS = (1800, 1200)
SHEET_MIN_GAP = 4  # px: 1-inch photos fit 4 across a 4-inch side, as photo labs print them
CUT_LINE_GREY = 190


def layout_print_sheet(photo: np.ndarray) -> tuple[np.ndarray, int]:
    """Lay out as many copies of an H x W x 3 uint8 ID photo as fit on 4 x 6 in paper (300 dpi), in the
    orientation that fits more (landscape on a tie), evenly spaced on white with grey cut lines in the gaps.

    Returns the sheet (1200 x 1800 or 1800 x 1200 x 3 uint8) and the number of copies.
    """
    h, w = photo.shape[:2]
    layouts = []
    for sheet_w, sheet_h in (SHEET_PIXELS, SHEET_PIXELS[::-1]):
        cols = (sheet_w - SHEET_MIN_GAP) // (w + SHEET_MIN_GAP)
        rows = (sheet_h - SHEET_MIN_GAP) // (h + SHEET_MIN_GAP)
        layouts.append((cols * rows, sheet_w, sheet_h, cols, rows))
    count, sheet_w, sheet_h, cols, rows = max(layouts, key=lambda layout: layout[0])
    if count == 0:
        raise ValueError(f"a {w}x{h} photo does not fit on a {SHEET_PIXELS[0]}x{SHEET_PIXELS[1]} sheet")
    sheet = np.full((sheet_h, sheet_w, 3), 255, np.uint8)
    gap_x = (sheet_w - cols * w) / (cols + 1)
    gap_y = (sheet_h - rows * h) / (rows + 1)
    lefts = [round(gap_x + c * (w + gap_x)) for c in range(cols)]
    tops = [round(gap_y + r * (h + gap_y)) for r in range(rows)]
    # Cut lines run through the middle of every gap, edge to edge: one straight cut per line.
    for x in [left - round(gap_x / 2) for left in lefts] + [lefts[-1] + w + round(gap_x / 2)]:
        sheet[:, max(0, min(sheet_w - 1, x))] = CUT_LINE_GREY
    for y in [top - round(gap_y / 2) for top in tops] + [tops[-1] + h + round(gap_y / 2)]:
        sheet[max(0, min(sheet_h - 1, y)), :] = CUT_LINE_GREY
    for top in tops:
        for left in lefts:
            sheet[top : top + h, left : left + w] = photo
    return sheet, count
