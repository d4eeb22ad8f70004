"""How long a small batch waits behind a big one, with one batch lane and with the bulk lane, side by side.

`matteflow up` (embedded Redis, one worker, the web app) is started twice on the same photos: once with
`MATTEFLOW_BULK_BATCH_FROM=0` (every batch in one first-come-first-served lane, as before the bulk lane) and
once with the big batch over the threshold (it goes to the bulk lane, served after smaller batches). Each
time a big batch is submitted, then, a moment later, a small one; printed: seconds from each submission to
its job's end, and images/s over both. Never fails on time.

    .venv/bin/python bench/lanes_bench.py --big 120 --small 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from service_bench import Service, photo_folder  # noqa: E402


def run(label: str, bulk_from: int, paths: list[Path], args: argparse.Namespace) -> dict[str, float]:
    storage = Path(tempfile.mkdtemp(prefix="matteflow-lanes-")) / "var"
    service = Service(storage, args, len(paths), {"MATTEFLOW_BULK_BATCH_FROM": str(bulk_from)})
    try:
        service.wait_ready()
        warm = service.submit(paths[:1])  # the model loaded before anything is timed
        while service.status(warm)["state"] not in ("done", "failed"):
            time.sleep(0.2)
        big, small = paths[: args.big], paths[args.big : args.big + args.small]
        started_big = time.perf_counter()
        big_id = service.submit(big)
        time.sleep(args.gap)
        started_small = time.perf_counter()
        small_id = service.submit(small)
        ended: dict[str, float] = {}
        while len(ended) < 2:
            for name, job_id in (("big", big_id), ("small", small_id)):
                if name not in ended and service.status(job_id)["state"] in ("done", "failed"):
                    ended[name] = time.perf_counter()
            time.sleep(0.2)
    finally:
        service.stop()
    result = {
        "small_s": ended["small"] - started_small,
        "big_s": ended["big"] - started_big,
        "images_per_s": (len(big) + len(small)) / (max(ended.values()) - started_big),
    }
    print(
        f"{label:44s} small batch {result['small_s']:6.1f} s   big batch {result['big_s']:6.1f} s   "
        f"{result['images_per_s']:5.2f} images/s overall"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", type=int, default=120, help="images in the big batch (sent first)")
    parser.add_argument("--small", type=int, default=5, help="images in the small batch (sent after --gap s)")
    parser.add_argument("--gap", type=float, default=2.0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--pool", default="")
    parser.add_argument("--chunk", type=int, default=1)
    args = parser.parse_args()
    count = args.big + args.small
    paths = sorted(photo_folder(count).glob("*.jpg"))[:count]
    print(f"{len(paths)} photos of 1920 x 1080; a batch of {args.big}, then one of {args.small} {args.gap:g} s later")
    one = run("one lane (MATTEFLOW_BULK_BATCH_FROM=0)", 0, paths, args)
    lanes = run(f"bulk lane (MATTEFLOW_BULK_BATCH_FROM={args.big})", args.big, paths, args)
    print(
        f"the small batch ended {one['small_s'] / lanes['small_s']:.1f}x sooner with the bulk lane; the big one "
        f"took {lanes['big_s'] / one['big_s']:.2f}x as long"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
