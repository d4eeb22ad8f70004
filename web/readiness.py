"""What ``/readyz`` answers from: Redis reachable, and how many workers beat lately (workers/heartbeat.py;
``/readyz?workers=1`` requires one).

Cached for ``READINESS_CACHE_S``: the probe is a dictionary read, whatever the request rate, and at most one
request thread at a time refreshes it (the others answer the last known state rather than queue on Redis).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis

from matteflow.workers.client import JobClient

READINESS_CACHE_S = 1.0


@dataclass(frozen=True)
class Readiness:
    redis: bool
    workers: int
    checked_at: float

    @property
    def ready(self) -> bool:
        return self.redis and self.workers >= 1


class ReadinessCache:
    def __init__(self, jobs: JobClient, max_age_s: float = READINESS_CACHE_S) -> None:
        self.jobs = jobs
        self.max_age_s = max_age_s
        self._current: Readiness | None = None
        self._refreshing = threading.Lock()

    def get(self) -> Readiness:
        current = self._current
        if current is not None and time.monotonic() - current.checked_at < self.max_age_s:
            return current
        if not self._refreshing.acquire(blocking=current is None):
            return current  # type: ignore[return-value]  # another thread refreshes; answer the last state
        try:
            self._current = self._check()
            return self._current
        finally:
            self._refreshing.release()

    def _check(self) -> Readiness:
        redis_ok = self.jobs.redis_ok()
        workers = 0
        if redis_ok:
            try:
                workers = self.jobs.workers_alive()
            except redis.RedisError:
                redis_ok = False
        return Readiness(redis_ok, workers, time.monotonic())
