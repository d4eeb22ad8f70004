"""kill -9 of the busiest worker during a batch through ``matteflow up``: how long until the job is done?

Starts ``matteflow up`` (embedded Redis, one worker, the web app; production settings, the shipped model)
on its own storage folder, submits a batch over HTTP, waits until ``--kill-after`` items are done, then
SIGKILLs the worker:

- ``--target main`` (default): the ``matteflow worker`` main process, by pid (``kill -9 <pid>``);
- ``--target group``: the worker and its pool at once (an OOM kill of the container, a node lost);
- ``--target child``: the pool process that used the most CPU.

``matteflow up`` restarts the worker as it would after any crash. Prints the seconds from the kill to the
job's ``done``, the results in the ZIP, duplicates and every item's attempt count. The target is done within
150 s of the kill with every result exactly once. Never fails on time: it prints numbers.

    .venv/bin/python bench/worker_kill_recovery.py --images 60 --kill-after 10
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import redis
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "data" / "people"


def photos(count: int, side: int) -> list[tuple[str, bytes]]:
    """``count`` JPEGs made from the committed test photos (cycled, each a little different in size)."""
    sources = sorted(PHOTOS.glob("*.jpg"))
    out = []
    for i in range(count):
        image = Image.open(sources[i % len(sources)]).convert("RGB")
        scale = (side - (i % 7) * 8) / max(image.size)
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=88)
        out.append((f"photo_{i:03d}.jpg", buffer.getvalue()))
    return out


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (requests.RequestException, OSError, redis.RedisError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:g}s")


def worker_main(up: psutil.Process) -> psutil.Process:
    for child in up.children(recursive=False):
        if child.cmdline()[-1:] == ["worker"]:
            return child
    raise RuntimeError("no `matteflow worker` child of `matteflow up`")


def busiest_pool_process(worker: psutil.Process) -> psutil.Process:
    children = worker.children(recursive=True)
    return max(children, key=lambda p: sum(p.cpu_times()[:2]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--kill-after", type=int, default=10, help="kill once this many items are done")
    parser.add_argument("--side", type=int, default=800, help="longest side of the photos, pixels")
    parser.add_argument("--target", choices=("main", "group", "child"), default="main")
    parser.add_argument("--port", type=int, default=7813)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up this long after the kill")
    parser.add_argument("--storage", type=Path, help="default: a fresh temporary folder")
    args = parser.parse_args()

    storage = args.storage or Path(tempfile.mkdtemp(prefix="matteflow-kill-"))
    from matteflow.workers.procs import free_port

    redis_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTEFLOW_")}
    env.update(
        MATTEFLOW_STORAGE_DIR=str(storage),
        MATTEFLOW_EMBEDDED_REDIS_PORT=str(redis_port),
        MATTEFLOW_WORKER_METRICS_PORT=str(free_port()),
    )
    server = f"http://127.0.0.1:{args.port}"
    log_path = storage / "up.log"
    storage.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "matteflow", "up", "--port", str(args.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    store = redis.Redis(port=redis_port)
    try:
        wait_for(lambda: requests.get(f"{server}/readyz", timeout=2).status_code == 200, 180, "the service")
        files = [("files", (name, data, "image/jpeg")) for name, data in photos(args.images, args.side)]
        started = time.monotonic()
        response = requests.post(f"{server}/api/v1/jobs", files=files, timeout=120)
        response.raise_for_status()
        job_id = response.json()["id"]
        status_url = f"{server}/api/v1/jobs/{job_id}"

        def status() -> dict[str, Any]:
            return requests.get(status_url, timeout=10).json()

        wait_for(lambda: status()["done"] >= args.kill_after, 600, f"{args.kill_after} items done", 0.05)
        before = status()
        running = [item["index"] for item in before["items"] if item["state"] == "running"]
        worker = worker_main(psutil.Process(up.pid))
        victim = busiest_pool_process(worker) if args.target == "child" else worker
        if args.target == "group":
            os.killpg(worker.pid, signal.SIGKILL)
        else:
            victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        print(
            f"killed {args.target} pid {victim.pid} after {killed_at - started:.1f}s: "
            f"{before['done']}/{before['total']} done, running {running}"
        )
        stranded_done_s: float | None = None  # when every item running at the kill had ended
        deadline = killed_at + args.timeout
        while time.monotonic() < deadline:
            now = status()
            if stranded_done_s is None and all(now["items"][i]["state"] in ("done", "failed") for i in running):
                stranded_done_s = time.monotonic() - killed_at
            if now["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
        recovered = time.monotonic() - killed_at
        final = status()
        archive = requests.get(f"{server}/api/v1/jobs/{job_id}/results.zip", timeout=60)
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            names = [n for n in zipped.namelist() if n != "manifest.json"]
            manifest = json.loads(zipped.read("manifest.json"))
        attempts = {int(k): int(v) for k, v in store.hgetall(f"mf:job:{{{job_id}}}:attempts").items()}
        out_dir = storage / "jobs" / job_id / "out"
        out_files = [p.name for p in out_dir.iterdir() if not p.name.startswith(".")]
        duplicates = [name for name, n in Counter(names).items() if n > 1]
        print(f"job {final['state']} {recovered:.1f}s after the kill ({time.monotonic() - started:.1f}s in all)")
        ended = "never" if stranded_done_s is None else f"{stranded_done_s:.1f}s after it"
        print(f"the items running at the kill {running} ended: {ended}")
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
        print(
            f"results: {final['done']}/{final['total']} done, {final['failed']} failed; "
            f"ZIP {len(set(names))} results, duplicates {duplicates or 'none'}; out/ {len(out_files)} files; "
            f"manifest states {dict(Counter(e['state'] for e in manifest['items']))}"
        )
        print(f"attempts per item: {dict(sorted(Counter(attempts.values()).items()))} (attempts: items)")
        print(f"RESULT target={args.target} recovery_s={recovered:.1f} results={len(set(names))}/{args.images}")
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
