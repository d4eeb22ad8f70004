"""`matteflow up` and `matteflow worker` as processes: start-up checks, supervision, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import requests

from matteflow.core.options import parse_options
from matteflow.settings import Settings
from matteflow.workers.client import JobClient
from matteflow.workers.procs import EmbeddedRedis, WorkerProcess, free_port, settings_env

from .helpers import wait_for_job, wait_until

pytestmark = pytest.mark.integration


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda_available(), reason="this machine has a GPU")
def test_a_worker_asked_for_a_gpu_refuses_to_start_without_one(
    tmp_path: Path, redis_server: str, make_test_settings: Callable[..., Settings]
) -> None:
    settings = make_test_settings(redis_server, tmp_path, device="cuda", worker_queue="gpu-check")
    celery_worker = WorkerProcess(settings, name="gpu-check", log_path=tmp_path / "celery.log").start()
    assert celery_worker.proc.wait(90) != 0
    assert "no CUDA GPU" in celery_worker.log_tail()

    env = {**os.environ, **settings_env(settings)}
    runner = subprocess.run(
        [sys.executable, "-m", "matteflow", "worker"], env=env, capture_output=True, text=True, timeout=90
    )
    assert runner.returncode == 1
    assert "refusing to start" in runner.stderr and "cuda" in runner.stderr


def test_worker_usage_error_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "matteflow.workers.runner", "--concurrency", "many"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--concurrency" in result.stderr


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _worker_children(service: psutil.Process) -> list[psutil.Process]:
    """The `matteflow worker` process that `up` started (not its pool)."""
    found = []
    for child in service.children(recursive=False):
        try:
            if child.cmdline()[-1:] == ["worker"]:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _up_env(tmp_path: Path, redis_port: int, **extra: str) -> dict[str, str]:
    """The environment of a `matteflow up` under test: this test's storage and Redis port, free ports for
    the metrics servers (never the defaults another run may hold), the random-weights model on the CPU."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTEFLOW_")}
    env.update(
        MATTEFLOW_STORAGE_DIR=str(tmp_path / "storage"),
        MATTEFLOW_MODEL="unet-random",
        MATTEFLOW_DEVICE="cpu",
        MATTEFLOW_WORKER_CONCURRENCY="1",
        MATTEFLOW_EMBEDDED_REDIS_PORT=str(redis_port),
        MATTEFLOW_WORKER_METRICS_PORT=str(free_port()),
        MATTEFLOW_QUEUE_METRICS_PORT=str(free_port()),
        **extra,
    )
    return env


