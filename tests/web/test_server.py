"""``matteflow web``: waitress serves the app over real sockets; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from matteflow.web.server import build_server, main

from .helpers import serving_in_thread


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited early with {process.returncode}: {process.stderr.read().decode()}")
        try:
            return requests.get(url + "/healthz", timeout=2)
        except requests.ConnectionError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout} s")


def test_matteflow_web_serves_and_stops_on_sigterm(service_settings: Any, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "MATTEFLOW_REDIS_URL": service_settings.redis_url,
        "MATTEFLOW_STORAGE_DIR": str(tmp_path),
        "MATTEFLOW_WEB_THREADS": "2",
    }
    code = f"import sys; from matteflow.web.server import main; sys.exit(main(['--port', '{port}']))"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        health = _wait_healthy(url, process)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert health.headers["Server"] == "matteflow"  # waitress, not Werkzeug's development server
        page = requests.get(url + "/", timeout=5)
        assert page.status_code == 200 and "MatteFlow" in page.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        process.stderr.close()


def test_oversize_upload_over_http_is_json_413(service_settings: Any, job_client: Any) -> None:
    server = build_server(service_settings.replace(max_upload_mb=1), "127.0.0.1", 0)
    with serving_in_thread(server) as url:
        files = {"files": ("big.jpg", b"\xff" * (2 * 1024 * 1024))}
        response = requests.post(url + "/api/v1/jobs", files=files, timeout=30)
    assert response.status_code == 413
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "payload_too_large"


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "not-a-number"])
    assert exit_info.value.code == 2
