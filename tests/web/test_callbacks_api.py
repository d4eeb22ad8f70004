"""``callback_url`` at intake: a host the server may not call is refused before anything is stored; an allowed
one is recorded and reported in the job's status (delivery itself: tests/integration/test_callbacks.py)."""

from __future__ import annotations

import io
from typing import Any

from flask.testing import FlaskClient

from .test_api_errors import assert_json_error, jobs_in_storage


def test_a_callback_to_a_host_not_allowed_is_refused(client: FlaskClient, samples: Any, web_settings: Any) -> None:
    before = jobs_in_storage(web_settings)
    for url in ("http://10.0.0.1/hook", "http://169.254.169.254/latest", "file:///etc/passwd"):
        data = {"files": (io.BytesIO(samples.jpeg), "a.jpg"), "callback_url": url}
        assert_json_error(client.post("/api/v1/jobs", data=data), 400, "invalid_option")
    assert jobs_in_storage(web_settings) == before


def test_an_allowed_callback_is_recorded_and_shown(client: FlaskClient, samples: Any) -> None:
    data = {"files": (io.BytesIO(samples.jpeg), "a.jpg"), "callback_url": "http://127.0.0.1:9/hook"}
    response = client.post("/api/v1/jobs", data=data)
    assert response.status_code == 202, response.data
    status = client.get(response.get_json()["status_url"]).get_json()
    assert status["callback"] in ("pending", "delivered", "gave_up")
    assert "callback_url" not in status["options"]  # a job field, not a matting option
    plain = client.post("/api/v1/jobs", data={"files": (io.BytesIO(samples.jpeg), "b.jpg")}).get_json()
    assert client.get(plain["status_url"]).get_json()["callback"] is None
