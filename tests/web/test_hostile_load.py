"""The intake under hostile load, over real sockets on loopback (issue 18's judging list).

A live server as production builds it (``build_server``: guarded waitress) in a thread, on the shared real Redis
and, where images are processed, the shared real worker. Bounds are generous (seconds, not milliseconds) except
the readiness probe's, which is a cached dictionary read. Numbers for these scenarios: bench/intake_probe.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from matteflow.settings import Settings
from matteflow.web.server import build_server
from matteflow.workers import heartbeat
from matteflow.workers.jobstore import make_redis

from .conftest import encode, png_header_only, portrait
from .helpers import serving_in_thread

pytestmark = pytest.mark.timeout(180)


def healthz_seconds(url: str) -> float:
    started = time.perf_counter()
    response = requests.get(url + "/healthz", timeout=10)
    assert response.status_code == 200
    return time.perf_counter() - started


@pytest.fixture
def guarded(service_settings: Settings) -> Iterator[tuple[str, Any]]:
    """A live guarded server: 20 MB limit, 6 request threads (2 for single-image calls), 2 s to send headers,
    64 connections per client."""
    settings = service_settings.replace(
        max_upload_mb=20,
        web_threads=6,
        matte_max_in_flight=8,  # bounded to 6 - 4 = 2 by the threads kept for the rest
        web_header_timeout_s=2.0,
        web_client_connection_limit=64,
    )
    server = build_server(settings, "127.0.0.1", 0)
    with serving_in_thread(server) as url:
        yield url, server


def open_slow_clients(port: int, source: str, count: int, trickle: bool) -> list[socket.socket]:
    """``count`` connections from ``source`` that send headers with a lying Content-Length and a few bytes of
    body, or (``trickle``) headers that never end, which the caller feeds a byte now and then."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n")
        sock.sendall(b"X-Slow: " if trickle else b"Content-Length: 1000000\r\n\r\npartial body")
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed (or answered and is closing) this connection: it is readable, at EOF or with an
    answer such as the 503 of the per-client limit; a connection still held just times out."""
    sock.settimeout(0.05)
    try:
        sock.recv(4096, socket.MSG_PEEK)
    except TimeoutError:
        return False
    except OSError:
        pass  # reset by the server
    return True


def test_200_idle_or_trickling_connections_leave_healthz_fast_and_are_closed(guarded: tuple[str, Any]) -> None:
    url, server = guarded
    port = int(server.effective_port)
    # From four addresses (50 each, under the per-client limit): all 200 are accepted and held at once.
    held = []
    for number, source in enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")):
        held += open_slow_clients(port, source, 50, trickle=number % 2 == 1)
    try:
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.5):
                for sock in held[100:]:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            latencies = [healthz_seconds(url) for _ in range(10)]
            assert max(latencies) < 1.0, latencies
            # The header deadline (2 s here) closes idle and trickling clients alike, well within 15 s.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not all(closed_by_server(s) for s in held):
                time.sleep(0.5)
            assert all(closed_by_server(s) for s in held)
            assert server.timed_out_requests >= 200
        finally:
            stop.set()
            trickler.join()
    finally:
        for sock in held:
            sock.close()
    assert healthz_seconds(url) < 1.0


def test_one_client_cannot_take_more_than_its_share(guarded: tuple[str, Any]) -> None:
    url, server = guarded
    held = open_slow_clients(int(server.effective_port), "127.0.0.6", 64, trickle=True)
    try:
        extra = socket.create_connection(
            ("127.0.0.1", int(server.effective_port)), timeout=5, source_address=("127.0.0.6", 0)
        )
        extra.settimeout(5)
        answer = extra.recv(4096)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"Retry-After" in answer and b"too_many_connections" in answer
        assert server.refused_connections >= 1
        # Other clients are not affected.
        assert requests.get(url + "/api/v1/openapi.json", timeout=5).status_code == 200
    finally:
        for sock in held:
            sock.close()


def send_oversize(port: int, chunked: bool, total: int = 200 * 1024 * 1024) -> tuple[int, bytes]:
    """Send up to ``total`` bytes of body; stop as soon as the server answers. (bytes sent, answer head)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % total
    sock.sendall(head)
    block = b"\0" * 65536
    frame = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
    sent = 0
    answer = b""
    try:
        while sent < total:
            sock.setblocking(False)
            try:
                answer = sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            sock.settimeout(10)
            sock.sendall(frame)
            sent += len(block)
    except OSError:
        pass  # reset by the server after its answer
    sock.settimeout(10)
    with contextlib.suppress(OSError):
        while True:  # the whole answer: the server closes the connection after it
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    sock.close()
    return sent, answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversize_body_is_413_after_a_few_mb(guarded: tuple[str, Any], chunked: bool) -> None:
    url, server = guarded
    sent, answer = send_oversize(int(server.effective_port), chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/json" in answer and b"payload_too_large" in answer and b"20 MB" in answer
    limit = 20 * 1024 * 1024
    # Content-Length: answered from the headers alone; chunked: cut at the limit (plus socket buffers).
    assert sent <= (4 * 1024 * 1024 if not chunked else limit + 8 * 1024 * 1024), sent
    assert healthz_seconds(url) < 1.0


@pytest.mark.usefixtures("worker")
def test_16_single_image_calls_leave_healthz_fast_and_excess_gets_retry_after(guarded: tuple[str, Any]) -> None:
    url, _ = guarded
    image = encode(portrait(), "JPEG", quality=90)
    done = threading.Event()
    latencies: list[float] = []

    def call(_: int) -> requests.Response:
        return requests.post(url + "/api/v1/matte", files={"file": ("a.jpg", image)}, timeout=120)

    def watch() -> None:
        while not done.is_set():
            latencies.append(healthz_seconds(url))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(call, range(16)))
    finally:
        done.set()
        watcher.join()
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 2  # matte_max_in_flight=2: the first two always run
    for response in responses:
        if response.status_code == 503:
            assert response.json()["error"] == "busy"
            assert int(response.headers["Retry-After"]) >= 1
        else:
            assert response.headers["Content-Type"] == "image/png" and response.content.startswith(b"\x89PNG")
    assert latencies and max(latencies) < 1.0, latencies


