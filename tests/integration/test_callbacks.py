"""Job-finished callbacks through the real worker: delivered to a receiver on this machine, signed, retried on
a non-2xx answer, given up after the last attempt, and sent again by the reconciler when a notice was lost.
Nothing stands in for the HTTP side: the receiver is a real server on a free port."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from matteflow.core.errors import InvalidOptionError
from matteflow.core.options import parse_options
from matteflow.workers.callbacks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    check_callback_url,
    verify_signature,
)
from matteflow.workers.client import JobClient
from matteflow.workers.jobstore import CALLBACKS_KEY, _job_key
from matteflow.workers.queues import finalize_queue
from matteflow.workers.reconcile import reconcile_once

from .helpers import wait_for_job, wait_until


class Receiver:
    """An HTTP server that records every POST and answers with the next scripted status (then 200)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.deliveries.append((dict(self.headers.items()), body))
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/done"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.deliveries]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_only_allowed_hosts_may_be_called(job_client: JobClient) -> None:
    settings = job_client.settings
    assert check_callback_url(" http://127.0.0.1:9/x ", settings) == "http://127.0.0.1:9/x"
    for url, message in (
        ("http://169.254.169.254/latest/meta-data", "is not one this server may call"),
        ("ftp://127.0.0.1/x", r"must be an http\(s\) URL"),
        ("http://user:pw@127.0.0.1/x", "must not carry credentials"),
        ("http://127.0.0.1:99999/x", "is not a URL"),
        ("http://" + "a" * 2001, "longer than"),
    ):
        with pytest.raises(InvalidOptionError, match=message):
            check_callback_url(url, settings)
    with pytest.raises(InvalidOptionError, match="callbacks are off"):
        check_callback_url("http://127.0.0.1/x", settings.replace(callback_hosts=""))
    assert check_callback_url("https://hooks.example:8443/a", settings.replace(callback_hosts="hooks.example:8443"))


def test_a_finished_job_is_told_once_signed_after_a_failed_delivery(
    celery_worker: Any, job_client: JobClient, receiver: Receiver, make_jpeg: Callable
) -> None:
    receiver.script = [500]  # the first delivery fails: retried with backoff
    files = [("a.jpg", make_jpeg(seed=1)), ("notes.png", b"not a picture")]
    job_id = job_client.create_job(files, parse_options(), callback=receiver.url)
    job = wait_for_job(job_client, job_id, timeout=120)
    wait_until(lambda: job_client.get_job(job_id)["callback"] == "delivered", 60, "the callback")

    assert len(receiver.deliveries) == 2 and receiver.bodies()[0] == receiver.bodies()[1]
    headers, raw = receiver.deliveries[1]
    assert headers[DELIVERY_HEADER] == job_id and headers["Content-Type"] == "application/json"
    assert verify_signature(raw, headers[SIGNATURE_HEADER], job_client.settings.callback_secret)
    assert not verify_signature(raw + b" ", headers[SIGNATURE_HEADER], job_client.settings.callback_secret)
    body = receiver.bodies()[1]
    assert body["event"] == "job.finished" and body["id"] == job_id and body["state"] == job["state"] == "done"
    assert (body["total"], body["done"], body["failed"]) == (2, 1, 1)
    assert body["status_url"] == f"http://matteflow.test/api/v1/jobs/{job_id}"
    assert body["results_url"] == body["status_url"] + "/results.zip"
    assert job_id.encode() not in job_client.redis.smembers(CALLBACKS_KEY)


def test_a_receiver_that_never_answers_2xx_is_given_up_after_the_last_attempt(
    celery_worker: Any, job_client: JobClient, receiver: Receiver, make_jpeg: Callable
) -> None:
    receiver.script = [503] * 10
    job_id = job_client.create_job([("a.jpg", make_jpeg(seed=2))], parse_options(), callback=receiver.url)
    wait_until(lambda: (job_client.get_job(job_id) or {}).get("callback") == "gave_up", 120, "giving up")
    assert len(receiver.deliveries) == job_client.settings.callback_max_attempts == 3


def test_the_reconciler_sends_a_lost_notice_again(
    celery_worker: Any, job_client: JobClient, receiver: Receiver, make_jpeg: Callable
) -> None:
    job_id = job_client.create_job([("a.jpg", make_jpeg(seed=3))], parse_options(), callback=receiver.url)
    wait_until(lambda: (job_client.get_job(job_id) or {}).get("callback") == "delivered", 120, "the callback")
    # As if the worker had died between finishing the job and sending its notice: pending, never sent.
    store = job_client.store
    store.redis.hset(_job_key(job_id), "callback_state", "pending")
    store.redis.sadd(CALLBACKS_KEY, job_id)
    store.redis.delete(f"mf:lock:notify-sent:{job_id}")

    def send(name: str, args: list[object], job: Mapping[str, str]) -> object:
        return job_client.celery.send_task(name, args=args, queue=finalize_queue(job_client.settings.worker_queue))

    tokens: list[str | None] = []
    wait_until(lambda: tokens.append(store.try_lock("reconcile", 10.0)) or tokens[-1], 15, "the lock", 0.01)
    try:
        report = reconcile_once(job_client.settings, store, send)
        again = reconcile_once(job_client.settings, store, send)  # sent once per resend window, not per sweep
    finally:
        store.unlock("reconcile", str(tokens[-1]))
    assert report.notified == [job_id] and again.notified == []
    wait_until(lambda: len(receiver.deliveries) == 2, 60, "the second delivery")
    assert receiver.deliveries[1][0][DELIVERY_HEADER] == job_id  # the receiver deduplicates on it
    wait_until(lambda: job_client.get_job(job_id)["callback"] == "delivered", 30, "delivered again")
