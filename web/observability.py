"""Probes and metrics: ``/healthz`` (the process answers), ``/readyz`` (it can do work), ``/metrics``.

Also the per-request HTTP metrics. Their ``endpoint`` label is the matched URL rule (``/api/v1/jobs/<job_id>``),
never the raw path, so job ids never become label values and the series count stays small.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from matteflow import metrics

from .context import web_context
from .errors import error_response

bp = Blueprint("ops", __name__)

# Label for requests that matched no route (404s): one value, whatever path was asked for.
UNMATCHED_ENDPOINT = "<unmatched>"


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: answers while the process serves requests; checks nothing else on purpose (a Redis outage
    must not make Kubernetes restart every web pod)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: Redis answers, so this pod can take uploads and serve status and downloads.

    Workers are not part of it: busy or scaled-to-zero workers must not take the whole web tier (status
    pages, downloads, intake that queues work for the autoscaler to see) out of the Service. With
    ``?workers=1`` it also fails when no worker published a heartbeat lately (workers/heartbeat.py), for people
    and scripts. Both answer from a state at most a second old (web/readiness.py): milliseconds, never a
    broadcast ping that waits out a timeout.
    """
    state = web_context().readiness.get()
    body: dict[str, object] = {"redis": state.redis}
    reason = "" if state.redis else "Redis is not reachable"
    if request.args.get("workers") == "1":
        body["workers"] = state.workers
        reason = reason or ("" if state.workers >= 1 else "no worker sent a heartbeat lately")
    if not reason:
        return jsonify({"status": "ready", **body})
    response = error_response(503, "not_ready", reason, **body)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    # The web's own metrics (HTTP, uploads, intake failures), built once per app. The queue gauges come from
    # `matteflow exporter` alone: read here, every web pod would report the same backlog again.
    return Response(generate_latest(web_context().metrics_registry), content_type=CONTENT_TYPE_LATEST)


def install_request_metrics(app: Flask) -> None:
    """Time every request and count it by method, URL rule and status."""

    @app.before_request
    def _start_timer() -> None:
        g.matteflow_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("matteflow_started", None)
        rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ENDPOINT
        metrics.HTTP_REQUESTS_TOTAL.labels(request.method, rule, str(response.status_code)).inc()
        if started is not None:
            metrics.HTTP_REQUEST_SECONDS.labels(request.method, rule).observe(time.perf_counter() - started)
        return response