@pytest.mark.slow
def test_matteflow_up_restarts_a_dead_or_frozen_worker_and_stops_cleanly(tmp_path: Path, make_jpeg: Callable) -> None:
    redis_port, web_port = free_port(), free_port()
    # WORKER_LIVENESS_PERIOD_S: the freeze below is found in ~10 s instead of a minute.
    env = _up_env(tmp_path, redis_port, MATTEFLOW_WORKER_LIVENESS_PERIOD_S="3")
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "matteflow", "up", "--port", str(web_port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        settings = Settings(redis_url=f"redis://127.0.0.1:{redis_port}/0", storage_dir=tmp_path / "storage")
        client = JobClient(settings)
        wait_until(client.redis_ok, 60, "the embedded Redis")
        wait_until(lambda: client.workers_alive(timeout=1.0) >= 1, 90, "the worker")
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{web_port}/healthz"), 60, "the web app")
        job_id = client.create_job([("a.jpg", make_jpeg(seed=1)), ("b.jpg", make_jpeg(seed=2))], parse_options())
        assert wait_for_job(client, job_id, timeout=120)["done"] == 2

        process = psutil.Process(service.pid)
        (worker,) = _worker_children(process)
        os.killpg(worker.pid, signal.SIGKILL)  # the worker crashes; the supervisor must notice
        wait_until(lambda: [w.pid for w in _worker_children(process)] not in ([], [worker.pid]), 30, "a new worker")
        job_id = client.create_job([("c.jpg", make_jpeg(seed=3))], parse_options())
        assert wait_for_job(client, job_id, timeout=120)["done"] == 1

        # The web app crashes: nothing of a job lives there, so after the restart every job reads as before.
        (web,) = [c for c in process.children(recursive=False) if c.cmdline()[3:4] == ["web"]]
        os.killpg(web.pid, signal.SIGKILL)
        wait_until(lambda: not web.is_running() and _http_ok(f"http://127.0.0.1:{web_port}/healthz"), 60, "web")
        status = requests.get(f"http://127.0.0.1:{web_port}/api/v1/jobs/{job_id}", timeout=10).json()
        assert (status["state"], status["done"]) == ("done", 1)

        # The worker freezes whole (alive to the supervisor, its consumer and /livez silent): `up` probes
        # /livez like Kubernetes does, kills it and starts another, which takes the next job.
        (frozen,) = _worker_children(process)
        os.killpg(frozen.pid, signal.SIGSTOP)
        wait_until(lambda: [w.pid for w in _worker_children(process)] not in ([], [frozen.pid]), 60, "a live worker")
        assert not frozen.is_running() or frozen.status() == psutil.STATUS_ZOMBIE
        job_id = client.create_job([("d.jpg", make_jpeg(seed=4))], parse_options())
        assert wait_for_job(client, job_id, timeout=120)["done"] == 1
        assert "worker is not live" in log_path.read_text()

        descendants = process.children(recursive=True)
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0
        gone, alive = psutil.wait_procs(descendants, timeout=10)
        assert alive == [], f"left running: {alive}"
        assert any((tmp_path / "storage" / "redis").glob("appendonly.aof*")), "Redis persisted nothing"
    finally:
        if service.poll() is None:  # the test failed midway: take down what it started, nothing else
            leftovers = psutil.Process(service.pid).children(recursive=True)
            service.kill()
            service.wait(10)
            for child in leftovers:
                child.kill()
    assert "MatteFlow is up" in log_path.read_text()


@pytest.mark.slow
def test_ctrl_c_on_up_drains_the_worker_before_redis_stops(tmp_path: Path, make_jpeg: Callable) -> None:
    redis_port = free_port()
    env = _up_env(tmp_path, redis_port)
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        # Its own session and process group, like a shell's foreground job: Ctrl-C reaches the whole group.
        service = subprocess.Popen(
            [sys.executable, "-m", "matteflow", "up", "--port", str(free_port())],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        client = JobClient(Settings(redis_url=f"redis://127.0.0.1:{redis_port}/0", storage_dir=tmp_path / "storage"))
        wait_until(client.redis_ok, 60, "the embedded Redis")
        wait_until(lambda: client.workers_alive(timeout=1.0) >= 1, 90, "the worker")
        job_id = client.create_job([(f"{i}.jpg", make_jpeg(256, 320, seed=i)) for i in range(6)], parse_options())
        wait_until(lambda: "running" in client.store.item_states(job_id).values(), 120, "a running item", 0.02)

        os.killpg(service.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C

        assert service.wait(90) == 0
    finally:
        if service.poll() is None:
            leftovers = psutil.Process(service.pid).children(recursive=True)
            service.kill()
            service.wait(10)
            for child in leftovers:
                child.kill()
    redis_log = (tmp_path / "storage" / "redis" / "redis.log").read_text()
    assert "Received SIGINT" not in redis_log and "Received SIGTERM" in redis_log  # stopped by up, not by ^C
    up_log = log_path.read_text()
    assert up_log.index("stopped worker") < up_log.index("stopped embedded Redis")
    # What was running when ^C came was finished and recorded before Redis went down.
    redis = EmbeddedRedis(tmp_path / "storage" / "redis").start()
    try:
        states = JobClient(Settings(redis_url=redis.url, storage_dir=tmp_path / "storage")).store.item_states(job_id)
    finally:
        redis.stop()
    assert "running" not in states.values() and "done" in states.values(), states


def test_stopping_a_worker_whose_main_process_died_kills_its_pool(tmp_path: Path) -> None:
    # The main process exits (as after a kill -9) and leaves a "pool" process behind in its process group.
    code = (
        "import subprocess, sys\n"
        "pool = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(pool.pid, flush=True)\n"
    )
    log_path = tmp_path / "main.log"
    worker = WorkerProcess(Settings(storage_dir=tmp_path), command=[sys.executable, "-c", code], log_path=log_path)
    worker.start()
    assert worker.proc.wait(60) == 0
    pool = psutil.Process(int(log_path.read_text().split()[0]))
    assert pool.is_running()

    worker.stop(grace=1.0)

    gone, alive = psutil.wait_procs([pool], timeout=10)
    assert alive == []
