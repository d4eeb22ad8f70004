"""``matteflow web``: serve the app with waitress (a production WSGI server; never Flask's dev server).

Waitress is pure Python and multi-threaded: request threads only parse uploads, talk to Redis and stream
files, so threads (``MATTEFLOW_WEB_THREADS``) are the right unit; the heavy work runs in the workers.
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from waitress import create_server
from waitress.server import BaseWSGIServer, MultiSocketServer

from matteflow.settings import Settings

from .app import create_app

log = logging.getLogger("matteflow.web")

# Waitress buffers a whole request body (spilling to a temp file) before the app sees it, and answers its
# own plain-text 413 above max_request_body_size. Keep that ceiling well above MAX_UPLOAD_MB so the app's
# JSON 413 is what clients see for any realistic oversize upload.
_WAITRESS_BODY_CEILING_FACTOR = 4
_WAITRESS_MIN_BODY_CEILING = 1 << 30


def build_server(settings: Settings, host: str, port: int) -> BaseWSGIServer | MultiSocketServer:
    """A bound (not yet running) waitress server for the app; ``port=0`` picks a free port."""
    app = create_app(settings)
    return create_server(
        app,
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


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # waitress's run() closes the server on SystemExit/KeyboardInterrupt: SIGTERM gets the same clean stop.
    raise SystemExit(0)


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM."""
    server = build_server(settings, host, port)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    log.info("MatteFlow web listening on http://%s:%s (%d threads)", host, port, settings.web_threads)
    server.run()
    log.info("MatteFlow web stopped")


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
