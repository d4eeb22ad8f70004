"""A GPU worker at full speed: the whole worker path on a folder of 1080p photos, with GPU utilisation, GPU
memory and per-stage times. Prints numbers; never fails on time.

1. One image, in-process, side by side: today's path (MatteEngine: the network, then numpy/OpenCV
   post-processing and encoding in the calling thread) against the device path (DeviceMatteEngine: torch
   post-processing on the device). Median ms per image over the same photos, alternated so noise hits both.
2. The whole worker path: an embedded Redis and a real ``matteflow worker`` (threads pool, or ``--pool
   prefork`` as the prod overlay runs it; model and torch post-processing on the device, batches of
   ``--batch`` images per task, encoders = cores: threads, or ``--encode-pool processes``), fed one job of
   ``--images`` 1080p JPEGs through the JobClient, timed from submission to the last item ended.
   While it runs, GPU utilisation and memory are sampled from NVML (nvidia-ml-py, or nvidia-smi); at the end
   the worker's own ``/metrics`` give the stage times and its GPU memory metric.

Without CUDA it runs both parts on the CPU and says so: the >= 50 images/s target is for one GPU.

    .venv/bin/python bench/gpu_bench.py                      # on a GPU machine (`make bench` runs it there)
    .venv/bin/python bench/gpu_bench.py --images 24 --device cpu   # the same path on the CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
SIZE = (1920, 1080)


def build_photos(count: int) -> Path:
    """``count`` 1920x1080 JPEGs of people: ../shared/data when present, else the committed test photos
    (tests/data/people) cover-cropped with varied crops and mirrors, so every image is a real photo."""
    folder = BENCH_DIR / f"gpu-photos-1080p-{count}"
    if len(list(folder.glob("*.jpg"))) >= count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((ROOT.parent / "shared" / "data" / "people").rglob("*.jpg"))
    sources = sources or sorted((ROOT / "tests" / "data" / "people").glob("*.jpg"))

    def make(index: int) -> None:
        photo = Image.open(sources[(index * 7919) % len(sources)]).convert("RGB")
        centring = ((index * 37 % 100) / 100.0, (index * 53 % 100) / 100.0)
        photo = ImageOps.fit(photo, SIZE, method=Image.Resampling.BICUBIC, centering=centring)
        if index % 2:
            photo = ImageOps.mirror(photo)
        photo.save(folder / f"photo_{index:04d}.jpg", quality=90)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # Pillow releases the GIL while it resizes and encodes
        list(pool.map(make, range(count)))
    return folder


# -- GPU sampling ---------------------------------------------------------------------------------------------


class GpuSampler(threading.Thread):
    """Samples utilisation (%) and memory used (bytes) of GPU 0 every ``interval`` s: NVML, else nvidia-smi."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.cpu_samples: list[float] = []  # cores busy, machine-wide
        self.source = "none"
        self._stop_event = threading.Event()
        self._read = self._reader()

    def _reader(self) -> Any:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.source = "NVML"

            def read() -> tuple[float, float]:
                util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                return float(util), float(pynvml.nvmlDeviceGetMemoryInfo(handle).used)

            return read
        except Exception:  # no package, driver or GPU: try the command line tool
            pass
        if shutil.which("nvidia-smi"):
            self.source = "nvidia-smi"

            def read_smi() -> tuple[float, float]:
                query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
                line = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
                util, used_mib = (float(v) for v in line.split(","))
                return util, used_mib * 2**20

            return read_smi
        return None

    def run(self) -> None:
        import psutil

        psutil.cpu_percent()  # the first call only starts the interval
        while not self._stop_event.is_set():
            with contextlib.suppress(Exception):  # a lost sample is not worth the benchmark
                if self._read is not None:
                    self.samples.append(self._read())
            self._stop_event.wait(self.interval)
            # All cores: is the CPU side (decode, encode, Python) what the GPU waits for?
            self.cpu_samples.append(psutil.cpu_percent() * (os.cpu_count() or 1) / 100.0)

    def stop(self) -> dict[str, Any]:
        self._stop_event.set()
        if self.is_alive():
            self.join(5)
        cpu = {"cpu_cores_busy_mean": statistics.fmean(self.cpu_samples)} if self.cpu_samples else {}
        if not self.samples:
            return {"source": self.source, **cpu}
        utils = [u for u, _ in self.samples]
        return {
            "source": self.source,
            **cpu,
            "util_mean_pct": statistics.fmean(utils),
            "util_max_pct": max(utils),
            "memory_max_mib": max(m for _, m in self.samples) / 2**20,
        }