@pytest.mark.usefixtures("worker")
def test_readyz_answers_in_milliseconds_from_heartbeats(guarded: tuple[str, Any]) -> None:
    url, _ = guarded
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        response = requests.get(url + "/readyz?workers=1", timeout=5)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        assert response.json()["workers"] >= 1
    assert statistics.median(timings) < 0.05, timings
    assert max(timings) < 1.0, timings


def test_heartbeats_count_fresh_workers_only(service_settings: Settings) -> None:
    client = make_redis(service_settings)
    before = heartbeat.count_alive(client)
    heartbeat.beat(client, "test-worker@fresh")
    assert heartbeat.count_alive(client) == before + 1
    # A beat older than the TTL (a worker killed without its stop step) is not counted.
    server_now = float(client.time()[0])
    client.zadd(heartbeat.HEARTBEAT_KEY, {"test-worker@dead": server_now - heartbeat.HEARTBEAT_TTL_S - 5})
    assert heartbeat.count_alive(client) == before + 1
    heartbeat.forget(client, "test-worker@fresh")
    heartbeat.forget(client, "test-worker@dead")
    assert heartbeat.count_alive(client) == before


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_upload_is_streamed_not_held_in_memory(service_settings: Settings, tmp_path: Path) -> None:
    """A 150 MB upload through ``matteflow web`` (a process of its own) raises its peak RSS by far less."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "MATTEFLOW_REDIS_URL": service_settings.redis_url,
        "MATTEFLOW_STORAGE_DIR": str(tmp_path),
        "MATTEFLOW_WEB_THREADS": "2",
    }
    code = f"import sys; from matteflow.web.server import main; sys.exit(main(['--port', '{port}']))"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/healthz", timeout=2)
                requests.get(url + "/api/v1/openapi.json", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.2)
        baseline = _peak_rss_kib(process.pid)
        size = 150 * 1024 * 1024
        # A valid PNG header followed by filler: the intake's header check passes, so the file is stored.
        payload = io.BytesIO(png_header_only(200, 200) + b"\0" * size)
        response = requests.post(url + "/api/v1/jobs", files={"files": ("big.png", payload)}, timeout=120)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        stored = next((tmp_path / "jobs" / job_id / "in").iterdir())
        assert stored.stat().st_size > size
        growth_mib = (_peak_rss_kib(process.pid) - baseline) / 1024
        print(f"web peak RSS grew by {growth_mib:.1f} MiB for a 150 MiB upload")
        assert growth_mib < 40, f"peak RSS grew by {growth_mib:.0f} MiB for a 150 MiB upload"
        assert requests.delete(f"{url}/api/v1/jobs/{job_id}", timeout=10).status_code == 200
        assert not list((tmp_path / "tmp").iterdir())  # the spooled part is gone with its request
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_slow_client_does_not_hold_the_shutdown_drain(service_settings: Settings) -> None:
    from matteflow.web.server import drain

    socket_map: dict[int, Any] = {}
    server = build_server(service_settings.replace(web_header_timeout_s=1.0), "127.0.0.1", 0, socket_map)
    held = open_slow_clients(int(server.effective_port), "127.0.0.7", 3, trickle=False)
    try:
        deadline = time.monotonic() + 5
        while len(server.active_channels) < 3 and time.monotonic() < deadline:  # accepted by the loop
            socket_map_loop(server, socket_map)
        started = time.monotonic()
        still_busy = drain(server, socket_map, grace_s=60)
        assert still_busy == 0
        assert time.monotonic() - started < 10  # the header deadline, not the 60 s grace
    finally:
        for sock in held:
            sock.close()


def socket_map_loop(server: Any, socket_map: dict[int, Any]) -> None:
    from waitress import wasyncore

    wasyncore.loop(timeout=0.1, use_poll=True, map=socket_map, count=1)
