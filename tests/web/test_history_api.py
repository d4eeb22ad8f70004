"""The API behind the page's history and live options, through Flask's test client on the real Redis and
the shared real worker: listing jobs (by the ids a client holds, or by API key, never another key's), re-runs
from stored uploads, the uploads themselves, stable reason codes, masks from /matte, the expired-link page and
ISO 8601 times in manifest.json.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import datetime, timezone
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image

from matteflow.core.errors import InputError
from matteflow.core.imageio import decode_image, probe_image
from matteflow.web import create_app
from matteflow.web.reasons import reason_for

from .helpers import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def create(client: FlaskClient, files: list[tuple[str, bytes]], headers: dict[str, str] | None = None, **fields: str):
    data: dict[str, Any] = {"files": [(io.BytesIO(body), name) for name, body in files], **fields}
    response = client.post("/api/v1/jobs", data=data, headers=headers or {})
    assert response.status_code == 202, response.data
    return response.get_json()


# --- reason codes ------------------------------------------------------------------------------------------


def core_error(data: bytes, decode: bool = False, max_pixels: int = 10_000_000) -> InputError:
    with pytest.raises(InputError) as caught:
        (decode_image if decode else probe_image)(data, max_pixels)
    return caught.value


def test_every_message_core_writes_has_a_reason_code(samples: Any) -> None:
    """Pins core's message shapes: a reworded message must fail here, not fall back to English on the page."""
    cases = {
        "image_empty": core_error(samples.empty),
        "image_unsupported": core_error(samples.text),
        "image_too_large": core_error(samples.pixel_bomb),
        "image_truncated": core_error(samples.truncated_jpeg, decode=True),
    }
    for code, error in cases.items():
        assert reason_for(type(error).__name__, str(error))[0] == code, str(error)
        assert reason_for(None, str(error))[0] == code  # items carry the message only
    _, params = reason_for("ImageTooLargeError", str(cases["image_too_large"]))
    assert params == {"pixels": 900_000_000, "limit": 10_000_000}  # Pillow's own guard: no size in the text
    over_our_limit = core_error(samples.jpeg, max_pixels=1000)
    code, params = reason_for("ImageTooLargeError", str(over_our_limit))
    assert code == "image_too_large" and params == {"width": 96, "height": 128, "pixels": 12288, "limit": 1000}
    assert reason_for("InvalidImageError", "something new") == ("invalid_image", {})
    assert reason_for(None, "a worker crashed") == (None, {})


def test_a_bad_single_image_answers_a_reason_code(client: FlaskClient, samples: Any) -> None:
    response = client.post("/api/v1/matte", data={"file": (io.BytesIO(samples.pixel_bomb), "big.png")})
    body = response.get_json()
    assert response.status_code == 413 and body["error"] == "image_too_large"
    assert body["reason"] == "image_too_large" and body["params"]["pixels"] == 900_000_000


def test_failed_items_carry_a_reason_code(client: FlaskClient, samples: Any) -> None:
    created = create(client, [("notes.png", samples.text), ("empty.jpg", samples.empty), ("a.jpg", samples.jpeg)])
    job = wait_for_job(client, created["status_url"])
    by_name = {item["name"]: item for item in job["items"]}
    assert by_name["notes.png"]["error_code"] == "image_unsupported"
    assert by_name["empty.jpg"]["error_code"] == "image_empty"
    assert "error_code" not in by_name["a.jpg"]


# --- listing -----------------------------------------------------------------------------------------------


def test_list_by_ids_marks_unknown_ones_missing(client: FlaskClient, samples: Any) -> None:
    first = create(client, [("a.jpg", samples.jpeg)], kind="single")
    second = create(client, [("b.jpg", samples.jpeg), ("c.png", samples.png)])
    wait_for_job(client, first["status_url"])
    wait_for_job(client, second["status_url"])
    gone = "Z" * 22
    response = client.get(f"/api/v1/jobs?ids={first['id']},{gone},{second['id']}")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert [job["id"] for job in body["jobs"]] == [second["id"], first["id"]]  # newest first
    assert body["missing"] == [gone]
    single, batch = body["jobs"][1], body["jobs"][0]
    assert single["kind"] == "single" and batch["kind"] == "batch"
    assert batch["names"] == ["b.jpg", "c.png"] and batch["total"] == 2 and batch["state"] == "done"
    assert batch["expires_at"] == pytest.approx(batch["created_at"] + 7 * 24 * 3600)
    thumb = client.get(single["thumbnail_url"])
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.data)).size == (96, 128)


