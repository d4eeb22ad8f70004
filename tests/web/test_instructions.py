"""The instruction over HTTP: the dry-run parse endpoint, and the `instruction` field of /api/v1/jobs and
/api/v1/matte run through the real worker (real Redis, real Celery)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image


def test_parse_json_returns_options_and_explanation(client: FlaskClient) -> None:
    response = client.post("/api/v1/instructions:parse", json={"instruction": "蓝底二寸证件照 xyz", "lang": "zh"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["options"]["id_size"] == "2inch" and body["options"]["background"] == "#438edb"
    assert body["options"]["format"] == "jpeg" and body["interpreter"] == "offline"
    assert [m["text"] for m in body["mapped"]] == ["蓝底", "二寸 证件照"]
    assert body["not_understood"] == ["xyz"]
    assert body["explanation"].startswith("已识别：") and body["explanation"].endswith("是否确认？")


def test_parse_form_with_explicit_options_that_win(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/instructions:parse", data={"instruction": "PNG for a slide", "format": "webp", "lang": "en"}
    )
    body = response.get_json()
    assert body["options"]["format"] == "webp" and body["options"]["background"] == "transparent"
    assert body["overridden"] == [{"option": "format", "instruction": "png", "explicit": "webp"}]
    assert "explicit format=webp wins" in body["explanation"]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"instruction": ""}, "no_instruction"),
        ({"instruction": "蓝底", "lang": "fr"}, "invalid_option"),
        ({"instruction": "透明 jpg"}, "invalid_option"),
        ({"instruction": "蓝底", "colour": "red"}, "invalid_option"),
    ],
)
def test_parse_errors_are_clear_400s(client: FlaskClient, payload: dict[str, str], error: str) -> None:
    response = client.post("/api/v1/instructions:parse", json=payload)
    assert response.status_code == 400
    assert response.get_json()["error"] == error


def test_parse_is_in_the_openapi_document(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/instructions:parse" in document["paths"]
    matte_fields = document["paths"]["/api/v1/matte"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert {"instruction", "keep", "id_size", "max_kb"} <= set(matte_fields["schema"]["properties"])


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_job_with_an_instruction_runs_the_options_it_became(client: FlaskClient, samples: Any) -> None:
    response = client.post(
        "/api/v1/jobs",
        data={"files": [(io.BytesIO(samples.jpeg), "me.jpg")], "instruction": "红底一寸照", "lang": "zh"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["instruction"]["options"]["id_size"] == "1inch"
    assert "红底" in body["instruction"]["explanation"]
    deadline = time.monotonic() + 90
    while True:
        job = client.get(body["status_url"]).get_json()
        if job["state"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert job["state"] == "done" and job["done"] == 1, job
    assert job["options"]["preset"] == "id-1inch" and job["options"]["background"] == "#d9262e"
    image = Image.open(io.BytesIO(client.get(job["items"][0]["result_url"]).data))
    assert image.format == "JPEG" and image.size == (295, 413)


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_matte_with_an_instruction(client: FlaskClient, samples: Any) -> None:
    response = client.post(
        "/api/v1/matte",
        data={"file": (io.BytesIO(samples.jpeg), "me.jpg"), "instruction": "US passport photo", "max_kb": "40"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    image = Image.open(io.BytesIO(response.data))
    assert image.size == (600, 600) and image.info["dpi"] == pytest.approx((300, 300), abs=0.5)
    assert len(response.data) <= 40 * 1024
    options = json.loads(response.headers["X-MatteFlow-Options"])
    assert options["id_size"] == "2x2in" and options["max_kb"] == 40


class _ChatServer:
    """A real chat-completions endpoint on a free port (the full one, with timeouts, is in tests/core)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.content, self.status, self.requests = "{}", 200, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append({"body": json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
                data = json.dumps({"choices": [{"message": {"content": server.content}}]}).encode()
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_parse_asks_the_configured_llm_for_unknown_words(web_settings: Any, job_client: Any) -> None:
    from matteflow.web import create_app

    chat = _ChatServer()
    try:
        chat.content = '{"options": {"background": "#ffffff", "feather": true}, "not_understood": []}'
        settings = web_settings.replace(llm_url=chat.url, llm_model="local", llm_timeout_s=5.0)
        client = create_app(settings, job_client).test_client()
        body = client.post("/api/v1/instructions:parse", json={"instruction": "白底，加点闪光特效"}).get_json()
        assert body["interpreter"] == "llm" and body["options"]["feather"] is True
        assert chat.requests and chat.requests[0]["body"]["model"] == "local"
        chat.status = 500  # the LLM fails: the offline reading stands, and the answer says why
        body = client.post("/api/v1/instructions:parse", json={"instruction": "白底，加点闪光特效"}).get_json()
        assert body["interpreter"] == "offline" and body["options"]["feather"] is False
        assert any("HTTP 500" in note for note in body["notes"])
    finally:
        chat.close()
