"""Helpers shared by the web tests (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask.testing import FlaskClient


def wait_for_job(client: FlaskClient, status_url: str, timeout: float = 90.0) -> dict[str, Any]:
    """Poll a job through the API until it ends; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(status_url).get_json()
        if body["state"] in ("done", "failed"):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"job did not finish in {timeout} s: {body}")
        time.sleep(0.1)


@contextmanager
def serving_in_thread(server: Any) -> Iterator[str]:
    """Run a waitress server (``create_server(..., port=0)``) in a thread; yields its base URL.

    Stopping closes the sockets from inside waitress' own loop (a trigger thunk): closing them from this
    thread under a running ``select()`` makes the loop die with EBADF.
    """
    thread = threading.Thread(target=server.run, name="waitress-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:

        def close_everything() -> None:
            for channel in list(server.active_channels.values()):
                channel.close()
            server.close()  # the listening socket and the trigger: the loop's map is now empty

        try:
            server.trigger.pull_trigger(close_everything)
        except OSError:
            # The loop already closed its trigger (it exits once its socket map is empty): nothing to stop.
            server.close()
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
        assert not thread.is_alive(), "the test server did not stop"