def test_listing_without_ids_or_key_is_refused(client: FlaskClient) -> None:
    response = client.get("/api/v1/jobs")
    assert response.status_code == 401 and response.get_json()["error"] == "api_key_required"
    too_many = ",".join(f"{i:022d}" for i in range(201))
    assert client.get(f"/api/v1/jobs?ids={too_many}").get_json()["error"] == "too_many_ids"


def test_an_api_key_lists_its_own_jobs_and_never_another_keys(web_settings: Any, job_client: Any, samples: Any) -> None:
    client = create_app(web_settings.replace(api_keys="key-alice, key-bob"), job_client).test_client()
    alice = {"Authorization": "Bearer key-alice"}
    bob = {"X-API-Key": "key-bob"}
    alice_jobs = [create(client, [("a.jpg", samples.jpeg)], alice)["id"] for _ in range(2)]
    bob_job = create(client, [("b.jpg", samples.jpeg)], bob)["id"]
    anonymous = create(client, [("c.jpg", samples.jpeg)])["id"]

    listed_alice = client.get("/api/v1/jobs", headers=alice).get_json()
    listed_bob = client.get("/api/v1/jobs", headers=bob).get_json()
    assert {job["id"] for job in listed_alice["jobs"]} == set(alice_jobs)
    assert [job["id"] for job in listed_bob["jobs"]] == [bob_job]
    assert anonymous not in json.dumps([listed_alice, listed_bob])

    # A re-run made with a key is that key's; a deleted job leaves the list.
    rerun = client.post(f"/api/v1/jobs/{bob_job}/rerun", data={"format": "webp"}, headers=bob).get_json()
    assert {job["id"] for job in client.get("/api/v1/jobs", headers=bob).get_json()["jobs"]} == {bob_job, rerun["id"]}
    assert client.delete(f"/api/v1/jobs/{alice_jobs[0]}").status_code == 200
    after = client.get("/api/v1/jobs", headers=alice).get_json()
    assert [job["id"] for job in after["jobs"]] == [alice_jobs[1]] and after["missing"] == []

    wrong = client.get("/api/v1/jobs", headers={"Authorization": "Bearer key-mallory"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_api_key"
    refused = client.post(
        "/api/v1/jobs", data={"files": [(io.BytesIO(samples.jpeg), "x.jpg")]}, headers={"X-API-Key": "nope"}
    )
    assert refused.status_code == 401


def test_a_key_on_a_server_without_keys_is_refused(client: FlaskClient) -> None:
    response = client.get("/api/v1/jobs", headers={"X-API-Key": "anything"})
    assert response.status_code == 401 and response.get_json()["error"] == "api_keys_disabled"


# --- re-runs and uploads -------------------------------------------------------------------------------------


def test_rerun_uses_the_stored_upload_with_new_options(client: FlaskClient, samples: Any) -> None:
    source = create(client, [("portrait.jpg", samples.jpeg)], kind="single")
    wait_for_job(client, source["status_url"])
    response = client.post(f"/api/v1/jobs/{source['id']}/rerun", data={"preset": "id-photo", "mask": "true"})
    assert response.status_code == 202, response.data
    rerun = response.get_json()
    assert rerun["source"] == source["id"] and rerun["id"] != source["id"]
    job = wait_for_job(client, rerun["status_url"])
    assert job["options"]["preset"] == "id-photo" and job["options"]["format"] == "jpeg"
    item = job["items"][0]
    assert item["name"] == "portrait.jpg" and item["state"] == "done"
    result = client.get(item["result_url"])
    assert result.mimetype == "image/jpeg" and Image.open(io.BytesIO(result.data)).size == (96, 128)
    assert Image.open(io.BytesIO(client.get(item["mask_url"]).data)).mode == "L"
    # A single stays single (no ZIP) and the source job is untouched.
    assert client.get(f"/api/v1/jobs?ids={rerun['id']}").get_json()["jobs"][0]["kind"] == "single"
    no_zip = client.get(rerun["results_url"])
    assert no_zip.status_code == 409 and no_zip.get_json()["error"] == "no_zip"
    assert no_zip.get_json()["item_url"].endswith("/items/0")
    assert client.get(source["status_url"]).get_json()["options"]["format"] == "png"


def test_rerun_refusals(client: FlaskClient, samples: Any) -> None:
    missing = client.post("/api/v1/jobs/" + "Q" * 22 + "/rerun")
    assert missing.status_code == 404 and missing.get_json()["error"] == "job_not_found"
    bad_only = create(client, [("notes.png", samples.text)])
    wait_for_job(client, bad_only["status_url"])
    nothing = client.post(f"/api/v1/jobs/{bad_only['id']}/rerun")
    assert nothing.status_code == 409 and nothing.get_json()["error"] == "nothing_to_rerun"
    good = create(client, [("a.jpg", samples.jpeg)])
    bad_option = client.post(f"/api/v1/jobs/{good['id']}/rerun", data={"erode": "999"})
    assert bad_option.status_code == 400 and bad_option.get_json()["error"] == "invalid_option"
    assert (
        client.post("/api/v1/jobs", data={"files": [(io.BytesIO(samples.jpeg), "a.jpg")], "kind": "x"}).status_code
        == 400
    )


def test_a_rerun_can_take_only_some_items_of_a_batch(client: FlaskClient, samples: Any) -> None:
    source = create(client, [("a.jpg", samples.jpeg), ("b.png", samples.png), ("c.jpg", samples.jpeg)])
    wait_for_job(client, source["status_url"])
    response = client.post(f"/api/v1/jobs/{source['id']}/rerun", data={"items": "2,1", "model": "general"})
    assert response.status_code == 202, response.data
    job = wait_for_job(client, response.get_json()["status_url"])
    assert [item["name"] for item in job["items"]] == ["c.jpg", "b.png"] and job["options"]["model"] == "general"
    assert all(item["state"] == "done" for item in job["items"])
    for bad in ("3", "1,1", "x", "-1", ","):
        refused = client.post(f"/api/v1/jobs/{source['id']}/rerun", data={"items": bad})
        assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_option", bad


def test_the_upload_itself_is_served_for_before_after(client: FlaskClient, samples: Any) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(samples.jpeg)).save(buffer, format="HEIF", quality=90)  # an iPhone's photo
    heic = buffer.getvalue()
    created = create(client, [("alice.jpg", samples.jpeg), ("notes.png", samples.text), ("phone.heic", heic)])
    job = wait_for_job(client, created["status_url"])
    assert job["items"][2]["state"] == "done", job["items"][2]
    from_phone = client.get(f"/api/v1/jobs/{job['id']}/items/2?input=1")
    assert from_phone.mimetype == "image/heic" and from_phone.data == heic
    upload = client.get(f"/api/v1/jobs/{job['id']}/items/0?input=1")
    assert upload.status_code == 200 and upload.mimetype == "image/jpeg" and upload.data == samples.jpeg
    named = client.get(f"/api/v1/jobs/{job['id']}/items/0?input=1&download=1")
    assert "attachment; filename=alice.jpg" in named.headers["Content-Disposition"]
    never_stored = client.get(f"/api/v1/jobs/{job['id']}/items/1?input=1")
    assert never_stored.status_code == 404 and never_stored.get_json()["error"] == "input_not_found"


# --- masks for one image ---------------------------------------------------------------------------------


def test_matte_with_mask_answers_a_zip_of_both(client: FlaskClient, samples: Any) -> None:
    data = {"file": (io.BytesIO(samples.jpeg), "portrait.jpg"), "mask": "true", "format": "webp"}
    response = client.post("/api/v1/matte", data=data)
    assert response.status_code == 200, response.data
    assert response.mimetype == "application/zip"
    assert "portrait.zip" in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert sorted(archive.namelist()) == ["portrait.webp", "portrait_mask.png"]
        mask = Image.open(io.BytesIO(archive.read("portrait_mask.png")))
        image = Image.open(io.BytesIO(archive.read("portrait.webp")))
    assert mask.mode == "L" and mask.size == image.size == (96, 128)


# --- expired links and the manifest ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "words"), [("en-GB,en;q=0.9", "This link has expired"), ("zh-CN,zh;q=0.9", "链接已过期")]
)
def test_an_expired_zip_link_opens_a_friendly_page(client: FlaskClient, language: str, words: str) -> None:
    headers = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Accept-Language": language}
    response = client.get("/api/v1/jobs/" + "E" * 22 + "/results.zip", headers=headers)
    assert response.status_code == 404 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert words in page and 'href="/"' in page
    # Scripts and <img> requests still get the JSON error.
    scripted = client.get("/api/v1/jobs/" + "E" * 22 + "/results.zip", headers={"Accept": "*/*"})
    assert scripted.mimetype == "application/json" and scripted.get_json()["error"] == "job_not_found"


def test_manifest_times_are_iso_8601(client: FlaskClient, samples: Any) -> None:
    created = create(client, [("a.jpg", samples.jpeg)])
    job = wait_for_job(client, created["status_url"])
    with zipfile.ZipFile(io.BytesIO(client.get(created["results_url"]).data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert ISO_UTC.match(manifest["created_at"]), manifest["created_at"]
    stamp = datetime.fromtimestamp(job["created_at"], tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert manifest["created_at"] == stamp
