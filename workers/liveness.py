"""Whether a worker's consumer is alive, for the probes on its metrics port (``/livez``, ``/readyz``).

The metrics port is served by a thread of the Celery main process, so answering ``/metrics`` proves only
that this thread runs: a consumer that stopped fetching tasks (wedged event loop, a crash it never recovered
from) would stay "live" for ever. A bootstep of the consumer (``app.ConsumerHeartbeatStep``) beats on the
consumer's own timer instead; the probes read how long ago it last beat and what it saw then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Beat:
    at: float  # monotonic seconds
    consuming: bool  # the consumer blueprint was running
    connected: bool  # and its broker connection was up


class ConsumerHeartbeat:
    """The last beat of this process' consumer. Thread-safe: the consumer beats, the HTTP thread reads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Beat | None = None

    def beat(self, *, consuming: bool, connected: bool) -> None:
        with self._lock:
            self._last = Beat(self._clock(), consuming, connected)

    def alive(self, max_age_s: float) -> tuple[bool, str]:
        """Liveness: the consumer beat within ``max_age_s`` while it was consuming.

        While the broker is down the consumer reconnects in a blocking loop and does not beat: ``max_age_s``
        plus the probe's failure window is how long an outage a worker rides out before it is restarted,
        so keep it well above a Redis restart (seconds)."""
        with self._lock:
            last = self._last
        if last is None:
            return False, "the consumer has not started"
        age = self._clock() - last.at
        if age > max_age_s:
            return False, f"the consumer last beat {age:.0f}s ago (limit {max_age_s:g}s)"
        if not last.consuming:
            return False, "the consumer is not running"
        return True, f"the consumer beat {age:.1f}s ago"

    def ready(self, max_age_s: float) -> tuple[bool, str]:
        """Readiness: alive and connected to the broker (it can take tasks now)."""
        ok, why = self.alive(max_age_s)
        if ok:
            with self._lock:
                connected = self._last is not None and self._last.connected
            if not connected:
                return False, "the consumer is not connected to the broker"
        return ok, why


# The heartbeat of this process (the Celery main process is the one that consumes).
HEARTBEAT = ConsumerHeartbeat()
