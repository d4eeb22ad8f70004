"""Request validation and the error mapping, through Flask's test client on the real Redis-backed JobClient.

None of these requests reaches a worker: each is refused at intake, and every refusal must be the JSON body
``{"error", "message"}`` with the right status — never HTML, never a 500.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from matteflow.web import create_app


def assert_json_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def jobs_in_storage(settings: Any) -> set[str]:
    return {p.name for p in settings.jobs_dir.iterdir()} if settings.jobs_dir.is_dir() else set()


# --- single image endpoint: bad uploads are answered at once -------------------------------------------


@pytest.mark.parametrize(
    ("sample", "status", "code"),
    [
        ("empty", 422, "invalid_image"),
        ("text", 422, "invalid_image"),
        ("pixel_bomb", 413, "image_too_large"),
    ],
)
def test_matte_refuses_bad_image(client: FlaskClient, samples: Any, sample: str, status: int, code: str) -> None:
    data = {"file": (io.BytesIO(getattr(samples, sample)), "photo.png")}
    body = assert_json_error(client.post("/api/v1/matte", data=data), status, code)
    if sample == "pixel_bomb":
        assert "pixels" in body["message"] and "limit" in body["message"]


def test_matte_without_file_is_400(client: FlaskClient) -> None:
    assert_json_error(client.post("/api/v1/matte", data={"format": "png"}), 400, "no_file")


def test_matte_with_two_files_is_400(client: FlaskClient, samples: Any) -> None:
    data = {"file": [(io.BytesIO(samples.jpeg), "a.jpg"), (io.BytesIO(samples.jpeg), "b.jpg")]}
    assert_json_error(client.post("/api/v1/matte", data=data), 400, "too_many_files")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("format", "gif", "format"),
        ("preset", "passport", "preset"),
        ("alpha_threshold", "300", "alpha_threshold"),
        ("background", "blue-ish", "background"),
        ("erode", "-1", "erode"),
        ("feather", "maybe", "feather"),
        ("colour", "#ffffff", "unknown option"),
    ],
)
def test_bad_option_is_400_naming_the_option(
    client: FlaskClient, samples: Any, field: str, value: str, fragment: str
) -> None:
    for url, file_field in (("/api/v1/matte", "file"), ("/api/v1/jobs", "files")):
        data = {file_field: (io.BytesIO(samples.jpeg), "a.jpg"), field: value}
        body = assert_json_error(client.post(url, data=data), 400, "invalid_option")
        assert fragment in body["message"]


def test_option_in_query_string_is_validated_too(client: FlaskClient, samples: Any) -> None:
    data = {"file": (io.BytesIO(samples.jpeg), "a.jpg")}
    assert_json_error(client.post("/api/v1/matte?format=bmp", data=data), 400, "invalid_option")


# --- batch intake ------------------------------------------------------------------------------------------


def test_job_without_files_is_400_and_stores_nothing(client: FlaskClient, web_settings: Any) -> None:
    before = jobs_in_storage(web_settings)
    assert_json_error(client.post("/api/v1/jobs", data={"preset": "avatar"}), 400, "no_files")
    # An empty file input (no name, no bytes) is what browsers send when nothing was chosen: still no files.
    empty_input = {"files": (io.BytesIO(b""), "")}
    assert_json_error(client.post("/api/v1/jobs", data=empty_input), 400, "no_files")
    assert jobs_in_storage(web_settings) == before


def test_bad_option_stores_nothing(client: FlaskClient, samples: Any, web_settings: Any) -> None:
    before = jobs_in_storage(web_settings)
    data = {"files": [(io.BytesIO(samples.jpeg), "a.jpg")], "format": "tiff"}
    assert_json_error(client.post("/api/v1/jobs", data=data), 400, "invalid_option")
    assert jobs_in_storage(web_settings) == before


def test_too_many_files_is_400(web_settings: Any, job_client: Any, samples: Any) -> None:
    client = create_app(web_settings.replace(max_files_per_job=2), job_client).test_client()
    data = {"files": [(io.BytesIO(samples.jpeg), f"{i}.jpg") for i in range(3)]}
    body = assert_json_error(client.post("/api/v1/jobs", data=data), 400, "too_many_files")
    assert "2" in body["message"]


@pytest.mark.parametrize("url", ["/api/v1/jobs", "/api/v1/matte"])
def test_oversize_body_is_413_json(web_settings: Any, job_client: Any, url: str) -> None:
    client = create_app(web_settings.replace(max_upload_mb=1), job_client).test_client()
    field = "files" if url.endswith("jobs") else "file"
    data = {field: (io.BytesIO(b"\xff" * (1024 * 1024 + 10)), "huge.jpg")}
    body = assert_json_error(client.post(url, data=data), 413, "payload_too_large")
    assert "1 MB" in body["message"]


# --- unknown jobs, routes and methods ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/jobs/{id}"),
        ("GET", "/api/v1/jobs/{id}/results.zip"),
        ("GET", "/api/v1/jobs/{id}/items/0"),
        ("DELETE", "/api/v1/jobs/{id}"),
    ],
)
@pytest.mark.parametrize("job_id", ["AAAAAAAAAAAAAAAAAAAAAA", "not-an-id", "x" * 300])
def test_unknown_job_is_404(client: FlaskClient, method: str, path: str, job_id: str) -> None:
    response = client.open(path.format(id=job_id), method=method)
    assert_json_error(response, 404, "job_not_found")


def test_unknown_route_is_404_json(client: FlaskClient) -> None:
    body = assert_json_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert "/api/v1/nothing-here" in body["message"]


def test_negative_item_index_is_404_json(client: FlaskClient) -> None:
    assert_json_error(client.get("/api/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA/items/-1"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/v1/matte", "POST"),
        ("PUT", "/api/v1/jobs", "POST"),
        ("POST", "/healthz", "GET"),
        ("PATCH", "/api/v1/jobs/AAAAAAAAAAAAAAAAAAAAAA", "DELETE"),
    ],
)
def test_wrong_method_is_405_json(client: FlaskClient, method: str, path: str, allowed: str) -> None:
    response = client.open(path, method=method)
    assert_json_error(response, 405, "method_not_allowed")
    assert allowed in response.headers["Allow"]


# --- names from the client never become paths ------------------------------------------------------------


def test_sanitised_names_keep_files_inside_storage(client: FlaskClient, samples: Any, web_settings: Any) -> None:
    storage = web_settings.storage_dir.resolve()
    outside = storage.parent / "x.jpg"
    names = ["../../x.jpg", "..\\..\\x.jpg", "/etc/passwd.jpg", ".hidden.jpg"]
    data = {"files": [(io.BytesIO(samples.jpeg), name) for name in names]}
    response = client.post("/api/v1/jobs", data=data)
    assert response.status_code == 202, response.data
    job_id = response.get_json()["id"]
    try:
        job = client.get(f"/api/v1/jobs/{job_id}").get_json()
        shown = [item["name"] for item in job["items"]]
        assert shown[:2] == ["x.jpg", "x.jpg"]
        assert all("/" not in name and "\\" not in name and not name.startswith(".") for name in shown)
        assert not outside.exists()
        inputs = sorted((web_settings.jobs_dir / job_id / "in").iterdir())
        assert len(inputs) == len(names)
        for path in inputs:
            assert path.resolve().is_relative_to(storage / "jobs" / job_id / "in")
    finally:
        client.delete(f"/api/v1/jobs/{job_id}")
