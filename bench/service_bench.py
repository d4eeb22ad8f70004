"""The whole service vs the in-process CLI on the same folder of 1080p JPEGs, side by side.

- CLI: ``matteflow matte FOLDER -o OUT`` as one process (model load included), as a user would run it.
- Service: ``matteflow up`` (embedded Redis, one worker, the web app), warmed up with one small job, then
  the folder is submitted over HTTP (``POST /api/v1/jobs``; the JobClient when the web app is missing),
  the job is followed to ``done`` and the ZIP is downloaded. Timed from submission to ZIP on disk.

Prints images/s of each, their ratio (target: service >= 0.8x CLI) and the worker's RSS (largest pool
process) when the job passes image 100 and image 1000 (target: < 10 % growth). Never fails on time.

    .venv/bin/python bench/service_bench.py --images 200
    .venv/bin/python bench/service_bench.py --images 1000 --device cuda --chunk 8   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run_bench import BENCH_DIR, build_photo_folder  # noqa: E402  (the lead's 1080p folder builder)

from matteflow.core.options import parse_options  # noqa: E402
from matteflow.settings import Settings  # noqa: E402
from matteflow.workers.client import JobClient  # noqa: E402
from matteflow.workers.procs import free_port  # noqa: E402


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:g}s")


def photo_folder(count: int) -> Path:
    """Exactly ``count`` 1080p JPEGs in their own folder (the CLI takes the folder as it is)."""
    folder = BENCH_DIR / f"photos_1080p_{count}"
    return build_photo_folder(folder, count)


def run_cli(photos: Path, out: Path, args: argparse.Namespace) -> float:
    """The CLI with the service's networks and its default request model (``auto``), as the service gets them:
    through MATTEFLOW_MODEL. (``--model default`` on the command line would name a model file to run on every
    image, people only, with no second opinion: not what the service does.)"""
    command = [sys.executable, "-m", "matteflow", "matte", str(photos), "-o", str(out), "-q", "--overwrite"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTEFLOW_")}
    env.update(MATTEFLOW_MODEL=args.model, MATTEFLOW_DEVICE=args.device)
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - started


def pool_rss(service: psutil.Process) -> int:
    """The largest RSS among the worker's processes (its pool does the work)."""
    sizes = []
    for proc in service.children(recursive=True):
        try:
            if "worker" in " ".join(proc.cmdline()):
                sizes.append(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return max(sizes, default=0)


class Service:
    """``matteflow up`` in a subprocess with its own storage, Redis port and web port."""

    def __init__(
        self, storage: Path, args: argparse.Namespace, count: int, extra_env: dict[str, str] | None = None
    ) -> None:
        self.redis_port, self.web_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MATTEFLOW_")}
        env.update(
            MATTEFLOW_STORAGE_DIR=str(storage),
            MATTEFLOW_MODEL=args.model,
            MATTEFLOW_DEVICE=args.device,
            MATTEFLOW_EMBEDDED_REDIS_PORT=str(self.redis_port),
            MATTEFLOW_WORKER_METRICS_PORT=str(free_port()),
            MATTEFLOW_TASK_CHUNK_SIZE=str(args.chunk),
            MATTEFLOW_MAX_FILES_PER_JOB=str(max(5000, count)),
            MATTEFLOW_MAX_UPLOAD_MB=str(max(200, count)),  # ~0.5 MB per 1080p JPEG
            MATTEFLOW_LOG_LEVEL="WARNING",
        )
        env.update(extra_env or {})
        if args.pool:
            env["MATTEFLOW_WORKER_POOL"] = args.pool
        if args.concurrency:
            env["MATTEFLOW_WORKER_CONCURRENCY"] = str(args.concurrency)
        self.log = open(storage.parent / "up.log", "wb")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "matteflow", "up", "--port", str(self.web_port)]
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = JobClient(Settings(redis_url=f"redis://127.0.0.1:{self.redis_port}/0", storage_dir=storage))
        self.http = False

    def wait_ready(self) -> None:
        wait_for(self.client.redis_ok, 60, "Redis")
        wait_for(lambda: self.client.workers_alive(1.0) >= 1, 120, "the worker")
        try:
            wait_for(lambda: requests.get(self.base + "/healthz", timeout=2).ok, 30, "the web app")
            self.http = True
        except TimeoutError:
            print("web app not answering: submitting through the JobClient instead")

    def submit(self, paths: list[Path]) -> str:
        if not self.http:
            files = [(p.name, p.read_bytes()) for p in paths]
            return self.client.create_job(files, parse_options())
        handles = [p.open("rb") for p in paths]
        try:
            files = [("files", (p.name, h, "image/jpeg")) for p, h in zip(paths, handles, strict=True)]
            answer = requests.post(self.base + "/api/v1/jobs", files=files, data={"format": "png"}, timeout=600)
        finally:
            for handle in handles:
                handle.close()
        answer.raise_for_status()
        return str(answer.json()["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        if self.http:
            return requests.get(f"{self.base}/api/v1/jobs/{job_id}", timeout=10).json()
        job = self.client.get_job(job_id)
        assert job is not None
        return job

    def download(self, job_id: str, target: Path) -> int:
        if self.http:
            with requests.get(f"{self.base}/api/v1/jobs/{job_id}/results.zip", stream=True, timeout=600) as r:
                r.raise_for_status()
                with target.open("wb") as out:
                    shutil.copyfileobj(r.raw, out)
        else:
            found = self.client.results_zip(job_id)
            assert found is not None
            shutil.copyfile(found[0], target)
        return target.stat().st_size

    def run_job(self, paths: list[Path], zip_path: Path, rss_marks: list[int]) -> tuple[float, dict[int, int]]:
        service = psutil.Process(self.proc.pid)
        rss: dict[int, int] = {}
        started = time.perf_counter()
        job_id = self.submit(paths)
        while True:
            job = self.status(job_id)
            for mark in rss_marks:
                if mark not in rss and job["done"] + job["failed"] >= mark:
                    rss[mark] = pool_rss(service)
            if job["state"] in ("done", "failed"):
                break
            time.sleep(0.25)
        self.download(job_id, zip_path)
        elapsed = time.perf_counter() - started
        if job["failed"]:
            print(f"note: {job['failed']} images failed")
        return elapsed, rss

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default="default", help="model spec (default: the shipped model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", type=int, default=0, help="worker processes (default: cores)")
    parser.add_argument("--pool", default="", help="worker pool (default: threads on a GPU, else prefork)")
    parser.add_argument("--chunk", type=int, default=1, help="images per task (GPU: batch size)")
    parser.add_argument("--rss-at", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args()

    photos = photo_folder(args.images)
    paths = sorted(photos.glob("*.jpg"))[: args.images]
    work = Path(tempfile.mkdtemp(prefix="matteflow-bench-"))
    results: dict[str, Any] = {"images": len(paths), "model": args.model, "device": args.device}
    try:
        if not args.skip_cli:
            cli_s = run_cli(photos, work / "cli-out", args)
            results["cli_images_per_s"] = len(paths) / cli_s
            print(f"CLI      {len(paths)} images in {cli_s:7.1f}s: {results['cli_images_per_s']:6.2f} images/s")
            # The CLI pays its start-up (imports, model load) per run, the warm service does not: show
            # the CLI without it too, from a one-image run.
            one = work / "one"
            one.mkdir()
            shutil.copy(paths[0], one / paths[0].name)
            startup_s = run_cli(one, work / "cli-one", args)
            if cli_s > startup_s:
                results["cli_images_per_s_after_startup"] = (len(paths) - 1) / (cli_s - startup_s)
                print(
                    f"CLI      without its {startup_s:.1f}s start-up: "
                    f"{results['cli_images_per_s_after_startup']:6.2f} images/s"
                )
        service = Service(work / "storage", args, len(paths))
        try:
            service.wait_ready()
            warm = paths[: max(2, args.concurrency or (os.cpu_count() or 1))]
            service.run_job(warm, work / "warmup.zip", [])  # every pool process loads its model
            service_s, rss = service.run_job(paths, work / "results.zip", sorted(args.rss_at))
        finally:
            service.stop()
        results["service_images_per_s"] = len(paths) / service_s
        via = "HTTP" if service.http else "JobClient"
        print(
            f"service  {len(paths)} images in {service_s:7.1f}s: {results['service_images_per_s']:6.2f} images/s "
            f"(submit over {via} -> ZIP downloaded)"
        )
        if "cli_images_per_s" in results:
            results["ratio_service_over_cli"] = results["service_images_per_s"] / results["cli_images_per_s"]
            print(f"ratio service / CLI: {results['ratio_service_over_cli']:.2f}x (target >= 0.8x)")
        if "cli_images_per_s_after_startup" in results:
            ratio = results["service_images_per_s"] / results["cli_images_per_s_after_startup"]
            results["ratio_service_over_cli_after_startup"] = ratio
            print(f"ratio service / CLI without its start-up: {ratio:.2f}x")
        for mark, size in sorted(rss.items()):
            print(f"worker RSS at image {mark}: {size / 2**20:.0f} MiB")
            results[f"worker_rss_mib_at_{mark}"] = size / 2**20
        if len(rss) >= 2:
            first, last = min(rss), max(rss)
            growth = rss[last] / rss[first] - 1
            results["worker_rss_growth"] = growth
            print(f"RSS growth image {first} -> {last}: {growth * 100:+.1f}% (target < 10%)")
        print(json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
