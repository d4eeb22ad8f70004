"""Prometheus metrics of every MatteFlow process (web, worker), named ``matteflow_*`` with unit suffixes.

No job ids or file names in labels: label values come from small fixed sets (state, stage, queue,
method, endpoint, status, device). In multi-process servers (gunicorn, Celery prefork) set
``PROMETHEUS_MULTIPROC_DIR`` before the first import; :func:`make_registry` then aggregates the files.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as _multiprocess

STAGES = ("decode", "inference", "postprocess", "encode")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

JOBS_TOTAL = Counter("matteflow_jobs_total", "Jobs by the state they reached.", ["state"])
ITEMS_TOTAL = Counter("matteflow_items_total", "Images by the state they reached.", ["state"])
TASK_RETRIES_TOTAL = Counter("matteflow_task_retries_total", "Task retries after a transient error.")
STAGE_SECONDS = Histogram(
    "matteflow_stage_seconds",
    "Time per image in each processing stage.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
ITEM_SECONDS = Histogram(
    "matteflow_item_seconds", "Whole time a worker spent on one image.", buckets=_LATENCY_BUCKETS
)
HTTP_REQUESTS_TOTAL = Counter(
    "matteflow_http_requests_total", "HTTP requests answered.", ["method", "endpoint", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "matteflow_http_request_seconds",
    "HTTP request latency.",
    ["method", "endpoint"],
    buckets=_LATENCY_BUCKETS,
)
UPLOAD_BYTES_TOTAL = Counter("matteflow_upload_bytes_total", "Bytes of images received.")
WORKER_RSS_BYTES = Gauge(
    "matteflow_worker_rss_bytes", "Resident memory of a worker process.", multiprocess_mode="livesum"
)


def make_registry() -> CollectorRegistry:
    """A registry to expose: the multi-process aggregate when PROMETHEUS_MULTIPROC_DIR is set, else a
    fresh registry that collects the default (single-process) metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY
