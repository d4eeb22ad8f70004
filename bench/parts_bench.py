"""What sending a batch in parts costs: ``matteflow submit`` of one folder to a server that takes it in one request
and to one whose upload limit makes it several parts (an open job: ``open=true``, ``POST .../files``,
``POST .../close``), side by side.

`matteflow up` (embedded Redis, one worker, the web app) is started once per case on the same photos; each
case runs the real CLI as a user would and prints: requests sent, seconds to the ZIP on disk, images/s, and
seconds from the command's start to the job's first finished image (with parts, images start while later
parts are still being sent). Never fails on time.

    .venv/bin/python bench/parts_bench.py --count 80 --part-mb 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from service_bench import Service, photo_folder  # noqa: E402

from matteflow.submit import collect_inputs, split_parts  # noqa: E402


def run(label: str, limit_mb: int, photos: Path, args: argparse.Namespace) -> dict[str, float]:
    storage = Path(tempfile.mkdtemp(prefix="matteflow-parts-")) / "var"
    count = len(list(photos.glob("*.jpg")))
    service = Service(storage, args, count, {"MATTEFLOW_MAX_UPLOAD_MB": str(limit_mb)})
    out = storage.parent / "results.zip"
    state = out.with_name(out.name + ".job.json")
    try:
        service.wait_ready()
        warm = service.submit(sorted(photos.glob("*.jpg"))[:1])  # the model loaded before anything is timed
        while service.status(warm)["state"] not in ("done", "failed"):
            time.sleep(0.2)
        command = [sys.executable, "-m", "matteflow", "submit", str(photos), "--server", service.base]
        command += ["-o", str(out), "--no-progress", "--poll-interval", "0.2"]
        started = time.perf_counter()
        proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        first_done = None
        while proc.poll() is None:
            if first_done is None and state.is_file():
                job = json.loads(state.read_text()).get("job") or {}
                if job.get("status_url"):
                    status = requests.get(service.base + job["status_url"], timeout=10).json()
                    if status["done"]:
                        first_done = time.perf_counter() - started
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        assert proc.returncode == 0, f"submit exited {proc.returncode}"
    finally:
        service.stop()
    size_mb = sum(p.stat().st_size for p in photos.glob("*.jpg")) / 2**20
    result = {"seconds": elapsed, "images_per_s": count / elapsed, "first_s": first_done or float("nan")}
    print(
        f"{label:34s} {size_mb:6.1f} MB under a {limit_mb:3d} MB limit   {elapsed:6.1f} s to the ZIP   "
        f"{result['images_per_s']:5.2f} images/s   first image done after {result['first_s']:5.1f} s"
        + f"   ({len(split_parts(collect_inputs([str(photos)]), limit_mb))} request(s) of files)"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=80, help="1080p photos in the folder")
    parser.add_argument("--part-mb", type=int, default=8, help="the upload limit that makes it several parts")
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk", type=int, default=1)
    parser.add_argument("--pool", default="")
    parser.add_argument("--concurrency", type=int, default=0)
    args = parser.parse_args()
    photos = photo_folder(args.count)
    one = run("one request (limit 200 MB)", 200, photos, args)
    parts = run(f"in parts (limit {args.part_mb} MB)", args.part_mb, photos, args)
    print(f"parts / one request, time to the ZIP: {parts['seconds'] / one['seconds']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
