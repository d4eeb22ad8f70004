"""``matteflow web``: serve the app with waitress (a production WSGI server; never Flask's dev server).

Why waitress (docs/operations.md, "Web server"): its I/O thread reads every request whole (headers and body)
before a worker thread sees it, as a buffering proxy would, so a slow or idle client costs a socket, never a
thread. What it lacks we add here, in three small subclasses:

- ``GuardedServer``: at most ``web_client_connection_limit`` connections per client address (one more is
  answered 503 and closed at once), and a maintenance pass that closes a client that is too slow: headers not
  complete within ``web_header_timeout_s``, or a body arriving slower than ``web_min_upload_kib_s`` on average
  once ``web_header_timeout_s`` has passed. Idle keep-alive connections go after ``web_idle_timeout_s``.
- ``GuardedChannel``: remembers when its current request began, and answers waitress's own errors (the 413 for a
  body over the limit, sent as soon as the headers say so or a chunked body passes it) in the API's JSON form.
- ``ProbeFirstDispatcher``: ``/healthz`` and ``/readyz`` run on threads of their own, so a probe never waits
  behind uploads or single-image calls that hold the request threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import tempfile
import threading
import time
from types import FrameType
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from matteflow.settings import Settings

from .app import create_app
from .errors import HTTP_CODES, upload_limit_message

log = logging.getLogger("matteflow.web")

# Liveness and readiness probes: answered by threads no other request can occupy.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
PROBE_THREADS = 2
# Slack above MAX_UPLOAD_MB for the multipart framing around the files (boundaries, part headers, options).
_MULTIPART_SLACK_BYTES = 64 * 1024
_TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


class JsonErrorTask(ErrorTask):
    """waitress's own error answers (413, 400 for a malformed request...) as the API's JSON error body."""

    def execute(self) -> None:
        error = self.request.error
        status = int(error.code)
        message = str(error.body or error.reason)
        if status == 413:
            message = upload_limit_message(self.channel.server.max_upload_mb)
        body = json.dumps({"error": HTTP_CODES.get(status, "bad_request"), "message": message}).encode()
        self.status = f"{status} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class GuardedChannel(HTTPChannel):
    """One client connection; ``request_started`` is when the request now being read began to arrive."""

    error_task_class = JsonErrorTask
    request_started = 0.0

    def received(self, data: bytes) -> bool:
        before = self.request
        result = super().received(data)
        if self.request is not None and self.request is not before:
            self.request_started = time.time()
        return result


class ProbeFirstDispatcher:
    """Request threads for the app, plus ``PROBE_THREADS`` threads that only ever serve the probes."""

    def __init__(self, threads: int, probe_threads: int = PROBE_THREADS) -> None:
        self.main = ThreadedTaskDispatcher()
        self.main.set_thread_count(threads)
        self.probes = ThreadedTaskDispatcher()
        self.probes.set_thread_count(probe_threads)

    def add_task(self, channel: Any) -> None:
        request = channel.requests[0] if getattr(channel, "requests", None) else None
        # A request waitress could not parse has no command or path: it is answered by the main pool.
        command, path = getattr(request, "command", None), getattr(request, "path", None)
        is_probe = command in ("GET", "HEAD") and path in PROBE_PATHS
        (self.probes if is_probe else self.main).add_task(channel)

    def set_thread_count(self, count: int) -> None:
        self.main.set_thread_count(count)

    def shutdown(self, cancel_pending: bool = True, timeout: int = 5) -> bool:
        main = self.main.shutdown(cancel_pending, timeout)
        probes = self.probes.shutdown(cancel_pending, timeout)
        return main or probes


class GuardedServer(TcpWSGIServer):
    """waitress's TCP server with a per-client connection limit and deadlines for slow requests."""

    channel_class = GuardedChannel

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        self.max_upload_mb = settings.max_upload_mb
        self.client_connection_limit = settings.web_client_connection_limit
        self.header_timeout_s = settings.web_header_timeout_s
        self.min_body_bytes_per_s = settings.web_min_upload_kib_s * 1024
        self.refused_connections = 0
        self.timed_out_requests = 0
        super().__init__(*args, **kwargs)

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
            if accepted is None:
                return
            conn, addr = accepted
            self.set_socket_options(conn)
        except OSError:
            return
        addr = self.fix_addr(addr)
        client = addr[0] if isinstance(addr, tuple) else addr
        if self.client_connection_limit and self._connections_from(client) >= self.client_connection_limit:
            self._refuse(conn, client)
            return
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def _connections_from(self, client: str) -> int:
        return sum(1 for channel in list(self.active_channels.values()) if channel.addr[0] == client)

    def _refuse(self, conn: socket.socket, client: str) -> None:
        self.refused_connections += 1
        body = json.dumps(
            {
                "error": "too_many_connections",
                "message": f"more than {self.client_connection_limit} open connections from {client}; "
                "close idle ones and retry (MATTEFLOW_WEB_CLIENT_CONNECTION_LIMIT)",
            }
        ).encode()
        try:
            conn.setblocking(False)
            conn.send(_TOO_MANY_CONNECTIONS % (len(body), body))
        except OSError:
            pass
        conn.close()
        if self.refused_connections in (1, 10, 100) or self.refused_connections % 1000 == 0:
            log.warning(
                "refused %d connections over the per-client limit (latest from %s)", self.refused_connections, client
            )

    def maintenance(self, now: float) -> None:
        """Close idle keep-alive connections (waitress) and clients too slow to finish their request."""
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            request = getattr(channel, "request", None)
            if request is None or channel.requests or channel.will_close:
                continue  # between requests (idle rule above) or being served
            elapsed = now - channel.request_started
            if elapsed <= self.header_timeout_s:
                continue
            too_slow = not request.headers_finished or (
                request.body_bytes_received < self.min_body_bytes_per_s * elapsed
            )
            if too_slow:
                self.timed_out_requests += 1
                channel.will_close = True


