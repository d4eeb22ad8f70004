"""`matteflow up`'s liveness probe of its worker, against a real HTTP server standing in for /livez."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from matteflow.service import LivenessProbe
from matteflow.workers.procs import free_port


class Livez:
    """A /livez that answers with whatever status the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.requests = 0
        livez = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                livez.requests += 1
                self.send_response(livez.status)
                self.end_headers()
                self.wfile.write(b"the consumer last beat 61s ago")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/livez"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def livez() -> Iterator[Livez]:
    server = Livez()
    yield server
    server.server.shutdown()


def run_probes(probe: LivenessProbe, count: int) -> list[str | None]:
    results = []
    for _ in range(count):
        probe.next_at = 0.0  # due now: the test does not wait out the period
        results.append(probe.failed(now=1.0))
    return results


def test_a_worker_that_stops_answering_is_reported_after_the_allowed_failures(livez: Livez) -> None:
    probe = LivenessProbe(livez.url, period_s=1.0, failures_allowed=3)
    assert run_probes(probe, 2) == [None, None]  # live
    livez.status = 503
    results = run_probes(probe, 3)
    assert results[:2] == [None, None] and results[2] is not None and "503" in results[2]
    assert "61s ago" in results[2]  # the worker's own reason reaches the supervisor's log


def test_one_good_answer_resets_the_count(livez: Livez) -> None:
    probe = LivenessProbe(livez.url, period_s=1.0, failures_allowed=2)
    run_probes(probe, 1)
    livez.status = 503
    assert run_probes(probe, 1) == [None]
    livez.status = 200
    assert run_probes(probe, 1) == [None]
    livez.status = 503
    assert run_probes(probe, 1) == [None]  # one failure since the good answer, not two


def test_a_worker_that_never_answered_is_never_killed_for_it() -> None:
    # Still loading its model, or its metrics port was taken: killing it would be a restart loop.
    probe = LivenessProbe(f"http://127.0.0.1:{free_port()}/livez", period_s=1.0, failures_allowed=1)
    assert run_probes(probe, 5) == [None] * 5


def test_probes_wait_for_their_period(livez: Livez) -> None:
    probe = LivenessProbe(livez.url, period_s=60.0, failures_allowed=1)
    probe.reset(now=100.0)
    livez.status = 503
    assert probe.failed(now=120.0) is None and livez.requests == 0  # not due: no request made
    assert probe.failed(now=161.0) is None and livez.requests == 1
