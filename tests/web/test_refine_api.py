"""Edge refinement (option ``refine``) over HTTP and on the page: documented, validated at intake, carried
through a real worker into the job's stored options, offered by the page's panel in real Chromium."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image

from .helpers import wait_for_job
from .test_api_errors import assert_json_error, jobs_in_storage
from .test_browser import RESULT_TIMEOUT_MS, dispatch_file


def test_refine_is_documented_and_a_bad_value_is_refused_before_anything_is_stored(
    client: FlaskClient, samples: Any, web_settings: Any
) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    schema = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["refine"]["type"] == "boolean"
    assert '<input type="checkbox" name="refine" id="opt-refine">' in client.get("/").get_data(as_text=True)
    before = jobs_in_storage(web_settings)
    response = client.post("/api/v1/jobs", data={"files": (io.BytesIO(samples.jpeg), "a.jpg"), "refine": "hair"})
    assert "refine must be true or false" in assert_json_error(response, 400, "invalid_option")["message"]
    assert jobs_in_storage(web_settings) == before


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_refined_job_runs_through_a_real_worker(client: FlaskClient, samples: Any) -> None:
    files = [(io.BytesIO(samples.jpeg), "a.jpg"), (io.BytesIO(samples.png), "b.png")]
    response = client.post("/api/v1/jobs", data={"files": files, "refine": "true", "preset": "ecommerce"})
    assert response.status_code == 202, response.data
    job = wait_for_job(client, response.get_json()["status_url"])
    assert job["options"]["refine"] is True and job["options"]["preset"] == "ecommerce"
    assert [item["state"] for item in job["items"]] == ["done", "done"], job["items"]
    one = client.post("/api/v1/matte", data={"file": (io.BytesIO(samples.jpeg), "a.jpg"), "refine": "true"})
    assert one.status_code == 200 and one.mimetype == "image/png"
    assert Image.open(io.BytesIO(one.data)).size == (96, 128)


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_the_page_sends_refine_when_it_is_ticked_and_shows_it_after_a_reload(page: Any, samples: Any) -> None:
    assert not page.is_checked("#opt-refine")
    page.check("#opt-refine")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/jobs") and r.request.method == "POST") as created:
        dispatch_file(page, "drop", "portrait.jpg", "image/jpeg", samples.jpeg)
    job_id = created.value.json()["id"]
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    assert page.request.get(created.value.url + f"/{job_id}").json()["options"]["refine"] is True

    page.reload()  # the panel is restored from the job's stored options
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    assert page.is_checked("#opt-refine")
    page.select_option("#opt-preset", "id-photo")  # a preset fills the panel: no refinement in this one
    assert not page.is_checked("#opt-refine")
    page.select_option("#opt-preset", "ecommerce")  # products: the edge solved against the photo
    assert page.is_checked("#opt-refine")
    page.select_option("#opt-preset", "avatar")  # profile pictures: hair solved against the photo
    assert page.is_checked("#opt-refine")

    page.uncheck("#opt-refine")  # switched off under a preset that refines: the job must not refine
    with page.expect_response(lambda r: r.url.endswith("/api/v1/jobs") and r.request.method == "POST") as created:
        page.click("#single-reset")
        dispatch_file(page, "drop", "portrait.jpg", "image/jpeg", samples.jpeg)
    options = page.request.get(created.value.url + f"/{created.value.json()['id']}").json()["options"]
    assert options["preset"] == "avatar" and options["refine"] is False
