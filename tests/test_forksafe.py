"""matteflow.forksafe with real forks: a child forked while a background thread is at work never inherits what
that thread held (the Celery prefork pool's first-task hang, workers/README.md)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from matteflow.forksafe import ForkGate, fork_deferred

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns on any fork of a process with threads: forking with threads is what is tested here.
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
]


def fork_and_wait(in_child: Callable[[], bool], timeout: float = 20.0) -> str:
    """Fork; the child runs ``in_child`` and exits 0 when it returns True. Returns "ok", "failed" or "hung"
    (a child still running after ``timeout`` is killed)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 2
        try:
            code = 0 if in_child() else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "ok" if os.waitstatus_to_exitcode(status) == 0 else "failed"
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"


def start_in_thread(work: Callable[[], None], gate: ForkGate | None = None) -> tuple[threading.Thread, threading.Event]:
    """Run ``work`` inside fork_deferred() (or ``gate``) in a thread; the event is set once the thread is inside."""
    inside = threading.Event()

    def run() -> None:
        with gate.deferring() if gate is not None else fork_deferred():
            inside.set()
            work()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert inside.wait(10)
    return thread, inside


def test_a_fork_waits_until_a_thread_releases_the_lock_it_holds() -> None:
    held = threading.Lock()
    held.acquire()
    thread, _ = start_in_thread(lambda: (time.sleep(0.5), held.release()))

    # Without the gate the child would copy the lock locked, with no thread left to release it.
    assert fork_and_wait(lambda: held.acquire(timeout=5)) == "ok"
    thread.join(5)


def test_a_child_forked_while_a_thread_imports_a_module_can_import_it(tmp_path: Path) -> None:
    # What py-spy showed in a hung pool process: its first Redis connection waiting for the import lock of
    # encodings.idna, which a heartbeat thread of the parent held at the fork.
    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(0.5)\nVALUE = 42\n")
    sys.path.insert(0, str(tmp_path))
    try:
        started = threading.Event()

        def import_slowly() -> None:
            started.set()
            import slow_to_import  # noqa: F401

        thread, _ = start_in_thread(import_slowly)
        assert started.wait(5)
        time.sleep(0.1)  # well inside the module's half second

        def child_imports() -> bool:
            import slow_to_import

            return slow_to_import.VALUE == 42

        assert fork_and_wait(child_imports) == "ok"
        thread.join(5)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slow_to_import", None)


def test_threads_wait_while_a_fork_is_prepared_and_go_on_after_it() -> None:
    # Units of work after the fork run normally in both processes (the child's gate is a fresh one).
    assert fork_and_wait(lambda: _one_unit_in_a_thread()) == "ok"
    assert _one_unit_in_a_thread()


def _one_unit_in_a_thread() -> bool:
    ran = threading.Event()
    thread, _ = start_in_thread(ran.set)
    thread.join(5)
    return ran.is_set()


def test_a_fork_does_not_wait_for_ever_on_a_stuck_thread() -> None:
    release = threading.Event()
    thread, _ = start_in_thread(lambda: release.wait(30), gate=ForkGate(wait_s=0.5))
    started = time.monotonic()
    try:
        assert fork_and_wait(lambda: True) == "ok"
        assert time.monotonic() - started < 10
    finally:
        release.set()
        thread.join(5)
