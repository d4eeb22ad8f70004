"""``matteflow exporter``: the one process of a deployment that reports its queues to Prometheus.

Queue gauges are read from Redis at scrape time; if every web pod or worker reported them, a ``sum()`` in
a query or alert would count one backlog once per pod. Run exactly one exporter (a single-replica
Deployment, a compose service; ``matteflow up`` serves the same registry itself). It needs neither Flask nor
Celery nor the model: the web image runs it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from matteflow import metrics
from matteflow.settings import Settings

log = logging.getLogger("matteflow.exporter")


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="matteflow exporter", description="Serve the queue metrics (waiting, in flight) read from Redis."
    )
    parser.add_argument("--host", default=settings.queue_metrics_host, help=f"default {settings.queue_metrics_host}")
    parser.add_argument(
        "--port", type=int, default=settings.queue_metrics_port, help=f"default {settings.queue_metrics_port}"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    if not settings.redis_url:
        log.error("no Redis: set MATTEFLOW_REDIS_URL")
        return 1
    if args.port <= 0:
        parser.error("--port must be a port number")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        metrics.start_queue_metrics_server(settings.replace(queue_metrics_host=args.host, queue_metrics_port=args.port))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