# -- 1. one image, both paths ---------------------------------------------------------------------------------


def compare_one_image(paths: list[Path], device: str, model_spec: str, rounds: int) -> dict[str, Any]:
    import torch

    from matteflow.core.device_engine import DeviceMatteEngine
    from matteflow.core.engine import MatteEngine
    from matteflow.core.model import load_model
    from matteflow.core.options import parse_options

    options = parse_options()
    # One onnxruntime thread: its idle threads spin after each call and would steal the cores from the
    # post-processing that follows (OpenCV's pool or torch's), a contention neither path has in a worker.
    numpy_engine = MatteEngine(load_model(model_spec, "cpu", threads=1), max_pixels=60_000_000)
    device_model = load_model(model_spec, device, threads=1)
    torch_engine = DeviceMatteEngine(device_model, max_pixels=60_000_000, device=device)
    datas = [p.read_bytes() for p in paths]
    engines = {"numpy (today)": numpy_engine, f"torch on {device}": torch_engine}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in engines}
    for engine in engines.values():  # warm-up: first-call allocations, cuDNN autotuning
        engine.process_bytes(datas[0], options)
    for _ in range(rounds):
        for data in datas:
            for name, engine in engines.items():
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                started = time.perf_counter()
                result = engine.process_bytes(data, options)
                seconds[name].append(time.perf_counter() - started)
                for stage, value in result.timings.items():
                    stages[name].setdefault(stage, []).append(value)
    torch_engine.close()
    report: dict[str, Any] = {}
    print(f"\n1. One 1080p image at a time, {len(datas)} photos x {rounds} rounds (median ms per image)")
    header = f"   {'path':22s} {'total':>8s}" + "".join(
        f" {s:>11s}" for s in ("decode", "inference", "postprocess", "encode")
    )
    print(header)
    for name in engines:
        medians = {stage: statistics.median(v) * 1000 for stage, v in stages[name].items()}
        total = statistics.median(seconds[name]) * 1000
        report[name] = {"total_ms": total, **{f"{k}_ms": v for k, v in medians.items()}}
        print(
            f"   {name:22s} {total:8.1f}"
            + "".join(
                f" {medians.get(s, float('nan')):11.1f}" for s in ("decode", "inference", "postprocess", "encode")
            )
        )
    names = list(engines)
    ratio = report[names[0]]["total_ms"] / report[names[1]]["total_ms"]
    post_ratio = report[names[0]]["postprocess_ms"] / report[names[1]]["postprocess_ms"]
    report["speedup_total"] = ratio
    report["speedup_postprocess"] = post_ratio
    print(f"   torch path vs today: {ratio:.2f}x whole image, {post_ratio:.2f}x post-processing (>1 = torch faster)")
    return report


# -- 1b. the engine alone, as a worker's threads drive it ------------------------------------------------------


