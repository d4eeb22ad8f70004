"""Item leases: how a dead or hung worker's items come back within a minute, whatever the broker does.

An item being processed holds a lease in Redis (owner = the task id, expiry on the Redis server's clock),
taken by ``JobStore.start_item``. The process running the task renews it from a heartbeat thread (this
module) every third of ``item_lease_s``; the reconciler's watchdog (``reconcile.requeue_expired_leases``)
puts every running item whose lease expired back to queued and sends it again.

- A worker killed outright (kill -9, OOM, node loss) stops renewing: its items are re-sent
  ``item_lease_s`` + ``lease_check_interval_s`` after its last heartbeat at the latest. The broker's own
  redelivery (visibility timeout, an hour) is no longer what recovery waits for.
- A frozen worker (SIGSTOP, a deadlock holding the GIL, a machine swapping to a halt) stops renewing too.
- A worker that is alive but makes no progress (a runaway network call) keeps its heartbeat, so the keeper
  stops renewing an item once it has run for ``task_time_limit_s``: past the limit it is hung, like dead.
- A Celery retry keeps its task id, so the lease is extended over the countdown and the retry re-takes it.

Exactly-once is unaffected: the item state machine decides who ends an item, and a late finish of the old
owner (slow, not dead) ends it once; the re-sent copy then finds it ended and does nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from matteflow.settings import Settings

from .jobstore import JobStore

log = logging.getLogger(__name__)


@dataclass
class _Held:
    job_id: str
    owner: str
    indices: set[int]
    started: float = field(default_factory=time.monotonic)


class LeaseKeeper:
    """Renews the leases this process holds, from one daemon thread, until they are released."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.lease_s = settings.item_lease_s
        self.hung_after_s = float(settings.task_time_limit_s)
        self._held: dict[int, _Held] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def holding(self, job_id: str, owner: str, indices: Iterable[int]) -> Iterator[None]:
        """Keep renewing ``owner``'s leases on ``indices`` while the block runs."""
        held = _Held(job_id, owner, set(indices))
        with self._lock:
            self._held[id(held)] = held
            self._ensure_thread()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(id(held), None)

    def _ensure_thread(self) -> None:
        # A forked pool process inherits the object but not the thread: start one per process.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="matteflow-lease-heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        interval = max(0.05, self.lease_s / 3)
        while True:
            self._wake.wait(interval)
            try:
                self.renew_once()
            except Exception:  # Redis briefly away: the next beat tries again, well within the lease
                log.warning("lease heartbeat failed; retrying in %.1fs", interval, exc_info=True)

    def renew_once(self) -> None:
        with self._lock:
            held = list(self._held.values())
        now = time.monotonic()
        for entry in held:
            if not entry.indices:
                continue
            if now - entry.started > self.hung_after_s:
                # Alive but past the task time limit: let the lease lapse so the watchdog re-sends the items.
                log.warning(
                    "job %s items %s: running for %.0fs, past the task time limit; no longer renewing their lease",
                    entry.job_id,
                    sorted(entry.indices),
                    now - entry.started,
                )
                entry.indices.clear()
                continue
            lost = self.store.renew_leases(entry.job_id, entry.owner, sorted(entry.indices), self.lease_s)
            entry.indices.difference_update(lost)


_keepers: dict[int, LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def lease_keeper(store: JobStore, settings: Settings) -> LeaseKeeper:
    """The process's keeper for ``store`` (one heartbeat thread per process, shared by the pool's threads)."""
    with _keepers_lock:
        keeper = _keepers.get(id(store))
        if keeper is None:
            keeper = _keepers[id(store)] = LeaseKeeper(store, settings)
        return keeper
