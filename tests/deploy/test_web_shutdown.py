"""`matteflow web` on SIGTERM (what Kubernetes sends after the preStop pause): it stops accepting but lets a
request in progress finish and sends its response. waitress's own stop gave it 5 s and stopped the I/O loop
first, so even a finished response never reached the client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A single-image call with no worker: the web waits this long, then answers 504. It stands for any long
# request (the real wait is 120 s, a large download takes as long as the link).
WAIT_S = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_lets_the_request_in_progress_finish(
    redis_url: str, tmp_path: Path, make_jpeg: Callable[..., bytes]
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATTEFLOW_", "PROMETHEUS_"))}
    env.update(
        MATTEFLOW_REDIS_URL=redis_url,
        MATTEFLOW_STORAGE_DIR=str(tmp_path / "storage"),
        MATTEFLOW_SINGLE_IMAGE_TIMEOUT_S=str(WAIT_S),
        MATTEFLOW_WEB_SHUTDOWN_GRACE_S="30",
    )
    log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen(
        [sys.executable, "-m", "matteflow", "web", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and web.poll() is None, (tmp_path / "web.log").read_text()
            time.sleep(0.2)

        answers: list[requests.Response | Exception] = []

        def long_request() -> None:
            try:
                files = {"file": ("p.jpg", make_jpeg(seed=1), "image/jpeg")}
                answers.append(requests.post(f"{base}/api/v1/matte", files=files, timeout=60))
            except requests.RequestException as exc:
                answers.append(exc)

        caller = threading.Thread(target=long_request)
        caller.start()
        time.sleep(1.0)  # the request is in progress
        sent_at = time.monotonic()
        web.send_signal(signal.SIGTERM)
        time.sleep(0.8)
        with pytest.raises(requests.ConnectionError):  # no new connections once draining
            requests.get(f"{base}/healthz", timeout=2)
        caller.join(60)
        (answer,) = answers
        assert isinstance(answer, requests.Response), f"the request in progress was cut off: {answer!r}"
        assert answer.status_code == 504 and answer.json()["error"] == "timeout"
        assert web.wait(30) == 0
        # it left as soon as the last request was answered, not at the end of the grace period
        assert time.monotonic() - sent_at < WAIT_S + 10
    finally:
        if web.poll() is None:
            web.kill()
            web.wait()
        log.close()