class StackSampler(threading.Thread):
    """Where the other threads are, every ``interval`` s: the innermost frame of each (file:function), counted.
    A thread waiting (a lock, a future, a queue) shows there too, which is the point: what the pipeline waits on."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        me = threading.get_ident()
        while not self._stop_event.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                code = frame.f_code
                kind = names.get(ident, "?").split("_")[0].rstrip("-0123456789")
                key = f"{kind}: {Path(code.co_filename).name}:{code.co_name}:{frame.f_lineno}"
                self.counts[key] = self.counts.get(key, 0) + 1
            self.samples += 1

    def stop(self, top: int = 25) -> list[tuple[str, float]]:
        self._stop_event.set()
        self.join(5)
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])[:top]
        return [(key, count / max(1, self.samples)) for key, count in ranked]


def engine_throughput(paths: list[Path], args: argparse.Namespace, device: str) -> dict[str, Any]:
    """``--engine-threads`` threads each running chunks of ``--batch`` images through one DeviceMatteEngine
    (decode threads and encoders = cores, as a worker builds it), no queue, no Redis, no files: the
    ceiling the worker's own plumbing is measured against."""
    from matteflow.core.device_engine import DeviceMatteEngine
    from matteflow.core.encode_pool import EncodePool
    from matteflow.core.options import parse_options
    from matteflow.core.registry import ModelSet

    engine = DeviceMatteEngine(
        ModelSet.from_specs(device=device),
        max_pixels=60_000_000,
        device=device,
        encoder=EncodePool(args.encode_processes, kind=args.encode_pool),
        max_batch=args.batch,
    )
    options = parse_options(format="png", model=args.request_model)
    datas = [p.read_bytes() for p in paths]
    chunks = [datas[i : i + args.batch] for i in range(0, len(datas), args.batch)]
    try:
        for chunk in chunks[: args.engine_threads]:  # warm-up: models, cuDNN, encoder processes
            engine.process_many(chunk, options)
        gpu, stacks = GpuSampler(), StackSampler()
        gpu.start()
        stacks.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(args.engine_threads, thread_name_prefix="chunk") as pool:
            outcomes = [r for results in pool.map(lambda c: engine.process_many(c, options), chunks) for r in results]
        elapsed = time.perf_counter() - started
        where = stacks.stop()
        used = gpu.stop()
    finally:
        engine.close()
    failed = sum(1 for r in outcomes if not hasattr(r, "image"))
    print(
        f"\n1b. The engine alone: {len(datas)} images, {args.engine_threads} threads x chunks of {args.batch}: "
        f"{len(datas) / elapsed:.2f} images/s ({failed} failed), CPU cores busy "
        f"{used.get('cpu_cores_busy_mean', float('nan')):.1f} of {os.cpu_count()}, GPU utilisation "
        f"{used.get('util_mean_pct', float('nan')):.0f} %"
    )
    print("   where the threads are (share of samples, a thread per sample each):")
    for key, share in where:
        print(f"   {share:6.2f}  {key}")
    return {"images_per_s": len(datas) / elapsed, "failed": failed, "gpu": used, "stacks": where}


# -- 2. the whole worker path ---------------------------------------------------------------------------------


def scrape_metrics(ports: list[int]) -> dict[str, Any]:
    """Stage times summed over the workers' ``/metrics``; the GPU memory metric as each reports it."""
    from prometheus_client.parser import text_string_to_metric_families

    stage_sum: dict[str, float] = {}
    stage_count: dict[str, float] = {}
    gpu_used: dict[str, float] = {}
    for n, port in enumerate(ports):
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                stage = sample.labels.get("stage", "")
                if sample.name == "matteflow_stage_seconds_sum":
                    stage_sum[stage] = stage_sum.get(stage, 0.0) + sample.value
                elif sample.name == "matteflow_stage_seconds_count":
                    stage_count[stage] = stage_count.get(stage, 0.0) + sample.value
                elif sample.name == "matteflow_gpu_memory_used_bytes":
                    name = sample.labels.get("device", "?")
                    gpu_used[name if len(ports) == 1 else f"worker {n}, {name}"] = sample.value
    return {"stage_sum": stage_sum, "stage_count": stage_count, "gpu_memory_used_bytes_metric": gpu_used}


