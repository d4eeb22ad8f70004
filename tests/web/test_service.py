"""The page, the probes, /metrics and the OpenAPI document (test client on the real Redis-backed client)."""

from __future__ import annotations

import io
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from matteflow.core.options import OPTION_NAMES, PRESETS
from matteflow.files import sanitize_name
from matteflow.web import create_app

# --- the page ----------------------------------------------------------------------------------------------


def test_page_serves_html_with_its_assets(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for element_id in ("single-input", "batch-input", "batch-folder", "compare-range", "opt-preset", "lang-toggle"):
        assert f'id="{element_id}"' in html
    assert "webkitdirectory" in html
    for preset in PRESETS:
        assert f'value="{preset}"' in html
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert {"/static/app.js", "/static/i18n.js", "/static/app.css"} <= set(assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_page_text_exists_in_both_languages(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    i18n = client.get("/static/i18n.js").get_data(as_text=True)
    english, chinese = i18n.split("zh: {", 1)
    keys = set(re.findall(r'data-i18n(?:-placeholder|-aria)?="([^"]+)"', html))
    assert keys, "the page has no translatable text"
    for key in keys:
        assert f'"{key}":' in english, f"{key} missing in English"
        assert f'"{key}":' in chinese, f"{key} missing in Chinese"


# --- probes ------------------------------------------------------------------------------------------------


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_503_json_when_redis_is_unreachable(web_settings: Any) -> None:
    from matteflow.workers.client import JobClient

    # A real client pointed at a port nothing listens on: Redis is genuinely unreachable.
    down = web_settings.replace(redis_url="redis://127.0.0.1:1/0")
    client = create_app(down, JobClient(down)).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "not_ready"
    assert body["redis"] is False
    assert "workers" not in body  # readiness never waits on a worker ping


# --- metrics -----------------------------------------------------------------------------------------------


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_label_requests_by_url_rule_and_count_upload_bytes(client: FlaskClient, samples: Any) -> None:
    before = client.get("/metrics").get_data(as_text=True)
    job_id = "BBBBBBBBBBBBBBBBBBBBBB"
    for _ in range(3):
        client.get(f"/api/v1/jobs/{job_id}")
    client.post("/api/v1/matte", data={"file": (io.BytesIO(samples.text), "notes.png")})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert job_id not in text, "a job id leaked into a label"
    rule = "/api/v1/jobs/<job_id>"
    labels = {"method": "GET", "endpoint": rule, "status": "404"}
    assert (
        _sample(text, "matteflow_http_requests_total", **labels)
        - _sample(before, "matteflow_http_requests_total", **labels)
        == 3
    )
    assert _sample(text, "matteflow_http_request_seconds_count", method="GET", endpoint=rule) >= 3
    uploaded = _sample(text, "matteflow_upload_bytes_total") - _sample(before, "matteflow_upload_bytes_total")
    assert uploaded == len(samples.text)
    # Queue gauges come from `matteflow exporter` only (every web pod would report the same backlog again).
    assert "matteflow_queue_length" not in text and "matteflow_redis_up" not in text


def test_unmatched_paths_share_one_label(client: FlaskClient) -> None:
    client.get("/no/such/page/123")
    text = client.get("/metrics").get_data(as_text=True)
    assert "/no/such/page/123" not in text
    assert _sample(text, "matteflow_http_requests_total", endpoint="<unmatched>", status="404") >= 1


# --- OpenAPI -----------------------------------------------------------------------------------------------


def test_openapi_is_valid_and_describes_every_route(app: Flask, client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)  # raises on an invalid OpenAPI 3 document

    def as_openapi(rule: str) -> str:
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)

    routes = {
        (as_openapi(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops if method != "parameters"}
    assert routes - {("/", "get")} == documented
    job_fields = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(OPTION_NAMES) <= set(job_fields["schema"]["properties"])
    assert job_fields["schema"]["properties"]["preset"]["enum"] == list(PRESETS)


# --- names -------------------------------------------------------------------------------------------------


def test_sanitize_name() -> None:
    assert sanitize_name("../../x.jpg") == "x.jpg"
    assert sanitize_name("C:\\Users\\me\\photo.png") == "photo.png"
    assert sanitize_name("..") == "image"
    assert sanitize_name("") == "image"
    assert sanitize_name(None, fallback="image_3") == "image_3"
    assert sanitize_name(".bashrc") == "bashrc"
    assert sanitize_name("证件照 01.jpg") == "证件照 01.jpg"
    assert sanitize_name('a<b>:"c|?*.png') == "a_b_c_.png"
    assert sanitize_name("new\nline.jpg") == "new_line.jpg"
    long_name = sanitize_name("a" * 500 + ".jpeg")
    assert len(long_name) == 120 and long_name.endswith(".jpeg")
