"""``matteflow web``: serve the app with waitress (a production WSGI server; never Flask's dev server).

Waitress is pure Python and multi-threaded: request threads only parse uploads, talk to Redis and stream
files, so threads (``MATTEFLOW_WEB_THREADS``) are the right unit; the heavy work runs in the workers.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer

from matteflow.settings import Settings

from .app import create_app

log = logging.getLogger("matteflow.web")

# Waitress buffers a whole request body (spilling to a temp file) before the app sees it, and answers its
# own plain-text 413 above max_request_body_size. Keep that ceiling well above MAX_UPLOAD_MB so the app's
# JSON 413 is what clients see for any realistic oversize upload.
_WAITRESS_BODY_CEILING_FACTOR = 4
_WAITRESS_MIN_BODY_CEILING = 1 << 30


def build_server(
    settings: Settings, host: str, port: int, socket_map: dict[int, Any] | None = None
) -> BaseWSGIServer | MultiSocketServer:
    """A bound (not yet running) waitress server for the app; ``port=0`` picks a free port. ``socket_map``
    is the asyncore map it registers its listener and connections in (:func:`serve` drains it)."""
    app = create_app(settings)
    return create_server(
        app,
        map=socket_map,
        host=host,
        port=port,
        threads=settings.web_threads,
        ident="matteflow",
        max_request_body_size=max(
            settings.max_upload_bytes * _WAITRESS_BODY_CEILING_FACTOR, _WAITRESS_MIN_BODY_CEILING
        ),
        # Batch uploads on slow links can take a while; don't cut a client off mid-body.
        channel_timeout=300,
    )


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, then drain: stop accepting, let the requests in progress finish (their
    responses sent) for up to ``settings.web_shutdown_grace_s``, then close.

    waitress's own stop gives running requests 5 s and stops the I/O loop first, so even a finished response
    was never sent: a 120 s single-image call or a large download died with every rollout.
    """
    socket_map: dict[int, Any] = {}
    server = build_server(settings, host, port, socket_map)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("MatteFlow web listening on http://%s:%s (%d threads)", host, port, settings.web_threads)
    while not stopping.is_set():
        _loop_once(server, socket_map)
    busy = drain(server, socket_map, settings.web_shutdown_grace_s)
    log.info("MatteFlow web stopped (%d request(s) cut off after the %gs grace)", busy, settings.web_shutdown_grace_s)


def _loop_once(server: BaseWSGIServer | MultiSocketServer, socket_map: dict[int, Any]) -> None:
    # One poll of at most 0.5 s: the loop comes back to look at the stop flag (a signal handler cannot stop
    # asyncore's loop from inside without dropping what is in flight).
    wasyncore.loop(timeout=0.5, use_poll=server.adj.asyncore_use_poll, map=socket_map, count=1)


def _busy_channels(socket_map: dict[int, Any]) -> list[HTTPChannel]:
    """Connections with a request being received, processed or answered (idle keep-alives are not busy)."""
    return [
        ch
        for ch in list(socket_map.values())
        if isinstance(ch, HTTPChannel) and (ch.requests or ch.total_outbufs_len or getattr(ch, "request", None))
    ]


def drain(server: BaseWSGIServer | MultiSocketServer, socket_map: dict[int, Any], grace_s: float) -> int:
    """Stop accepting, run the I/O loop until no connection is busy or ``grace_s`` passed, then close all.
    Returns how many connections were still busy at the end."""
    for listener in [obj for obj in list(socket_map.values()) if isinstance(obj, BaseWSGIServer)]:
        listener.accepting = False
        listener.del_channel()
        listener.socket.close()  # new connections are refused from here on
    deadline = time.monotonic() + max(0.0, grace_s)
    while (busy := _busy_channels(socket_map)) and time.monotonic() < deadline:
        _loop_once(server, socket_map)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
    wasyncore.close_all(socket_map)
    return len(busy)


def main(argv: list[str]) -> int:
    """Entry point of ``matteflow web [--host H] [--port P]`` (defaults: MATTEFLOW_WEB_HOST / _PORT)."""
    parser = argparse.ArgumentParser(prog="matteflow web", description="Serve the MatteFlow page and HTTP API.")
    parser.add_argument("--host", help="interface to listen on (default: MATTEFLOW_WEB_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: MATTEFLOW_WEB_PORT, 7860)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        parser.error(str(exc))
    host = args.host if args.host is not None else settings.web_host
    port = args.port if args.port is not None else settings.web_port
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(settings.replace(web_host=host, web_port=port), host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc)
        return 1
    return 0
