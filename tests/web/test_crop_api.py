"""Crops to the subject (options ``crop``, ``crop_margin``, preset ``marketplace``) over HTTP and on the page:
validated at intake, carried through a real worker, offered by the page's panel in real Chromium.

The session worker runs the untrained network, whose matte is a fog over the whole photo: its subject box is
the photo, so a square crop is the photo centred on a square of its long side."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from .helpers import wait_for_job
from .test_api_errors import assert_json_error, jobs_in_storage
from .test_browser import RESULT_TIMEOUT_MS, dispatch_file


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"crop": "circle"}, "crop must be one of none, subject, square"),
        ({"crop_margin": "10"}, "crop_margin is the margin of a crop"),
        ({"crop": "square", "preset": "passport-2x2in"}, "crop and id_size both frame the output"),
        ({"crop": "subject", "crop_margin": "-1"}, "crop_margin must be from 0 to 100"),
        ({"output_size": "1000x"}, "output_size must be WIDTHxHEIGHT"),
        ({"output_size": "800", "preset": "id-2inch"}, "output_size and id_size both frame the output"),
    ],
)
def test_bad_crop_options_are_refused_before_anything_is_stored(
    client: FlaskClient, samples: Any, web_settings: Any, fields: dict, message: str
) -> None:
    before = jobs_in_storage(web_settings)
    response = client.post("/api/v1/jobs", data={"files": (io.BytesIO(samples.jpeg), "a.jpg"), **fields})
    assert message in assert_json_error(response, 400, "invalid_option")["message"]
    assert jobs_in_storage(web_settings) == before


def test_openapi_and_page_offer_the_crop(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    schema = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["crop"]["enum"] == ["none", "subject", "square"]
    assert schema["properties"]["crop_margin"]["maximum"] == 100
    assert "marketplace" in schema["properties"]["preset"]["enum"]
    assert schema["properties"]["output_size"]["example"] == "1000x1000"
    page = client.get("/").get_data(as_text=True)
    assert '<option value="square"' in page and '<option value="marketplace"' in page


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_square_crop_runs_through_a_real_worker(client: FlaskClient, samples: Any) -> None:
    files = [(io.BytesIO(samples.jpeg), "wide.jpg"), (io.BytesIO(samples.png), "tall.png")]
    data = {"files": files, "crop": "square", "crop_margin": "10", "background": "#ffffff", "format": "png"}
    response = client.post("/api/v1/jobs", data=data)
    assert response.status_code == 202, response.data
    job = wait_for_job(client, response.get_json()["status_url"])
    sizes = []
    for item in job["items"]:
        assert item["state"] == "done", item
        sizes.append(Image.open(io.BytesIO(client.get(item["result_url"]).data)).size)
    # The fog reaches every edge of the photo: no margin on a cut side, the short side padded to a square.
    assert sizes == [(128, 128), (100, 100)]
    one = client.post("/api/v1/matte", data={"file": (io.BytesIO(samples.jpeg), "a.jpg"), "preset": "marketplace"})
    assert one.status_code == 200 and one.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(one.data)).size == (128, 128)
    sized = {"file": (io.BytesIO(samples.jpeg), "a.jpg"), "preset": "marketplace", "output_size": "1000x1000"}
    big = client.post("/api/v1/matte", data=sized)
    assert big.status_code == 200 and Image.open(io.BytesIO(big.data)).size == (1000, 1000)


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_the_page_sets_the_crop_from_the_marketplace_preset_and_renders_a_square(page: Any, samples: Any) -> None:
    assert page.input_value("#opt-crop") == "none" and not page.is_visible("#opt-crop-margin")
    page.select_option("#opt-preset", "marketplace")
    assert page.input_value("#opt-crop") == "square" and page.input_value("#opt-crop-margin") == "8"
    assert page.is_visible("#opt-crop-margin")
    dispatch_file(page, "drop", "portrait.jpg", "image/jpeg", samples.jpeg)
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    after = page.locator("#after-img")
    assert after.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [128, 128]
    # A square is not the photo's frame: no before/after seam over it, the result alone.
    assert "reframed" in (page.get_attribute("#compare", "class") or "")
    assert not page.is_visible("#before-img") and not page.is_visible("#compare-range")

    with page.expect_request(lambda request: request.url.endswith("/rerun")) as rerun:
        page.fill("#opt-crop-margin", "20")
    assert 'name="crop_margin"\r\n\r\n20\r\n' in (rerun.value.post_data or "")
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    page.fill("#opt-output-size", "300x")  # half-typed: outlined, nothing sent
    assert page.locator("#opt-output-size").evaluate("input => !input.checkValidity()")
    with page.expect_request(lambda request: request.url.endswith("/rerun")) as rerun:
        page.fill("#opt-output-size", "300x200")
    assert 'name="output_size"\r\n\r\n300x200\r\n' in (rerun.value.post_data or "")
    page.wait_for_function(
        "() => document.getElementById('single-result').dataset.state === 'done'"
        " && document.getElementById('after-img').naturalWidth === 300",
        timeout=RESULT_TIMEOUT_MS,
    )
    assert after.evaluate("img => img.naturalHeight") == 200
    page.fill("#opt-output-size", "")
    page.select_option("#opt-crop", "none")  # the whole photo again, re-rendered on screen
    assert not page.is_visible("#opt-crop-margin")
    page.wait_for_function(
        "() => document.getElementById('single-result').dataset.state === 'done'"
        " && document.getElementById('after-img').naturalWidth === 96",
        timeout=RESULT_TIMEOUT_MS,
    )
    assert page.is_visible("#before-img") and page.is_visible("#compare-range")


def test_what_the_engine_could_not_do_is_said(client: FlaskClient, worker: Any, samples: Any) -> None:
    """A size limit no quality meets: the result still comes, with the engine's warning on the item and in a
    header of /matte (the worker used to drop warnings; only the CLI printed them)."""
    noise = np.random.default_rng(3).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # noise does not compress
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    photo = buffer.getvalue()
    fields = {"max_kb": "1", "format": "png"}  # transparent: the noise shows through the fog of the test model
    response = client.post("/api/v1/jobs", data={"files": [(io.BytesIO(photo), "a.png")], **fields})
    job = wait_for_job(client, response.get_json()["status_url"])
    (item,) = job["items"]
    assert item["state"] == "done" and len(item["warnings"]) == 1 and "PNG is lossless" in item["warnings"][0]
    assert [c["code"] for c in item["warning_codes"]] == ["png_too_big"] and item["warning_codes"][0]["params"][
        "limit"
    ] == 1
    one = client.post("/api/v1/matte", data={"file": (io.BytesIO(photo), "a.png"), **fields})
    assert one.status_code == 200 and json.loads(one.headers["X-MatteFlow-Warnings"]) == item["warnings"]
    plain = client.post("/api/v1/matte", data={"file": (io.BytesIO(samples.jpeg), "a.jpg")})
    assert "X-MatteFlow-Warnings" not in plain.headers
    done = wait_for_job(
        client,
        client.post("/api/v1/jobs", data={"files": [(io.BytesIO(samples.jpeg), "b.jpg")]}).get_json()["status_url"],
    )
    assert done["items"][0]["warnings"] == []
