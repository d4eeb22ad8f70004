"""Job-finished callbacks (webhooks): when a job with a ``callback_url`` ends, its status is POSTed there.

A pipeline that sends thousands of photos wants to be told, not to poll. The contract (docs/operations.md,
"Callbacks"):

- Only hosts named in ``MATTEFLOW_CALLBACK_HOSTS`` may be called (off when empty): a server that POSTs to any
  URL a client names is a relay into the network it runs in.
- At least once: the finalize task sends the notice once the job has ended, and the reconciler sends it again
  for an ended job whose callback is still pending (a worker killed in between). Receivers deduplicate on the
  ``X-MatteFlow-Delivery`` header (the job id).
- A non-2xx answer, a timeout or a refused connection is retried with the workers' backoff, up to
  ``callback_max_attempts`` deliveries; then the job's ``callback_state`` says ``gave_up``.
- With ``MATTEFLOW_CALLBACK_SECRET`` the body is signed: ``X-MatteFlow-Signature: sha256=<hex HMAC of the
  body>``, as GitHub signs its webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from matteflow.core.errors import InvalidOptionError
from matteflow.settings import Settings
from matteflow.urls import host_listed, listed_hosts, split_http_url

from .jobstore import ENDED, JobStore

MAX_CALLBACK_URL_CHARS = 2000
DELIVERY_HEADER = "X-MatteFlow-Delivery"
SIGNATURE_HEADER = "X-MatteFlow-Signature"
EVENT = "job.finished"
# A job's notice is sent again (by the finalize task or the reconciler) at most this often: longer than its
# own retries take (backoff capped at task_retry_backoff_max_s), so a second copy means the first was lost.
NOTIFY_RESEND_S = 900.0


def allowed_hosts(settings: Settings) -> set[str]:
    return listed_hosts(settings.callback_hosts)


def check_callback_url(url: str, settings: Settings) -> str:
    """The URL, if a job may name it; else :class:`InvalidOptionError` saying why."""
    hosts = allowed_hosts(settings)
    if not hosts:
        raise InvalidOptionError("callbacks are off on this server (MATTEFLOW_CALLBACK_HOSTS is empty)")
    url = url.strip()
    parts = split_http_url(url, "callback_url", MAX_CALLBACK_URL_CHARS, ": sign with MATTEFLOW_CALLBACK_SECRET")
    if not host_listed(parts, hosts):
        raise InvalidOptionError(
            f"callback_url's host {parts.hostname!r} is not one this server may call (MATTEFLOW_CALLBACK_HOSTS)"
        )
    return url


def notice_body(job: dict[str, Any], settings: Settings) -> bytes:
    """The JSON a callback receives: the job's outcome and where to fetch it."""
    job_id = job["id"]
    base = settings.public_url.rstrip("/")
    status_url = f"{base}/api/v1/jobs/{job_id}"
    body = {
        "event": EVENT,
        "id": job_id,
        "state": job["state"],
        "total": int(job["total"]),
        "done": int(job["done"]),
        "failed": int(job["failed"]),
        "error": job.get("job_error") or None,
        "finished_at": float(job["finished_at"]) if job.get("finished_at") else None,
        "status_url": status_url,
        "results_url": f"{status_url}/results.zip" if job.get("zip") else None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def notice_headers(body: bytes, job_id: str, settings: Settings) -> dict[str, str]:
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: job_id, "User-Agent": "MatteFlow-Callback"}
    if settings.callback_secret:
        digest = hmac.new(settings.callback_secret.encode(), body, hashlib.sha256).hexdigest()
        headers[SIGNATURE_HEADER] = f"sha256={digest}"
    return headers


def verify_signature(body: bytes, header: str, secret: str) -> bool:
    """What a receiver does (and the tests): constant-time comparison of the signature header."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def claim_notice(store: JobStore, job_id: str) -> bool:
    """True if the caller should enqueue the job's notice now: it has ended, its callback is pending, and no
    notice was sent within NOTIFY_RESEND_S."""
    fields = store.job_fields(job_id) or {}
    if fields.get("callback_state") != "pending" or fields.get("state") not in ENDED:
        return False
    return store.try_lock(f"notify-sent:{job_id}", NOTIFY_RESEND_S) is not None
