"""Small ICC v2 matrix/TRC profiles: Pillow can only create sRGB, Lab and XYZ profiles. The decoder builds
one for a HEIF photo whose colour is given by an ``nclx`` box (primaries and transfer code) instead of an ICC
profile, so it is converted to sRGB like a tagged photo; tests build Adobe RGB, sRGB-equivalent and gray
profiles with it. The layout follows ICC.1:2001-04 (header, tag table, tags 4-byte aligned)."""

from __future__ import annotations

import struct

import numpy as np

# Adobe RGB (1998): colorants adapted to D50 and the 563/256 gamma, as in Adobe's own profile.
ADOBE_RGB_COLORANTS = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))
ADOBE_RGB_GAMMA = 563 / 256
# sRGB's colorants adapted to D50 (as LittleCMS builds them); its tone curve is SRGB_CURVE.
SRGB_COLORANTS = ((0.43604, 0.22248, 0.01392), (0.38511, 0.71691, 0.09707), (0.14305, 0.06061, 0.71391))
SRGB_CURVE = "srgb"
D50 = (0.9642, 1.0, 0.8249)


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15f16(v) for v in values)


def _curve(gamma: float | str) -> bytes:
    """A one-gamma curve, or (``SRGB_CURVE``) sRGB's piecewise curve as a 1024-entry table."""
    if gamma == SRGB_CURVE:
        x = [i / 1023 for i in range(1024)]
        y = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in x]
        body = b"curv" + bytes(4) + struct.pack(">I", len(y)) + b"".join(struct.pack(">H", round(v * 65535)) for v in y)
        return body
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(float(gamma) * 256)) + bytes(2)


def _description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    # textDescriptionType: ASCII part, an empty Unicode part, an empty ScriptCode part (67 bytes).
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(8) + bytes(3) + bytes(67)


def _profile(colour_space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries, bodies = [], b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        entries.append(struct.pack(">4sII", signature, offset + len(bodies), len(body)))
        bodies += body
    size = 128 + table_size + len(bodies)
    header = (
        struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"mntr", colour_space, b"XYZ ")
        + struct.pack(">6H", 2026, 12, 3, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8)
        + struct.pack(">I", 0)  # rendering intent: perceptual
        + b"".join(_s15f16(v) for v in D50)
        + bytes(4 + 44)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + bodies


def rgb_profile(
    name: str = "Adobe RGB (1998) test copy",
    colorants: tuple[tuple[float, float, float], ...] = ADOBE_RGB_COLORANTS,
    gamma: float | str = ADOBE_RGB_GAMMA,
) -> bytes:
    """An RGB display profile with the given D50 colorants (red, green, blue) and one gamma for all channels."""
    tags = [(b"desc", _description(name)), (b"wtpt", _xyz(D50)), (b"cprt", b"text" + bytes(4) + b"none\0")]
    tags += [(sig, _xyz(c)) for sig, c in zip((b"rXYZ", b"gXYZ", b"bXYZ"), colorants, strict=True)]
    tags += [(sig, _curve(gamma)) for sig in (b"rTRC", b"gTRC", b"bTRC")]
    return _profile(b"RGB ", tags)


def gray_profile(name: str = "Linear gray test profile", gamma: float = 1.0) -> bytes:
    """A grayscale display profile with the given gamma (1.0: linear light)."""
    tags = [(b"desc", _description(name)), (b"wtpt", _xyz(D50)), (b"cprt", b"text" + bytes(4) + b"none\0")]
    tags.append((b"kTRC", _curve(gamma)))
    return _profile(b"GRAY", tags)


# Bradford cone response matrix (ICC.1 Annex E): chromatic adaptation of a profile's colorants to D50.
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
D50_XYZ = np.array(D50)


def _xyz_of(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def colorants_d50(
    primaries: tuple[tuple[float, float], tuple[float, float], tuple[float, float]], white: tuple[float, float]
) -> tuple[tuple[float, float, float], ...]:
    """The D50-adapted XYZ colorants (red, green, blue) of RGB primaries and a white point given as CIE xy, as
    an ICC matrix profile stores them."""
    corners = np.stack([_xyz_of(*xy) for xy in primaries], axis=1)
    white_xyz = _xyz_of(*white)
    to_xyz = corners * np.linalg.solve(corners, white_xyz)  # each primary scaled so R = G = B = 1 is the white
    cone_ratio = (_BRADFORD @ D50_XYZ) / (_BRADFORD @ white_xyz)
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(cone_ratio) @ _BRADFORD
    adapted = adapt @ to_xyz
    return tuple(tuple(float(v) for v in adapted[:, i]) for i in range(3))
