"""A batch sent in several requests (``open=true``, ``POST .../files``, ``POST .../close``): one job and one ZIP
for a folder bigger than one request may carry, through a real Redis and a real Celery worker."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

from flask.testing import FlaskClient

from matteflow.settings import Settings
from matteflow.web import create_app
from matteflow.workers.client import JobClient
from matteflow.workers.reconcile import reconcile_once

from ..integration.helpers import wait_until
from .helpers import wait_for_job
from .test_api_errors import assert_json_error


def files(samples: Any, *names: str) -> list[tuple[io.BytesIO, str]]:
    return [(io.BytesIO(samples.jpeg), name) for name in names]


def open_job(client: FlaskClient, samples: Any, *names: str, **fields: str) -> dict[str, Any]:
    response = client.post("/api/v1/jobs", data={"open": "true", "files": files(samples, *names), **fields})
    assert response.status_code == 202, response.data
    return response.get_json()


def test_a_batch_in_three_requests_is_one_job_with_one_zip(client: FlaskClient, samples: Any, worker: Any) -> None:
    created = open_job(client, samples, "a.jpg", "b.jpg", format="png")
    assert created["open"] is True and created["total"] == 2
    first = client.post(created["files_url"], data={"files": files(samples, "c.jpg")})
    bad = client.post(created["files_url"], data={"files": [(io.BytesIO(b"not an image"), "d.png")]})
    assert first.status_code == bad.status_code == 202, bad.data
    assert (first.get_json()["first"], first.get_json()["total"]) == (2, 3)
    assert (bad.get_json()["first"], bad.get_json()["added"], bad.get_json()["total"]) == (3, 1, 4)

    # Its images run while it is open, but it never ends before it is closed.
    deadline = time.monotonic() + 90
    while (status := client.get(created["status_url"]).get_json())["done"] < 3:
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    time.sleep(1.0)  # time for a finalize that must not happen
    status = client.get(created["status_url"]).get_json()
    assert status["state"] == "running" and status["open"] is True and status["failed"] == 1

    closed = client.post(created["close_url"])
    assert closed.status_code == 200 and closed.get_json()["open"] is False
    job = wait_for_job(client, created["status_url"])
    assert (job["state"], job["total"], job["done"], job["failed"]) == ("done", 4, 3, 1)
    assert [item["name"] for item in job["items"]] == ["a.jpg", "b.jpg", "c.jpg", "d.png"]
    with zipfile.ZipFile(io.BytesIO(client.get(created["results_url"]).data)) as archive:
        assert sorted(archive.namelist()) == ["a.png", "b.png", "c.png", "manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))
    assert [entry["state"] for entry in manifest["items"]] == ["done", "done", "done", "failed"]
    # Closed means closed: a late part is refused, a second close changes nothing.
    assert_json_error(client.post(created["files_url"], data={"files": files(samples, "e.jpg")}), 409, "job_closed")
    assert client.post(created["close_url"]).get_json()["total"] == 4


def test_an_open_job_may_start_empty_and_a_part_sent_twice_is_added_once(
    client: FlaskClient, samples: Any, worker: Any
) -> None:
    created = client.post("/api/v1/jobs", data={"open": "true"}).get_json()
    assert created["total"] == 0
    key = str(uuid.uuid4())
    part = {"Idempotency-Key": key}
    once = client.post(created["files_url"], data={"files": files(samples, "a.jpg", "b.jpg")}, headers=part)
    twice = client.post(created["files_url"], data={"files": files(samples, "a.jpg", "b.jpg")}, headers=part)
    assert twice.headers["Idempotent-Replayed"] == "true" and twice.get_json() == once.get_json()
    client.post(created["close_url"])
    job = wait_for_job(client, created["status_url"])
    assert (job["state"], job["total"], job["done"]) == ("done", 2, 2)


def test_what_a_part_may_not_do(client: FlaskClient, samples: Any, web_settings: Settings) -> None:
    closed_batch = client.post("/api/v1/jobs", data={"files": files(samples, "a.jpg")}).get_json()
    refused = client.post(f"/api/v1/jobs/{closed_batch['id']}/files", data={"files": files(samples, "b.jpg")})
    assert_json_error(refused, 409, "job_closed")
    unknown = "x" * 22
    assert_json_error(
        client.post(f"/api/v1/jobs/{unknown}/files", data={"files": files(samples, "b.jpg")}), 404, "job_not_found"
    )
    assert_json_error(client.post(f"/api/v1/jobs/{unknown}/close"), 404, "job_not_found")

    created = open_job(client, samples, "a.jpg")
    # Options belong to the job, not to a part; a part needs files.
    assert_json_error(
        client.post(created["files_url"], data={"files": files(samples, "b.jpg"), "format": "webp"}),
        400,
        "invalid_option",
    )
    assert_json_error(client.post(created["files_url"], data={}), 400, "no_files")
    assert_json_error(
        client.post("/api/v1/jobs", data={"open": "maybe", "files": files(samples, "a.jpg")}), 400, "invalid_option"
    )
    assert_json_error(client.post("/api/v1/jobs", data={"open": "true", "kind": "single"}), 400, "invalid_option")
    client.post(created["close_url"])


def test_the_file_limit_counts_every_part(samples: Any, web_settings: Settings) -> None:
    settings = web_settings.replace(max_files_per_job=3)
    client = create_app(settings, JobClient(settings)).test_client()
    created = open_job(client, samples, "a.jpg", "b.jpg")
    over = client.post(created["files_url"], data={"files": files(samples, "c.jpg", "d.jpg")})
    assert "limit of 3" in assert_json_error(over, 400, "too_many_files")["message"]
    assert client.post(created["files_url"], data={"files": files(samples, "c.jpg")}).get_json()["total"] == 3
    job = client.get(created["status_url"]).get_json()
    assert job["total"] == 3 and [item["name"] for item in job["items"]] == ["a.jpg", "b.jpg", "c.jpg"]
    client.post(created["close_url"])


def test_an_open_job_its_sender_forgot_is_closed_and_finished(
    client: FlaskClient, samples: Any, job_client: Any, worker: Any
) -> None:
    created = open_job(client, samples, "a.jpg")
    deadline = time.monotonic() + 90
    while client.get(created["status_url"]).get_json()["done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sent: list[tuple[str, list[Any]]] = []
    settings = job_client.settings.replace(open_job_idle_s=3600.0)
    # Hold the sweep lock, so the worker's own reconciler stays out of these sweeps.
    tokens: list[str | None] = []
    wait_until(lambda: tokens.append(job_client.store.try_lock("reconcile", 10.0)) or tokens[-1], 15, "the lock", 0.01)
    try:
        report = reconcile_once(settings, job_client.store, lambda name, args, job: sent.append((name, args)))
        assert created["id"] not in report.closed and not [s for s in sent if s[1] == [created["id"]]]
        # An hour later (the job's clock moved back), the sweep closes it and sends its finalize.
        job_client.store.touch(created["id"], when=time.time() - 3700)
        report = reconcile_once(settings, job_client.store, lambda name, args, job: sent.append((name, args)))
    finally:
        job_client.store.unlock("reconcile", tokens[-1])
    assert created["id"] in report.closed
    assert ("matteflow.finalize_batch", [created["id"]]) in sent
    assert client.get(created["status_url"]).get_json()["open"] is False
