"""What reading a photo costs, by input format and colour profile: `python bench/decode_bench.py`.

The same photo (a committed test photo, cover-scaled to each size) is encoded as JPEG, HEIC and AVIF, and as
a JPEG tagged Adobe RGB (converted to sRGB as it is read, core/imageio.py); `decode_image` reads each, as
every request does. Prints the median milliseconds per read and the ratio to the plain JPEG beside it, in
one process, so the machine's load hits every row alike.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matteflow.core.iccprofile import rgb_profile  # noqa: E402
from matteflow.core.imageio import decode_image  # noqa: E402  (registers the HEIC plugin)

SIZES = {"1080p": (1920, 1080), "12 MP": (4032, 3024)}
PHOTO = ROOT / "tests" / "data" / "people" / "000000060623.jpg"


def photo_at(size: tuple[int, int]) -> Image.Image:
    image = Image.open(PHOTO).convert("RGB")
    scale = max(size[0] / image.width, size[1] / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    left, top = (image.width - size[0]) // 2, (image.height - size[1]) // 2
    return image.crop((left, top, left + size[0], top + size[1]))


def encodings(image: Image.Image) -> dict[str, bytes]:
    adobe_icc = rgb_profile()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    adobe = ImageCms.profileToProfile(image, srgb, ImageCms.ImageCmsProfile(io.BytesIO(adobe_icc)), outputMode="RGB")
    out = {}
    for label, picture, fmt, extra in (
        ("JPEG (sRGB, untagged)", image, "JPEG", {}),
        ("JPEG tagged Adobe RGB", adobe, "JPEG", {"icc_profile": adobe_icc}),
        ("HEIC", image, "HEIF", {}),
        ("AVIF", image, "AVIF", {}),
    ):
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt, quality=90, **extra)
        out[label] = buffer.getvalue()
    return out


def median_ms(data: bytes, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        decode_image(data, 100_000_000)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(f"{'size':7} {'input':24} {'KB':>6} {'ms/read':>8} {'vs JPEG':>8}")
    for size_label, size in SIZES.items():
        datas = encodings(photo_at(size))
        for data in datas.values():
            decode_image(data, 100_000_000)  # warm: plugin set-up, the profile's cached transform
        # Interleave the formats round by round so load changes hit all of them.
        samples: dict[str, list[float]] = {label: [] for label in datas}
        for _ in range(args.rounds):
            for label, data in datas.items():
                samples[label].append(median_ms(data, 1))
        base = statistics.median(samples["JPEG (sRGB, untagged)"])
        for label, data in datas.items():
            ms = statistics.median(samples[label])
            print(f"{size_label:7} {label:24} {len(data) / 1024:6.0f} {ms:8.1f} {ms / base:7.2f}x")
    print(f"(Pillow {Image.__version__}, {np.__name__} {np.__version__})")


if __name__ == "__main__":
    main()
