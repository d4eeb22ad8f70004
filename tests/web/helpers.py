"""Helpers shared by the web tests (fixtures live in conftest.py)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image


def noise_jpeg(seed: int, size: tuple[int, int] = (760, 760)) -> bytes:
    """A photo that barely compresses (random pixels): about 0.68 MB at 760 x 760, 1.2 MB at 1000 x 1000."""
    pixels = np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


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


class Origin:
    """A small image host: what it serves, and the Host headers it was asked with."""

    def __init__(self, photo: bytes) -> None:
        self.photo = photo
        self.hosts: list[str] = []
        self.flaky_calls = 0
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                origin.hosts.append(self.headers.get("Host", ""))
                path = self.path.split("?", 1)[0]
                if path.startswith("/photos/"):
                    self._send(200, origin.photo)
                elif path == "/redirect":
                    self._redirect("/photos/moved.jpg")
                elif path == "/loop":
                    self._redirect("/loop")
                elif path == "/to-metadata":
                    self._redirect("http://169.254.169.254/latest/meta-data/")
                elif path == "/flaky.jpg":
                    origin.flaky_calls += 1
                    if origin.flaky_calls == 1:
                        self._send(503, b"busy, come back")
                    else:
                        self._send(200, origin.photo)
                elif path == "/big.jpg":
                    self._send(200, origin.photo + bytes(2 * 1024 * 1024))
                elif path == "/slow.jpg":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(origin.photo)))
                    self.end_headers()
                    self.wfile.write(origin.photo[:100])
                    self.wfile.flush()
                    time.sleep(3)
                    self.wfile.write(origin.photo[100:])
                else:
                    self._send(404, b"not here")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