def build_server(
    settings: Settings, host: str, port: int, socket_map: dict[int, Any] | None = None
) -> GuardedServer | MultiSocketServer:
    """A bound (not yet running) server for the app; ``port=0`` picks a free port. ``socket_map`` is the
    asyncore map it registers its listener and connections in (:func:`serve` drains it)."""
    app = create_app(settings)
    adj = Adjustments(
        host=host,
        port=port,
        threads=settings.web_threads,
        ident="matteflow",
        # waitress answers 413 from the Content-Length alone, or once a chunked body passes the limit.
        max_request_body_size=settings.max_upload_bytes + _MULTIPART_SLACK_BYTES,
        connection_limit=settings.web_connection_limit,
        channel_timeout=settings.web_idle_timeout_s,
        cleanup_interval=1,
        # poll(), not select(): select() cannot watch file descriptors above 1023.
        asyncore_use_poll=True,
    )
    dispatcher = ProbeFirstDispatcher(settings.web_threads)
    server_map: dict[int, Any] = socket_map if socket_map is not None else {}
    servers = [
        GuardedServer(app, server_map, True, None, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo, settings=settings)
        for sockinfo in adj.listen
    ]
    if len(servers) == 1:
        return servers[0]
    listening = [(server.effective_host, server.effective_port) for server in servers]
    return MultiSocketServer(server_map, adj, listening, dispatcher, servers[-1].log_info)


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, then drain: stop accepting, let the requests in progress finish (their
    responses sent) for up to ``settings.web_shutdown_grace_s``, then close.

    waitress's own stop gives running requests 5 s and stops the I/O loop first, so even a finished response
    was never sent: a 120 s single-image call or a large download died with every rollout.
    """
    # waitress spills request bodies over 512 KB to temporary files: on the storage volume (as Werkzeug's
    # spooled parts, web/uploads.py), never in a tmpfs /tmp where a few large uploads would cost memory.
    spool_dir = settings.storage_dir / "tmp"
    spool_dir.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(spool_dir)
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
    listeners = [obj for obj in list(socket_map.values()) if isinstance(obj, BaseWSGIServer)]
    for listener in listeners:
        listener.accepting = False
        listener.del_channel()
        listener.socket.close()  # new connections are refused from here on
    deadline = time.monotonic() + max(0.0, grace_s)
    while (busy := _busy_channels(socket_map)) and time.monotonic() < deadline:
        _loop_once(server, socket_map)
        # Out of the map, a listener's maintenance no longer runs by itself: keep closing slow clients, or
        # one idle connection with a lying Content-Length would hold the shutdown for the whole grace.
        for listener in listeners:
            listener.maintenance(time.time())
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
