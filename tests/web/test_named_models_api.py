"""The option ``model`` over HTTP: validation at intake, the OpenAPI document, the page's select, and the model
and confidence of each item once a real worker ran it."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from .helpers import wait_for_job
from .test_api_errors import assert_json_error, jobs_in_storage


@pytest.mark.parametrize("endpoint", ["/api/v1/jobs", "/api/v1/matte"])
def test_unknown_model_is_400_listing_the_names(
    client: FlaskClient, samples: Any, web_settings: Any, endpoint: str
) -> None:
    field = "files" if endpoint.endswith("jobs") else "file"
    before = jobs_in_storage(web_settings)
    response = client.post(endpoint, data={field: (io.BytesIO(samples.jpeg), "a.jpg"), "model": "resnet"})
    body = assert_json_error(response, 400, "invalid_option")
    assert "auto, people, general" in body["message"]
    assert jobs_in_storage(web_settings) == before  # nothing stored for a refused request


def test_openapi_and_page_offer_the_model_names(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    schema = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["model"]["enum"][:3] == ["auto", "people", "general"]
    assert {"model", "confidence"} <= set(spec["components"]["schemas"]["Item"]["properties"])
    page = client.get("/").get_data(as_text=True)
    for value in ("auto", "people", "general"):
        assert f'<option value="{value}"' in page
    assert '"checkBelow": 0.5' in page


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_items_carry_model_and_confidence(client: FlaskClient, samples: Any) -> None:
    data = {"files": [(io.BytesIO(samples.jpeg), "a.jpg"), (io.BytesIO(samples.png), "b.png")], "model": "people"}
    response = client.post("/api/v1/jobs", data=data)
    assert response.status_code == 202, response.data
    job = wait_for_job(client, response.get_json()["status_url"])
    assert [item["model"] for item in job["items"]] == ["people", "people"]
    assert all(0.0 <= item["confidence"] <= 1.0 for item in job["items"])
    one = client.post("/api/v1/matte", data={"file": (io.BytesIO(samples.jpeg), "a.jpg"), "model": "general"})
    assert one.status_code == 200, one.data
    assert one.headers["X-MatteFlow-Model"] == "general"
    assert 0.0 <= float(one.headers["X-MatteFlow-Confidence"]) <= 1.0
