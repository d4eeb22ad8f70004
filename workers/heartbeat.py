"""Worker liveness published in Redis, so readiness is one cheap read instead of a broadcast ping.

Each worker's main process writes ``(name, Redis server time)`` into one sorted set every
``HEARTBEAT_INTERVAL_S``; a worker counts as alive while its last beat is younger than ``HEARTBEAT_TTL_S``
(three beats, so one slow beat under load never flips readiness). Both sides use Redis's clock, never their
own: web and worker machines need not agree on the time. A worker that stops cleanly removes its entry.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import redis

from matteflow.forksafe import fork_deferred

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "matteflow:workers:heartbeat"
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 15.0

_BEAT = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 10 * tonumber(ARGV[2]))
return 1
"""

_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


def beat(client: redis.Redis, name: str) -> None:
    """Record that worker ``name`` is alive now (and drop entries long dead)."""
    client.eval(_BEAT, 1, HEARTBEAT_KEY, name, HEARTBEAT_TTL_S)


def forget(client: redis.Redis, name: str) -> None:
    """Worker ``name`` stopped: it no longer counts."""
    client.zrem(HEARTBEAT_KEY, name)


def count_alive(client: redis.Redis) -> int:
    """How many workers beat within the last ``HEARTBEAT_TTL_S`` seconds (one round trip)."""
    return int(client.eval(_COUNT, 1, HEARTBEAT_KEY, HEARTBEAT_TTL_S))


class HeartbeatThread(threading.Thread):
    """Beats for one worker until stopped; a Redis outage is logged once and beating resumes after it."""

    def __init__(self, client: redis.Redis, name: str, interval: float = HEARTBEAT_INTERVAL_S) -> None:
        super().__init__(name="matteflow-heartbeat", daemon=True)
        self.client = client
        self.worker_name = name
        self.interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        failing = False
        while True:
            # Runs in the Celery main process, which forks pool processes: a fork waits for the beat to end
            # (matteflow/forksafe.py); between beats the thread only sleeps.
            with fork_deferred():
                try:
                    beat(self.client, self.worker_name)
                    if failing:
                        log.info("heartbeat: Redis reachable again")
                    failing = False
                except redis.RedisError as exc:
                    if not failing:
                        log.warning("heartbeat: cannot reach Redis (%s); retrying every %g s", exc, self.interval)
                    failing = True
            if self._stopped.wait(self.interval):
                return

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped.set()
        self.join(timeout)
        with contextlib.suppress(redis.RedisError):  # else it ages out after HEARTBEAT_TTL_S
            forget(self.client, self.worker_name)
