"""``Idempotency-Key`` on ``POST /api/v1/jobs`` (web/idempotency.py): a repeated request gets the job the first
one created, never a second one; a key names one request; a failed request gives its key back."""

from __future__ import annotations

import io
import uuid
from typing import Any

from flask.testing import FlaskClient

from matteflow.settings import Settings
from matteflow.web import create_app
from matteflow.web.context import EXTENSION_KEY
from matteflow.web.idempotency import IdempotencyKeys, request_fingerprint

from .test_api_errors import assert_json_error, jobs_in_storage


def post_job(client: FlaskClient, samples: Any, key: str | None, **fields: str) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    data = {"files": [(io.BytesIO(samples.jpeg), "a.jpg"), (io.BytesIO(samples.png), "b.png")], **fields}
    return client.post("/api/v1/jobs", data=data, headers=headers)


def test_a_repeated_request_gets_the_job_the_first_created(
    client: FlaskClient, samples: Any, web_settings: Settings
) -> None:
    before = jobs_in_storage(web_settings)
    key = str(uuid.uuid4())
    first = post_job(client, samples, key, background="#ffffff")
    again = post_job(client, samples, key, background="#ffffff")
    assert first.status_code == again.status_code == 202, again.data
    assert again.get_json() == first.get_json() and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(jobs_in_storage(web_settings) - before) == 1  # one job, not two
    # Without a key every request is a new job, as before.
    assert post_job(client, samples, None).get_json()["id"] != post_job(client, samples, None).get_json()["id"]


def test_a_key_names_one_request(client: FlaskClient, samples: Any) -> None:
    key = str(uuid.uuid4())
    assert post_job(client, samples, key, format="png").status_code == 202
    other = post_job(client, samples, key, format="webp")  # same key, another job
    assert "different request" in assert_json_error(other, 422, "idempotency_key_reused")["message"]


def test_a_key_still_being_created_is_409_with_retry_after(app: Any, client: FlaskClient, samples: Any) -> None:
    key = str(uuid.uuid4())
    keys = IdempotencyKeys(app.extensions[EXTENSION_KEY].jobs.redis, 3600)
    with app.test_request_context(
        "/api/v1/jobs",
        method="POST",
        data={"files": [(io.BytesIO(samples.jpeg), "a.jpg"), (io.BytesIO(samples.png), "b.png")]},
    ) as context:
        digest = request_fingerprint(context.request)
    assert keys.claim(None, key, digest) is None  # another request holds the key, mid-creation
    response = post_job(client, samples, key)
    assert_json_error(response, 409, "idempotency_key_in_progress")
    assert int(response.headers["Retry-After"]) > 0


def test_a_failed_request_gives_its_key_back(client: FlaskClient, samples: Any) -> None:
    key = str(uuid.uuid4())
    assert_json_error(post_job(client, samples, key, erode="lots"), 400, "invalid_option")
    fixed = post_job(client, samples, key, erode="2")  # the corrected retry may use the same key
    assert fixed.status_code == 202, fixed.data


def test_bad_keys_are_refused(client: FlaskClient, samples: Any) -> None:
    for key in ("", "x" * 256, "clé"):
        assert_json_error(post_job(client, samples, key), 400, "invalid_idempotency_key")


def test_keys_are_scoped_by_api_key(web_settings: Settings, job_client: Any, samples: Any) -> None:
    client = create_app(web_settings.replace(api_keys="alpha,beta"), job_client).test_client()
    shared = str(uuid.uuid4())
    ids = set()
    for api_key in ("alpha", "beta"):
        data = {"files": [(io.BytesIO(samples.jpeg), "a.jpg")]}
        response = client.post("/api/v1/jobs", data=data, headers={"Idempotency-Key": shared, "X-API-Key": api_key})
        assert response.status_code == 202 and "Idempotent-Replayed" not in response.headers
        ids.add(response.get_json()["id"])
    assert len(ids) == 2  # two tenants who picked the same key get their own jobs


def test_a_repeated_rerun_gets_the_same_job(client: FlaskClient, samples: Any, web_settings: Settings) -> None:
    source = post_job(client, samples, None).get_json()["id"]
    before = jobs_in_storage(web_settings)
    key = str(uuid.uuid4())
    path = f"/api/v1/jobs/{source}/rerun"
    first = client.post(path, data={"model": "general"}, headers={"Idempotency-Key": key})
    again = client.post(path, data={"model": "general"}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202, again.data
    assert again.get_json()["id"] == first.get_json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert len(jobs_in_storage(web_settings) - before) == 1
    # The same key on another endpoint is another request.
    other = post_job(client, samples, key)
    assert_json_error(other, 422, "idempotency_key_reused")
