"""Batches and single images end to end: test client -> real Redis -> real Celery worker -> storage -> API."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image

from .helpers import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def test_batch_runs_good_files_and_fails_bad_ones_with_reasons(client: FlaskClient, samples: Any) -> None:
    uploads = [
        ("alice.jpg", samples.jpeg),
        ("empty.png", samples.empty),
        ("notes.png", samples.text),
        ("bob.png", samples.png),
        ("cut.jpg", samples.truncated_jpeg),
        ("bomb.png", samples.pixel_bomb),
    ]
    data = {"files": [(io.BytesIO(b), n) for n, b in uploads], "format": "png", "mask": "true"}
    response = client.post("/api/v1/jobs", data=data)
    assert response.status_code == 202, response.data
    created = response.get_json()
    assert set(created) == {"id", "status_url", "results_url"}
    assert len(created["id"]) >= 22  # token_urlsafe(16): 128 random bits
    assert response.headers["Location"] == created["status_url"]

    early = client.get(created["results_url"])
    if early.status_code != 200:  # the worker may already be done; if not, the ZIP must say "not yet"
        assert early.status_code == 409 and early.get_json()["error"] == "not_ready"

    job = wait_for_job(client, created["status_url"])
    assert job["state"] == "done"
    assert (job["total"], job["done"], job["failed"]) == (6, 2, 4)
    by_name = {item["name"]: item for item in job["items"]}
    assert [item["index"] for item in job["items"]] == list(range(6))
    for good in ("alice.jpg", "bob.png"):
        assert by_name[good]["state"] == "done" and by_name[good]["error"] is None
        assert by_name[good]["result_url"] and by_name[good]["mask_url"]
    reasons = {name: by_name[name]["error"] for name in ("empty.png", "notes.png", "cut.jpg", "bomb.png")}
    for name, reason in reasons.items():
        assert by_name[name]["state"] == "failed" and by_name[name]["result_url"] is None
        assert reason, f"{name} failed without a reason"
    assert "empty" in reasons["empty.png"]
    assert "pixels" in reasons["bomb.png"]

    # One result image, decodable, the input's size, with an alpha channel.
    result = client.get(by_name["alice.jpg"]["result_url"])
    assert result.status_code == 200 and result.mimetype == "image/png"
    image = Image.open(io.BytesIO(result.data))
    assert image.size == (96, 128) and image.mode == "RGBA"
    mask = client.get(by_name["alice.jpg"]["mask_url"])
    assert mask.status_code == 200 and Image.open(io.BytesIO(mask.data)).mode == "L"
    download = client.get(by_name["bob.png"]["result_url"] + "?download=1")
    assert "attachment; filename=bob.png" in download.headers["Content-Disposition"]

    failed_item = client.get(f"/api/v1/jobs/{job['id']}/items/{by_name['notes.png']['index']}")
    assert failed_item.status_code == 409 and failed_item.get_json()["error"] == "item_failed"
    assert client.get(f"/api/v1/jobs/{job['id']}/items/6").get_json()["error"] == "item_not_found"

    archive = client.get(created["results_url"])
    assert archive.status_code == 200 and archive.mimetype == "application/zip"
    disposition = archive.headers["Content-Disposition"]
    assert re.search(r"filename=batch_results_\d{14}\.zip", disposition), disposition
    with zipfile.ZipFile(io.BytesIO(archive.data)) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    # Results are named as their uploads (with the output's extension); mask=true adds the masks.
    assert names == {"manifest.json", "alice.png", "alice_mask.png", "bob.png", "bob_mask.png"}
    assert "notes.png" in json.dumps(manifest)


def test_delete_job_removes_it(client: FlaskClient, samples: Any, web_settings: Any) -> None:
    created = client.post("/api/v1/jobs", data={"files": [(io.BytesIO(samples.jpeg), "a.jpg")]}).get_json()
    job = wait_for_job(client, created["status_url"])
    assert job["error"] is None and job["items"][0]["mask_url"] is None
    no_mask = client.get(job["items"][0]["result_url"] + "?mask=1")
    assert no_mask.status_code == 404 and no_mask.get_json()["error"] == "mask_not_found"
    assert (web_settings.jobs_dir / created["id"]).exists()
    response = client.delete(f"/api/v1/jobs/{created['id']}")
    assert response.status_code == 200 and response.get_json() == {"id": created["id"], "deleted": True}
    assert client.get(created["status_url"]).status_code == 404
    assert client.get(created["results_url"]).status_code == 404
    assert not (web_settings.jobs_dir / created["id"]).exists()
    assert client.delete(f"/api/v1/jobs/{created['id']}").status_code == 404


@pytest.mark.parametrize(("fmt", "media", "mode"), [("png", "image/png", "RGBA"), ("jpeg", "image/jpeg", "RGB")])
def test_matte_returns_the_image(client: FlaskClient, samples: Any, fmt: str, media: str, mode: str) -> None:
    data = {"file": (io.BytesIO(samples.jpeg), "portrait.jpg"), "format": fmt}
    response = client.post("/api/v1/matte", data=data)
    assert response.status_code == 200, response.data
    assert response.mimetype == media
    image = Image.open(io.BytesIO(response.data))
    assert image.size == (96, 128) and image.mode == mode
    assert "portrait." in response.headers["Content-Disposition"]


def test_matte_background_colour_and_preset(client: FlaskClient, samples: Any) -> None:
    data = {"file": (io.BytesIO(samples.png), "p.png"), "preset": "id-photo", "max_side": "50"}
    response = client.post("/api/v1/matte", data=data)
    assert response.status_code == 200, response.data
    assert response.mimetype == "image/jpeg"  # the id-photo preset's format
    image = Image.open(io.BytesIO(response.data))
    assert max(image.size) == 50


def test_matte_truncated_jpeg_is_422(client: FlaskClient, samples: Any) -> None:
    # The header is fine, so the worker finds the damage while decoding; the answer is still a 4xx.
    data = {"file": (io.BytesIO(samples.truncated_jpeg), "cut.jpg")}
    response = client.post("/api/v1/matte", data=data)
    assert response.status_code == 422, response.data
    assert response.get_json()["error"] == "invalid_image"


def test_readyz_with_a_worker(client: FlaskClient) -> None:
    response = client.get("/readyz?workers=1")
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert body["status"] == "ready" and body["redis"] is True and body["workers"] >= 1
