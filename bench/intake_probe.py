"""Hostile-load probe of the web intake (issue 18): prints numbers, never passes or fails.

Starts its own ``matteflow up`` (embedded Redis, one worker, ``unet-random`` on the CPU, upload limit 20 MB)
on ``--port`` with a private storage folder, then measures over loopback:

- ``slow clients``: 200 connections from 127.0.0.2 that send headers with a lying Content-Length (half of them
  then trickle one byte every 2 s); /healthz latency from 127.0.0.1 while they are held, and how many the
  server has closed after 20 s.
- ``oversize``: a 200 MB body (Content-Length, then chunked) against the 20 MB limit: bytes sent before the
  413 arrived, and its media type.
- ``single-image calls``: 16 concurrent ``POST /api/v1/matte`` (1600x1200 JPEG) while /healthz is timed.
- ``readyz``: latency of 20 calls of ``/readyz?workers=1`` (Redis and a live worker).
- ``--memory``: peak RSS of a fresh process that runs one 7700x7700 PNG through the engine (and with
  ``max_side=2048``), or the refusal it gets.

    .venv/bin/python bench/intake_probe.py [--port 7818] [--memory]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ATTACK_SOURCE = "127.0.0.2"


def _jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((width, height))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _timed_get(url: str, timeout: float = 10.0) -> float:
    started = time.perf_counter()
    try:
        requests.get(url, timeout=timeout).raise_for_status()
    except requests.RequestException:
        return float("inf")
    return time.perf_counter() - started


def _fmt(seconds: float) -> str:
    return "timeout(>10s)" if seconds == float("inf") else f"{seconds * 1000:.0f} ms"


def probe_slow_clients(host: str, port: int, base: str, count: int = 200) -> None:
    sockets: list[socket.socket] = []
    refused = 0
    for number in range(count):
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.bind((ATTACK_SOURCE, 0))
            sock.connect((host, port))
            sock.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n")
            sock.sendall(b"Content-Length: 1000000\r\n\r\n--b\r\n" if number % 2 == 0 else b"X-Slow: ")
            sockets.append(sock)
        except OSError:
            refused += 1
            sock.close()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(2.0):
            for sock in sockets[1::2]:
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    latencies = [_timed_get(base + "/healthz") for _ in range(5)]
    time.sleep(20)
    latencies += [_timed_get(base + "/healthz") for _ in range(3)]
    closed = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            if sock.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
            else:
                closed += 1  # the server answered (e.g. 408/503) and will close
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    stop.set()
    for sock in sockets:
        sock.close()
    print(
        f"slow clients: {count} opened ({refused} refused at connect); /healthz while held: "
        f"{', '.join(_fmt(x) for x in latencies)}; closed by the server after 20 s: {closed}/{len(sockets)}"
    )


def _send_oversize(host: str, port: int, chunked: bool, total: int = 200 * 1024 * 1024) -> tuple[int, str]:
    sock = socket.create_connection((host, port), timeout=10)
    head = "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    sock.sendall(head.encode())
    block = b"\0" * 65536
    sent = 0
    answer = b""
    sock.setblocking(False)
    deadline = time.monotonic() + 120
    while sent < total and time.monotonic() < deadline:
        try:
            answer += sock.recv(65536)
            if answer:
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        payload = (b"%x\r\n" % len(block) + block + b"\r\n") if chunked else block
        try:
            sock.setblocking(True)
            sock.settimeout(5)
            sock.sendall(payload)
            sent += len(block)
            sock.setblocking(False)
        except OSError:
            break
    sock.settimeout(10)
    try:
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    except OSError:
        pass
    sock.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    media = next(
        (
            line.split(b":", 1)[1].strip().decode()
            for line in answer.split(b"\r\n")
            if line.lower().startswith(b"content-type")
        ),
        "?",
    )
    return sent, f"{status} ({media})"


def probe_oversize(host: str, port: int) -> None:
    for chunked in (False, True):
        sent, status = _send_oversize(host, port, chunked)
        kind = "chunked" if chunked else "Content-Length"
        print(f"oversize 200 MB ({kind}) vs 20 MB limit: {sent / 2**20:.1f} MB sent before the answer: {status}")


def probe_single_calls(base: str, concurrency: int = 16) -> None:
    image = _jpeg(1600, 1200)
    statuses: list[int] = []
    healthz: list[float] = []
    done = threading.Event()

    def call(_: int) -> int:
        try:
            return requests.post(base + "/api/v1/matte", files={"file": ("a.jpg", image)}, timeout=300).status_code
        except requests.RequestException:
            return 0

    def watch() -> None:
        while not done.is_set():
            healthz.append(_timed_get(base + "/healthz"))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(call, i) for i in range(concurrency)]
        time.sleep(0.5)
        watcher.start()
        statuses = [f.result() for f in futures]
    done.set()
    watcher.join()
    counts = {code: statuses.count(code) for code in sorted(set(statuses))}
    print(
        f"{concurrency} concurrent /api/v1/matte: statuses {counts} in {time.perf_counter() - started:.1f} s; "
        f"/healthz meanwhile: max {_fmt(max(healthz))}, median {_fmt(statistics.median(healthz))} (n={len(healthz)})"
    )


def probe_readyz(base: str) -> None:
    latencies = []
    codes = []
    for _ in range(20):
        started = time.perf_counter()
        response = requests.get(base + "/readyz?workers=1", timeout=10)
        latencies.append(time.perf_counter() - started)
        codes.append(response.status_code)
    print(
        f"/readyz?workers=1 x20: median {_fmt(statistics.median(latencies))}, max {_fmt(max(latencies))}, "
        f"statuses {sorted(set(codes))}"
    )


_MEMORY_CHILD = """
import io, json, resource, sys, time
import numpy as np
from PIL import Image
from matteflow.core.errors import MattingError
from matteflow.core.options import parse_options
from matteflow.core.engine import MatteEngine
from matteflow.core.model import load_model
side, max_side = int(sys.argv[1]), sys.argv[2]
from PIL import ImageDraw
picture = Image.new("RGB", (side, side), (40, 90, 200))
ImageDraw.Draw(picture).ellipse((side // 4, side // 6, 3 * side // 4, side), fill=(210, 150, 120))
buffer = io.BytesIO()
picture.save(buffer, "PNG")
data = buffer.getvalue()
del picture, buffer
engine = MatteEngine(load_model("unet-random", "cpu"), 60_000_000)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
options = parse_options({"max_side": max_side} if max_side != "none" else {})
started = time.perf_counter()
try:
    from matteflow.core import imageio
    check = getattr(imageio, "check_memory_budget", None)
    if check is not None:
        check(imageio.probe_image(data, 60_000_000), options.max_side, int(sys.argv[3]))
    result = engine.process_bytes(data, options)
    outcome = f"ok {result.width}x{result.height}"
except MattingError as exc:
    outcome = f"refused: {type(exc).__name__}: {exc}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"png_kb": len(data) // 1024, "outcome": outcome, "peak_mb": peak // 1024,
                  "before_mb": base // 1024, "seconds": round(time.perf_counter() - started, 1)}))
"""


def probe_memory(budget_mb: int) -> None:
    for max_side in ("none", "2048") if budget_mb else ("none",):
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, "7700", max_side, str(budget_mb)],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            print(f"memory 7700x7700 PNG, max_side={max_side}: failed: {out.stderr.strip()[-400:]}")
            continue
        found = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"memory 7700x7700 PNG ({found['png_kb']} KB), max_side={max_side}: {found['outcome']}; "
            f"peak RSS {found['peak_mb']} MB (model loaded: {found['before_mb']} MB), {found['seconds']} s"
        )


def _wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"matteflow up exited with {process.returncode}")
        try:
            if requests.get(base + "/readyz?workers=1", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit("matteflow up did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=7818)
    parser.add_argument("--memory", action="store_true", help="also measure the 7700x7700 PNG (slow)")
    parser.add_argument("--memory-only", action="store_true", help="only the 7700x7700 PNG measurement")
    parser.add_argument(
        "--budget-mb", type=int, default=1024, help="per-image budget for the check (0 = none: the old behaviour)"
    )
    args = parser.parse_args()
    if args.memory_only:
        probe_memory(args.budget_mb)
        return
    host, base = "127.0.0.1", f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory(prefix="matteflow-probe-") as storage:
        env = {
            **os.environ,
            "MATTEFLOW_STORAGE_DIR": storage,
            "MATTEFLOW_MODEL": "unet-random",
            "MATTEFLOW_DEVICE": "cpu",
            "MATTEFLOW_WORKER_CONCURRENCY": "2",
            "MATTEFLOW_MAX_UPLOAD_MB": "20",
            "MATTEFLOW_LOG_LEVEL": "WARNING",
            "MATTEFLOW_WORKER_METRICS_PORT": "0",
        }
        matteflow = Path(sys.executable).with_name("matteflow")
        log = open(Path(storage) / "up.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen([str(matteflow), "up", "--port", str(args.port)], env=env, stdout=log, stderr=log)
        try:
            _wait_ready(base, process)
            probe_readyz(base)
            probe_oversize(host, args.port)
            probe_slow_clients(host, args.port, base)
            probe_single_calls(base)
            probe_readyz(base)
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
    if args.memory:
        probe_memory(args.budget_mb)
    print(f"probe's own peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


if __name__ == "__main__":
    main()