def stage_ms(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Mean ms per image of each stage between two scrapes (the measured job alone, not the warm-up)."""
    out = {}
    for stage, total in after["stage_sum"].items():
        count = after["stage_count"].get(stage, 0) - before["stage_count"].get(stage, 0)
        if count > 0:
            out[stage] = (total - before["stage_sum"].get(stage, 0.0)) / count * 1000
    return out


def run_worker_path(paths: list[Path], args: argparse.Namespace, device: str) -> dict[str, Any]:
    from matteflow.core.options import parse_options
    from matteflow.settings import Settings
    from matteflow.workers.client import JobClient
    from matteflow.workers.procs import EmbeddedRedis, WorkerProcess, free_port

    work = Path(tempfile.mkdtemp(prefix="matteflow-gpu-bench-"))
    redis = EmbeddedRedis(work / "redis").start()
    # Several worker processes may share the GPU (--workers): each its own Python, so its own GIL; the
    # encoder processes are shared out among them.
    encoders = args.encode_processes or max(1, (os.cpu_count() or 1) // args.workers)
    settings = Settings(
        redis_url=redis.url,
        storage_dir=work / "storage",
        model=args.model,
        device=device,
        worker_concurrency=args.concurrency,
        worker_pool=args.pool,
        gpu_batch_size=args.batch,
        task_chunk_size=args.batch,
        postprocess=args.postprocess,
        encode_processes=encoders,
        encode_pool=args.encode_pool,
        max_files_per_job=max(5000, len(paths)),
        log_level="WARNING",
    )
    ports = [free_port() for _ in range(args.workers)]
    workers = [
        WorkerProcess(
            settings.replace(worker_metrics_port=port),
            name=f"gpubench{n}",
            command=[sys.executable, "-m", "matteflow", "worker", "--name", f"gpubench{n}"],
            log_path=work / f"worker{n}.log",
        )
        for n, port in enumerate(ports)
    ]
    client = JobClient(settings)
    result: dict[str, Any] = {}
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready(client.celery, timeout=180)
        options = parse_options(format="png", model=args.request_model)
        files = [(p.name, p.read_bytes()) for p in paths]
        # Model load, cuDNN, pools: enough chunks for every thread of every worker.
        warm = client.create_job(files[: args.batch * args.concurrency * args.workers], options)
        wait_done(client, warm, 600)
        baseline = scrape_metrics(ports)
        sampler = GpuSampler()
        sampler.start()
        started = time.perf_counter()
        job_id = client.create_job(files, options)
        submitted = time.perf_counter()
        marks = wait_done(client, job_id, 3600, len(files))
        elapsed = time.perf_counter() - started
        gpu = sampler.stop()
        after = scrape_metrics(ports)
        job = client.get_job(job_id) or {}
        result = {
            "request_model": args.request_model,
            "images": len(files),
            "failed": job.get("failed"),
            "seconds": elapsed,
            "submit_seconds": submitted - started,
            "images_per_s": len(files) / elapsed,
            "gpu": gpu,
            "gpu_memory_used_bytes_metric": after["gpu_memory_used_bytes_metric"],
            "stage_ms_per_image": stage_ms(baseline, after),
        }
        if "all" in marks:  # the images alone, without the ZIP the job's end waits for
            result["images_seconds"] = marks["all"][0] - started
            result["zip_seconds"] = started + elapsed - marks["all"][0]
        if "tenth" in marks:  # steady state: from 10 % of the images ended to all of them
            t10, n10 = marks["tenth"]
            end = marks["all"][0] if "all" in marks else started + elapsed
            result["steady_images_per_s"] = (len(files) - n10) / max(1e-9, end - t10)
    finally:
        for worker in workers:
            worker.kill()
        redis.kill()
        log = work / "worker0.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        shutil.rmtree(work, ignore_errors=True)
    if result.get("failed"):
        print(f"note: {result['failed']} images failed; worker log tail:\n{tail}")
    return result


def wait_done(client: Any, job_id: str, timeout: float, total: int = 0) -> dict[str, tuple[float, int]]:
    """Poll the job until it is done (its ZIP written); returns when 10 % and all of its images had ended
    (perf_counter time, images ended then), as far as seen."""
    deadline = time.monotonic() + timeout
    marks: dict[str, tuple[float, int]] = {}
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job is not None:
            ended = job["done"] + job["failed"]
            if total and "tenth" not in marks and ended >= max(1, total // 10):
                marks["tenth"] = (time.perf_counter(), ended)
            if total and "all" not in marks and ended >= total:
                marks["all"] = (time.perf_counter(), ended)
            if job["state"] in ("done", "failed"):
                return marks
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} not done after {timeout:g}s")


def main() -> int:
    # SIGTERM (`timeout`, a device call's limit) unwinds like Ctrl-C, so the run's `finally` kills its workers
    # and Redis: they run in their own sessions and would otherwise outlive it, competing with the next run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=0, help="photos in the worker run (default 400 GPU, 24 CPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cuda | cpu")
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--request-model", default="auto", help="the jobs' model option in the worker run: auto | people | ensemble"
    )
    parser.add_argument("--batch", type=int, default=16, help="images per task and per device batch")
    parser.add_argument(
        "--concurrency", type=int, default=3, help="worker threads, or prefork children (chunks in flight)"
    )
    parser.add_argument(
        "--pool", default="threads", choices=["threads", "prefork"], help="the worker's Celery pool (prod: prefork)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the GPU")
    parser.add_argument("--encode-processes", type=int, default=0, help="encoders (0 = cores)")
    parser.add_argument("--encode-pool", default="threads", help="the encoders: threads | processes")
    parser.add_argument("--postprocess", default="torch", help="torch (the device path) | numpy | auto")
    parser.add_argument("--one-image", type=int, default=5, help="photos for the one-image comparison (0: skip)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=0, help="torch CPU threads in part 1 (0: torch's default)")
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument(
        "--engine-threads", type=int, default=0, help="1b: the engine alone with this many threads (0: skip)"
    )
    args = parser.parse_args()

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    cuda = torch.cuda.is_available()
    device = ("cuda" if cuda else "cpu") if args.device == "auto" else args.device
    count = args.images or (400 if device.startswith("cuda") else 24)
    print(
        f"matteflow gpu_bench: device {device}, torch {torch.__version__} ({torch.get_num_threads()} CPU threads), "
        f"{os.cpu_count()} CPU cores"
    )
    if device.startswith("cuda"):
        print(f"   GPU: {torch.cuda.get_device_name(0)}")
    else:
        print(
            "NOTE: no CUDA GPU here: everything below runs on the CPU (torch post-processing on the CPU). "
            "The >= 50 images/s target is for one GPU; these numbers are not that measurement."
        )
    photos = sorted(build_photos(max(count, args.one_image)).glob("*.jpg"))
    summary: dict[str, Any] = {"device": device, "cpu_cores": os.cpu_count(), "torch": torch.__version__}
    if args.one_image:
        summary["one_image"] = compare_one_image(photos[: args.one_image], device, args.model, args.rounds)
    if args.engine_threads:
        summary["engine_alone"] = engine_throughput(photos[:count], args, device)
    if not args.skip_worker:
        paths = photos[:count]
        print(
            f"\n2. Whole worker path: {len(paths)} 1080p JPEGs -> transparent PNG, {args.workers} `matteflow worker` "
            f"({args.pool} x{args.concurrency} each, {args.batch} images per task, post-processing {args.postprocess}, "
            f"model {args.request_model})"
        )
        run = run_worker_path(paths, args, device)
        summary["worker"] = run
        print(
            f"   {run['images']} images in {run['seconds']:.2f}s to the ZIP (submitting {run['submit_seconds']:.2f}s, "
            f"the ZIP after the last image {run.get('zip_seconds', float('nan')):.2f}s)"
        )
        images_s = run.get("images_seconds", run["seconds"])
        print(
            f"   images/s: {run['images_per_s']:.2f} to the ZIP, {run['images'] / images_s:.2f} to the last image, "
            f"{run.get('steady_images_per_s', float('nan')):.2f} steady (10 % to the last image)"
        )
        gpu = run["gpu"]
        if "util_mean_pct" in gpu:
            print(
                f"   GPU ({gpu['source']}): utilisation mean {gpu['util_mean_pct']:.0f} % "
                f"max {gpu['util_max_pct']:.0f} %, memory max {gpu['memory_max_mib']:.0f} MiB"
            )
        else:
            print(f"   GPU utilisation/memory: not sampled ({gpu['source']})")
        print(f"   CPU: {gpu.get('cpu_cores_busy_mean', float('nan')):.1f} of {os.cpu_count()} cores busy (mean)")
        metric = run["gpu_memory_used_bytes_metric"]
        shown = ", ".join(f"{d}: {v / 2**20:.0f} MiB" for d, v in metric.items()) or "absent (no GPU / no NVML)"
        print(f"   worker metric matteflow_gpu_memory_used_bytes: {shown}")
        stages = run["stage_ms_per_image"]
        print("   stage ms per image (worker /metrics, this job only; a batch's time is shared out over its images):")
        print("   " + "  ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items())))
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "gpu_bench.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"\nwritten: {BENCH_DIR / 'gpu_bench.json'}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
