"""Background threads in a process that forks: hold the fork off while one of them is at work.

``os.fork()`` copies a process with only the thread that called it. Whatever lock another thread held at that
moment stays held in the child, by a thread that does not exist there, and the child blocks for good the first
time it takes that lock. The Celery prefork main process forks its pool processes (at start, and again each
time one is replaced: ``worker_max_tasks_per_child``, memory limit, time limit, a killed process) while our
threads run there: the worker heartbeat, the reconciler and the metrics server. What they hold while they work
is not under our control: an import's module lock (a thread's first Redis connection imports
``encodings.idna`` through ``socket.getaddrinfo``; so does a pool process's first task), prometheus_client's
one lock for all multi-process values (a scrape sets the RSS gauge), kombu's and redis-py's pool locks.

So a thread runs each unit of work inside :func:`fork_deferred`, and a fork of the process waits (in an
``os.register_at_fork`` hook) until no such unit is running; between units the threads only sleep on an
``Event``, which the child never uses. A fork waits at most :data:`FORK_WAIT_S`: a unit stuck on a Redis that is
away (seconds of retries) is blocked in a socket, not in an import or a short critical section, and holding
the main process's event loop for longer would cost more than it saves.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

log = logging.getLogger(__name__)

# How long a fork waits for the units of work in progress to end (normally milliseconds: one Redis round trip,
# one sweep, one scrape).
FORK_WAIT_S = 5.0


class ForkGate:
    """Units of work run side by side (:meth:`deferring`); a fork waits until none runs and holds new ones back
    until it is done. Its hooks are registered with ``os.register_at_fork`` on first use."""

    def __init__(self, wait_s: float = FORK_WAIT_S) -> None:
        self.wait_s = wait_s
        self._registered = False
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._busy = 0
        self._forking = False

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """Run the block with forks of this process held off until it ends."""
        with self._cond:
            if not self._registered:
                # Registered late on purpose: "before" hooks run in reverse order of registration, so this one
                # waits for our threads before logging's hook (registered when logging was imported) takes the
                # logging lock they may need to finish.
                os.register_at_fork(
                    before=self._before_fork,
                    after_in_parent=self._after_fork_in_parent,
                    after_in_child=self._reset,
                )
                self._registered = True
            while self._forking:
                self._cond.wait()
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def _before_fork(self) -> None:
        with self._cond:
            self._forking = True
            quiet = self._cond.wait_for(lambda: self._busy == 0, timeout=self.wait_s)
            busy = self._busy
        if not quiet:
            log.warning(
                "fork: %d unit(s) of background work still running after %.0fs; forking anyway", busy, self.wait_s
            )

    def _after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()


_GATE = ForkGate()


def fork_deferred() -> AbstractContextManager[None]:
    """Run the block with forks of this process held off until it ends (at most :data:`FORK_WAIT_S`)."""
    return _GATE.deferring()
