"""A re-run's result put into a finished batch (``POST /api/v1/jobs/<id>/items/<i>/adopt``): the item takes
the re-run's file, model and confidence, and a real worker writes the batch's ZIP again with it."""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import pytest
from flask.testing import FlaskClient

from .helpers import wait_for_job
from .test_api_errors import assert_json_error


def _batch(client: FlaskClient, samples: Any, **options: str) -> dict[str, Any]:
    files = [(io.BytesIO(samples.jpeg), "alice.jpg"), (io.BytesIO(samples.png), "bob.png")]
    response = client.post("/api/v1/jobs", data={"files": files, **options})
    assert response.status_code == 202, response.data
    return wait_for_job(client, response.get_json()["status_url"])


def _rerun(client: FlaskClient, job_id: str, index: int, **options: str) -> dict[str, Any]:
    response = client.post(f"/api/v1/jobs/{job_id}/rerun", data={"items": str(index), **options})
    assert response.status_code == 202, response.data
    return wait_for_job(client, response.get_json()["status_url"])


def _manifest(client: FlaskClient, job: dict[str, Any]) -> tuple[dict[str, Any], zipfile.ZipFile]:
    response = client.get(job["results_url"])
    assert response.status_code == 200, response.data
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    return json.loads(archive.read("manifest.json")), archive


def test_adopt_is_documented_and_refuses_what_it_cannot_do(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/jobs/{job_id}/items/{index}/adopt"]["post"]
    assert set(operation["responses"]) == {"202", "400", "404", "409"}
    unknown = "A" * 22
    assert (
        "from_job"
        in assert_json_error(client.post(f"/api/v1/jobs/{unknown}/items/0/adopt"), 400, "invalid_option")["message"]
    )
    for raw in ("x", "\u00b2"):  # a superscript two is a digit to str.isdigit, not to int()
        bad_item = client.post(f"/api/v1/jobs/{unknown}/items/0/adopt", data={"from_job": unknown, "from_item": raw})
        assert "from_item" in assert_json_error(bad_item, 400, "invalid_option")["message"]
    assert_json_error(
        client.post(f"/api/v1/jobs/{unknown}/items/0/adopt", data={"from_job": unknown}), 404, "job_not_found"
    )


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_rerun_result_replaces_the_item_and_the_zip_is_written_again(
    client: FlaskClient, samples: Any, web_settings: Any
) -> None:
    batch = _batch(client, samples, model="people", mask="true")
    assert [item["state"] for item in batch["items"]] == ["done", "done"]
    first_manifest, _ = _manifest(client, batch)
    redo = _rerun(client, batch["id"], 1, model="general", mask="true")
    redone = redo["items"][0]
    assert redone["state"] == "done" and redone["model"] == "general"

    response = client.post(f"/api/v1/jobs/{batch['id']}/items/1/adopt", data={"from_job": redo["id"]})
    assert response.status_code == 202, response.data
    answer = response.get_json()
    assert (answer["model"], answer["confidence"]) == ("general", redone["confidence"])

    # The item at once: the re-run's file, mask, model and confidence; the other item untouched.
    status = client.get(batch["status_url"]).get_json()
    assert status["items"][1]["model"] == "general" and status["items"][1]["confidence"] == redone["confidence"]
    assert status["items"][0]["model"] == batch["items"][0]["model"]
    new_image = client.get(redone["result_url"]).data
    assert client.get(status["items"][1]["result_url"]).data == new_image
    assert client.get(status["items"][1]["mask_url"]).data == client.get(redone["mask_url"]).data

    # The ZIP shortly after, written again by the worker: the new file under the item's name, manifest saying so.
    deadline = time.monotonic() + 60
    while True:
        manifest, archive = _manifest(client, batch)
        if manifest["items"][1]["model"] == "general":
            break
        assert time.monotonic() < deadline, "the batch's ZIP was not written again"
        time.sleep(0.2)
    assert archive.read(manifest["items"][1]["result"]) == new_image
    assert manifest["items"][1]["result"] == first_manifest["items"][1]["result"] == "bob.png"
    assert manifest["items"][0] == first_manifest["items"][0]
    # The old archive is removed just after the job points at the new one: gone, not left beside it.
    folder = web_settings.jobs_dir / batch["id"]
    while len(archives := sorted(p.name for p in folder.glob("batch_results_*.zip"))) > 1:
        assert time.monotonic() < deadline + 10, archives
        time.sleep(0.1)
    assert len(archives) == 1 and archives[0] in client.get(batch["results_url"]).headers["Content-Disposition"]


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_result_of_another_format_or_a_deleted_job_is_refused(client: FlaskClient, samples: Any) -> None:
    batch = _batch(client, samples)
    webp = _rerun(client, batch["id"], 0, format="webp")
    refused = client.post(f"/api/v1/jobs/{batch['id']}/items/0/adopt", data={"from_job": webp["id"]})
    assert "webp" in assert_json_error(refused, 409, "incompatible_result")["message"]
    assert_json_error(
        client.post(f"/api/v1/jobs/{batch['id']}/items/5/adopt", data={"from_job": webp["id"]}), 404, "item_not_found"
    )
    same = _rerun(client, batch["id"], 0)
    assert client.delete(f"/api/v1/jobs/{same['id']}").status_code == 200
    gone = client.post(f"/api/v1/jobs/{batch['id']}/items/0/adopt", data={"from_job": same["id"]})
    assert "from_job" in assert_json_error(gone, 404, "job_not_found")["message"]
    status = client.get(batch["status_url"]).get_json()
    assert [item["model"] for item in status["items"]] == [item["model"] for item in batch["items"]]
