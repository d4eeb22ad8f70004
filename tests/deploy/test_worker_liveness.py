"""The worker's /livez and /readyz judge the Celery consumer's heartbeat, not the metrics thread."""

from __future__ import annotations

from matteflow.workers.liveness import ConsumerHeartbeat


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_consumer_that_never_started_is_not_alive() -> None:
    heartbeat = ConsumerHeartbeat(Clock())
    assert heartbeat.alive(40) == (False, "the consumer has not started")
    assert heartbeat.ready(40)[0] is False


def test_alive_while_beating_dead_once_the_beats_stop() -> None:
    clock = Clock()
    heartbeat = ConsumerHeartbeat(clock)
    heartbeat.beat(consuming=True, connected=True)
    clock.now += 39
    assert heartbeat.alive(40)[0] and heartbeat.ready(40)[0]
    clock.now += 2  # a wedged event loop: the metrics thread would still answer /metrics
    ok, why = heartbeat.alive(40)
    assert not ok and "41s ago" in why


def test_a_stopped_consumer_is_not_alive_even_if_beats_arrive() -> None:
    heartbeat = ConsumerHeartbeat(Clock())
    heartbeat.beat(consuming=False, connected=True)
    assert heartbeat.alive(40) == (False, "the consumer is not running")


def test_disconnected_is_alive_but_not_ready() -> None:
    heartbeat = ConsumerHeartbeat(Clock())
    heartbeat.beat(consuming=True, connected=False)
    assert heartbeat.alive(40)[0] is True
    assert heartbeat.ready(40) == (False, "the consumer is not connected to the broker")
