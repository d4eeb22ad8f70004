"""The option ``model`` over HTTP: validation at intake, the OpenAPI document, the page's select, and the model
and confidence of each item once a real worker ran it."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from matteflow.submit import main as submit_main

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
    assert "auto, people, general, ensemble" in body["message"]
    assert jobs_in_storage(web_settings) == before  # nothing stored for a refused request


def test_openapi_and_page_offer_the_model_names(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    schema = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["model"]["enum"][:4] == ["auto", "people", "general", "ensemble"]
    assert {"model", "confidence"} <= set(spec["components"]["schemas"]["Item"]["properties"])
    page = client.get("/").get_data(as_text=True)
    for value in ("auto", "people", "general", "ensemble"):
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
    both = client.post("/api/v1/matte", data={"file": (io.BytesIO(samples.jpeg), "a.jpg"), "model": "ensemble"})
    assert both.status_code == 200, both.data
    # The test worker has one network behind both names: nothing to combine, and it says which one ran.
    assert both.headers["X-MatteFlow-Model"] == "people"


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_submit_passes_the_model_and_the_manifest_reports_it(live_server: Any, samples: Any, tmp_path: Path) -> None:
    image = tmp_path / "portrait.jpg"
    image.write_bytes(samples.jpeg)
    out = tmp_path / "r.zip"
    assert (
        submit_main([str(image), "--server", live_server.url, "-o", str(out), "--no-progress", "--model", "general"])
        == 0
    )
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["options"]["model"] == "general"
    assert manifest["items"][0]["model"] == "general"
    assert 0.0 <= manifest["items"][0]["confidence"] <= 1.0


def test_submit_unknown_model_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as caught:
        submit_main([str(tmp_path), "-o", str(tmp_path / "r.zip"), "--model", "resnet"])
    assert caught.value.code == 2
    assert "auto" in capsys.readouterr().err


def test_the_deployment_default_model_applies_where_a_request_names_none(
    web_settings: Any, job_client: Any, samples: Any
) -> None:
    from matteflow.web import create_app

    client = create_app(web_settings.replace(default_model="ensemble"), job_client).test_client()
    spec = client.get("/api/v1/openapi.json").get_json()
    schema = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["model"]["default"] == "ensemble"
    assert '"defaultModel": "ensemble"' in client.get("/").get_data(as_text=True)
    models = {}
    for name, extra in {"unnamed": {}, "preset": {"preset": "ecommerce"}, "named": {"model": "people"}}.items():
        response = client.post("/api/v1/jobs", data={"files": [(io.BytesIO(samples.jpeg), "a.jpg")], **extra})
        assert response.status_code == 202, response.data
        models[name] = client.get(response.get_json()["status_url"]).get_json()["options"]["model"]
    assert models == {"unnamed": "ensemble", "preset": "ensemble", "named": "people"}
    # The instruction preview shows what a job would get.
    preview = client.post("/api/v1/instructions:parse", data={"instruction": "white background"}).get_json()
    assert preview["options"]["model"] == "ensemble"
