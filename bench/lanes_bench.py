"""How long a batch waits behind a big one sent before it, side by side, never failing on time.

`matteflow up` (embedded Redis, one worker, the web app) is started twice on the same photos. Each time a big
batch is submitted, then, a moment later, a second one; printed: seconds from each submission to its first
result and to its job's end, and images/s over both.

- a small second batch (default): once with `MATTEFLOW_BULK_BATCH_FROM=0` (every batch in one
  first-come-first-served lane, as before the bulk lane), once with the big batch over the threshold (it goes
  to the bulk lane, served after smaller batches);
- `--second-big`: both batches in the bulk lane, once with `MATTEFLOW_BULK_WINDOW=0` (all of each sent at
  once: first come, first served) and once with the window (they take turns: workers/window.py).

    .venv/bin/python bench/lanes_bench.py --big 120 --small 5
    .venv/bin/python bench/lanes_bench.py --big 60 --small 60 --second-big
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


def run(label: str, env: dict[str, str], paths: list[Path], args: argparse.Namespace) -> dict[str, float]:
    storage = Path(tempfile.mkdtemp(prefix="matteflow-lanes-")) / "var"
    service = Service(storage, args, len(paths), env)
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
        first: dict[str, float] = {}
        while len(ended) < 2:
            for name, job_id in (("big", big_id), ("small", small_id)):
                status = service.status(job_id) if name not in ended else {}
                if status and name not in first and status["done"] + status["failed"] > 0:
                    first[name] = time.perf_counter()
                if status and status["state"] in ("done", "failed"):
                    ended[name] = time.perf_counter()
            time.sleep(0.2)
    finally:
        service.stop()
    result = {
        "small_first_s": first["small"] - started_small,
        "small_s": ended["small"] - started_small,
        "big_s": ended["big"] - started_big,
        "images_per_s": (len(big) + len(small)) / (max(ended.values()) - started_big),
    }
    print(
        f"{label:44s} second batch: first result {result['small_first_s']:6.1f} s, done {result['small_s']:6.1f} s"
        f"   first batch {result['big_s']:6.1f} s   {result['images_per_s']:5.2f} images/s overall"
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
    parser.add_argument("--second-big", action="store_true", help="both batches bulk: window off, then on")
    parser.add_argument("--window", type=int, default=64, help="MATTEFLOW_BULK_WINDOW for --second-big")
    args = parser.parse_args()
    count = args.big + args.small
    paths = sorted(photo_folder(count).glob("*.jpg"))[:count]
    print(f"{len(paths)} photos of 1920 x 1080; a batch of {args.big}, then one of {args.small} {args.gap:g} s later")
    if args.second_big:
        bulk = str(min(args.big, args.small))
        before = run(
            "first come, first served (BULK_WINDOW=0)",
            {"MATTEFLOW_BULK_BATCH_FROM": bulk, "MATTEFLOW_BULK_WINDOW": "0"},
            paths,
            args,
        )
        after = run(
            f"taking turns (BULK_WINDOW={args.window})",
            {"MATTEFLOW_BULK_BATCH_FROM": bulk, "MATTEFLOW_BULK_WINDOW": str(args.window)},
            paths,
            args,
        )
        change = "taking turns"
    else:
        before = run("one lane (MATTEFLOW_BULK_BATCH_FROM=0)", {"MATTEFLOW_BULK_BATCH_FROM": "0"}, paths, args)
        after = run(
            f"bulk lane (MATTEFLOW_BULK_BATCH_FROM={args.big})",
            {"MATTEFLOW_BULK_BATCH_FROM": str(args.big)},
            paths,
            args,
        )
        change = "the bulk lane"
    print(
        f"with {change} the second batch had its first result {before['small_first_s'] / after['small_first_s']:.1f}x "
        f"sooner and ended {before['small_s'] / after['small_s']:.2f}x sooner; the first took "
        f"{after['big_s'] / before['big_s']:.2f}x as long; "
        f"images/s ratio {after['images_per_s'] / before['images_per_s']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
