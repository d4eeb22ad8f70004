"""What the remove.bg-compatible endpoint adds in the web process: `python bench/compat_bench.py`.

`POST /v1.0/removebg` answers with the subject's box (`X-Foreground-*`), found from the worker's mask, and
`format=zip` re-encodes the result as `color.jpg` + `alpha.png` (web/compat/removebg.py). Both run in the web
process, beside the worker's own time for the image; this prints their median milliseconds for a 1080p photo
cut out by the shipped engine, and the worker's time for the same photo for scale.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matteflow.api import get_engine  # noqa: E402
from matteflow.core.options import parse_options  # noqa: E402
from matteflow.web.compat.removebg import _foreground, _zip  # noqa: E402
from matteflow.workers.client import SingleResult  # noqa: E402

PHOTO = ROOT / "tests" / "data" / "people" / "000000412151.jpg"


def median_ms(work: Callable[[], object], rounds: int = 15) -> float:
    work()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    photo = Image.open(PHOTO).convert("RGB").resize((1920, 1080))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    engine, options = get_engine(), parse_options({"mask": True})
    worker_ms = median_ms(lambda: engine.process_bytes(buffer.getvalue(), options), rounds=5)
    result = engine.process_bytes(buffer.getvalue(), options)
    single = SingleResult(result.image, result.media_type, result.model, result.confidence, result.mask)
    print("1920 x 1080 photo, ms (median):")
    print(f"  worker: decode, network, post-processing, PNG + mask      {worker_ms:7.1f}")
    print(f"  web: foreground box from the mask (X-Foreground-*)         {median_ms(lambda: _foreground(single)):7.1f}")
    print(f"  web: format=zip (color.jpg + alpha.png)                    {median_ms(lambda: _zip(single)):7.1f}")


if __name__ == "__main__":
    main()
