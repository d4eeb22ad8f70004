"""Standard ID and passport photo sizes, and the framing rule of each.

A leaf module (no image code) so that option parsing, the instruction interpreter and the framing in
:mod:`matteflow.core.idphoto` share one table. Pixel sizes are at :data:`ID_DPI` (300 dpi), the resolution
photo labs and online application forms expect.

The rule of a size says where the head goes: ``head`` is the head height (crown to chin) as a share of the
photo's height, ``top`` the margin above the crown as a share of the height; each as (low, target, high).
"""

from __future__ import annotations

from dataclasses import dataclass

MM_PER_INCH = 25.4
ID_DPI = 300


@dataclass(frozen=True)
class IdSize:
    """One photo size: physical size in millimetres, its names, and the head-framing rule."""

    name: str
    width_mm: float
    height_mm: float
    label_en: str
    label_zh: str
    head: tuple[float, float, float]
    top: tuple[float, float, float]
    passport: bool = False

    @property
    def preset(self) -> str:
        """The preset that makes this size: ``id-<name>`` or, for passport/visa sizes, ``passport-<name>``."""
        return f"{'passport' if self.passport else 'id'}-{self.name}"

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) in pixels at :data:`ID_DPI`."""
        return (mm_to_pixels(self.width_mm), mm_to_pixels(self.height_mm))


def mm_to_pixels(mm: float, dpi: int = ID_DPI) -> int:
    return round(mm / MM_PER_INCH * dpi)


# Chinese photo-studio sizes: the head takes a little under two thirds of the height.
_CN_HEAD = (0.52, 0.62, 0.72)
_CN_TOP = (0.04, 0.09, 0.14)

ID_SIZES: dict[str, IdSize] = {
    size.name: size
    for size in (
        IdSize("1inch", 25, 35, "1-inch ID photo (25x35 mm)", "一寸照 (25×35 mm)", _CN_HEAD, _CN_TOP),
        IdSize("small-1inch", 22, 32, "small 1-inch (22x32 mm)", "小一寸 (22×32 mm)", _CN_HEAD, _CN_TOP),
        IdSize("large-1inch", 33, 48, "large 1-inch (33x48 mm)", "大一寸 (33×48 mm)", _CN_HEAD, _CN_TOP),
        IdSize("2inch", 35, 49, "2-inch ID photo (35x49 mm)", "二寸照 (35×49 mm)", _CN_HEAD, _CN_TOP),
        IdSize("small-2inch", 35, 45, "small 2-inch (35x45 mm)", "小二寸 (35×45 mm)", _CN_HEAD, _CN_TOP),
        IdSize("large-2inch", 35, 53, "large 2-inch (35x53 mm)", "大二寸 (35×53 mm)", _CN_HEAD, _CN_TOP),
        # Chinese passport and visa: head 28-33 mm of 48, crown 3-5 mm below the top edge.
        IdSize(
            "33x48",
            33,
            48,
            "passport/visa 33x48 mm (China)",
            "护照/签证 33×48 mm",
            (0.58, 0.635, 0.69),
            (0.06, 0.08, 0.11),
            passport=True,
        ),
        # ICAO / Schengen / UK: head 32-36 mm of 45.
        IdSize(
            "35x45",
            35,
            45,
            "passport/visa 35x45 mm (ICAO, Schengen, UK)",
            "护照/签证 35×45 mm (国际标准)",
            (0.70, 0.75, 0.80),
            (0.04, 0.07, 0.11),
            passport=True,
        ),
        # US passport and visa: 2x2 in, head 1 to 1 3/8 in.
        IdSize(
            "2x2in",
            50.8,
            50.8,
            "US passport/visa 2x2 in",
            "美国护照/签证 2×2 英寸",
            (0.50, 0.60, 0.69),
            (0.06, 0.10, 0.16),
            passport=True,
        ),
    )
}


def find_id_size(width_mm: float, height_mm: float, tolerance_mm: float = 0.6) -> IdSize | None:
    """The registered size with these physical dimensions (either orientation of the numbers), if any."""
    # Passport sizes (named by their dimensions) first: they share dimensions with studio sizes, and their
    # framing rules are the stricter ones.
    for size in sorted(ID_SIZES.values(), key=lambda s: not s.passport):
        for w, h in ((width_mm, height_mm), (height_mm, width_mm)):
            if abs(size.width_mm - w) <= tolerance_mm and abs(size.height_mm - h) <= tolerance_mm:
                return size
    return None


def find_id_size_by_pixels(width: int, height: int, tolerance: int = 3) -> IdSize | None:
    """The registered size whose 300-dpi pixel size is this ("413x579" is 二寸), passport sizes first."""
    for size in sorted(ID_SIZES.values(), key=lambda s: not s.passport):
        w, h = size.pixels
        for a, b in ((width, height), (height, width)):
            if abs(a - w) <= tolerance and abs(b - h) <= tolerance:
                return size
    return None
