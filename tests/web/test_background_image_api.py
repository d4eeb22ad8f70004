"""A background photo behind every cut-out (the file part ``background_image``) over HTTP, through a real worker:
checked at intake, stored with the job, reused by a rerun, and a body that only fails to decode in the worker
fails its items with the reason instead of being retried.

A flat backdrop must give exactly what the same colour gives: that pins the compositing down without caring
what the session's untrained network finds in the photo."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from .conftest import encode
from .helpers import wait_for_job
from .test_api_errors import assert_json_error, jobs_in_storage
from .test_browser import RESULT_TIMEOUT_MS, dispatch_file

FLAT = (10, 200, 30)


def _flat_backdrop() -> bytes:
    return encode(Image.new("RGB", (300, 500), FLAT), "PNG")


def _result_pixels(client: FlaskClient, job: dict[str, Any]) -> list[np.ndarray]:
    assert [item["state"] for item in job["items"]] == ["done"] * len(job["items"]), job
    return [np.asarray(Image.open(io.BytesIO(client.get(item["result_url"]).data))) for item in job["items"]]


@pytest.mark.parametrize(
    ("backdrop", "fields", "status", "code", "message"),
    [
        (b"this is a shopping list", {}, 422, "invalid_image", "the background image: "),
        (b"", {}, 422, "invalid_image", "the background image: "),
        (None, {"background_image": "true"}, 400, "invalid_option", "send it as a file"),
        ("flat", {"background": "#ffffff"}, 400, "invalid_option", "not both"),
    ],
)
def test_a_bad_or_missing_background_image_refuses_the_request(
    client: FlaskClient,
    samples: Any,
    web_settings: Any,
    backdrop: Any,
    fields: dict,
    status: int,
    code: str,
    message: str,
) -> None:
    before = jobs_in_storage(web_settings)
    data: dict[str, Any] = {"files": (io.BytesIO(samples.jpeg), "a.jpg"), **fields}
    if backdrop is not None:
        data["background_image"] = (io.BytesIO(_flat_backdrop() if backdrop == "flat" else backdrop), "bg.png")
    body = assert_json_error(client.post("/api/v1/jobs", data=data), status, code)
    assert message in body["message"]
    assert jobs_in_storage(web_settings) == before


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_flat_background_image_gives_what_its_colour_gives(client: FlaskClient, samples: Any) -> None:
    colour = "#{:02x}{:02x}{:02x}".format(*FLAT)
    files = [(io.BytesIO(samples.jpeg), "a.jpg"), (io.BytesIO(samples.png), "b.png")]
    backdrop = (io.BytesIO(_flat_backdrop()), "bg.png")
    with_image = client.post("/api/v1/jobs", data={"files": files, "background_image": backdrop})
    assert with_image.status_code == 202, with_image.data
    job = wait_for_job(client, with_image.get_json()["status_url"])
    assert job["options"]["background_image"] is True and job["options"]["background"] == "transparent"
    files = [(io.BytesIO(samples.jpeg), "a.jpg"), (io.BytesIO(samples.png), "b.png")]
    with_colour = client.post("/api/v1/jobs", data={"files": files, "background": colour})
    expected = _result_pixels(client, wait_for_job(client, with_colour.get_json()["status_url"]))
    got = _result_pixels(client, job)
    assert all(g.shape[2] == 3 and np.array_equal(g, e) for g, e in zip(got, expected, strict=True))

    # A rerun with other options keeps the job's background image when it asks for one, and needs one.
    rerun = client.post(f"/api/v1/jobs/{job['id']}/rerun", data={"background_image": "true", "format": "png"})
    assert rerun.status_code == 202, rerun.data
    again = _result_pixels(client, wait_for_job(client, rerun.get_json()["status_url"]))
    assert all(np.array_equal(a, e) for a, e in zip(again, expected, strict=True))
    plain_id = with_colour.get_json()["id"]
    assert_json_error(
        client.post(f"/api/v1/jobs/{plain_id}/rerun", data={"background_image": "true"}), 400, "invalid_option"
    )

    backdrop = (io.BytesIO(_flat_backdrop()), "bg.png")
    one = client.post("/api/v1/matte", data={"file": (io.BytesIO(samples.jpeg), "a.jpg"), "background_image": backdrop})
    assert one.status_code == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(one.data))), expected[0])


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_background_image_that_only_fails_to_decode_fails_its_items_with_the_reason(
    client: FlaskClient, samples: Any
) -> None:
    data = {
        "files": [(io.BytesIO(samples.jpeg), "a.jpg"), (io.BytesIO(samples.png), "b.png")],
        "background_image": (io.BytesIO(samples.truncated_jpeg), "bg.jpg"),  # a sound header, a cut-off body
    }
    response = client.post("/api/v1/jobs", data=data)
    assert response.status_code == 202, response.data
    job = wait_for_job(client, response.get_json()["status_url"])
    assert job["state"] == "done" and job["failed"] == 2
    for item in job["items"]:
        assert item["state"] == "failed" and item["error"].startswith("the background image: "), item


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_the_page_puts_a_chosen_photo_behind_the_cut_out_and_keeps_it_after_a_reload(page: Any, samples: Any) -> None:
    assert not page.is_visible("#backdrop-choice")
    with page.expect_file_chooser() as chooser:
        page.check("#opt-bg-image")  # no photo yet: picking the mode asks for one
    chooser.value.set_files(files=[{"name": "beach.png", "mimeType": "image/png", "buffer": _flat_backdrop()}])
    assert page.inner_text("#opt-backdrop-name") == "beach.png"
    with page.expect_response(lambda r: r.url.endswith("/api/v1/jobs") and r.request.method == "POST") as created:
        dispatch_file(page, "drop", "portrait.jpg", "image/jpeg", samples.jpeg)
    job_id = created.value.json()["id"]
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    options = page.request.get(created.value.url + f"/{job_id}").json()["options"]
    assert options["background_image"] is True

    page.reload()  # the file is gone from the page; the server still has it with the job
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    assert page.is_checked("#opt-bg-image") and page.inner_text("#opt-backdrop-name") == "the photo chosen before"
    with page.expect_response(lambda r: r.url.endswith("/rerun")) as rerun:
        page.select_option("#opt-format", "webp")
    assert rerun.value.status == 202
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    assert "Error" not in page.inner_text("#single-status")
