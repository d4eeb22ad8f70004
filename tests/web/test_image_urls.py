"""Images named by URL (``image_url``) from a real HTTP origin on this machine: read by the web process for
/matte and by the real worker for a job's items; the request-forgery guard refuses local and private addresses
unless the operator listed them (the test settings list 127.0.0.1, web and worker alike)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image
from waitress import create_server

from matteflow import metrics
from matteflow.fetch import FetchRefused, ImageFetchError, fetch_image
from matteflow.settings import Settings
from matteflow.submit import main as submit_main
from matteflow.web import create_app

from .helpers import Origin, serving_in_thread, wait_for_job


def client_with(settings: Settings, job_client: Any, **changes: Any) -> FlaskClient:
    return create_app(settings.replace(**changes), job_client).test_client()


def test_image_urls_are_off_unless_the_operator_names_hosts(
    web_settings: Settings, job_client: Any, origin: Origin
) -> None:
    client = client_with(web_settings, job_client, fetch_hosts="")
    asked = len(origin.hosts)
    for path, field in (("/api/v1/matte", "image_url"), ("/api/v1/jobs", "image_url")):
        response = client.post(path, data={field: f"{origin.url}/photos/a.jpg"})
        assert response.status_code == 400 and response.get_json()["error"] == "url_not_allowed"
        assert "MATTEFLOW_FETCH_HOSTS" in response.get_json()["message"]
    assert len(origin.hosts) == asked  # nothing was read


@pytest.mark.parametrize(
    ("url", "code", "words"),
    [
        ("http://127.0.0.1:{port}/photos/a.jpg", "url_not_allowed", "private or local address"),
        ("http://localhost:{port}/photos/a.jpg", "url_not_allowed", "private or local address"),
        ("http://169.254.169.254/latest/meta-data/", "url_not_allowed", "private or local address"),
        ("http://[::1]:{port}/photos/a.jpg", "url_not_allowed", "private or local address"),
        ("http://10.1.2.3/photo.jpg", "url_not_allowed", "private or local address"),
        ("ftp://example.com/photo.jpg", "invalid_option", "must be an http(s) URL"),
        ("http://user:secret@example.com/photo.jpg", "invalid_option", "must not carry credentials"),
    ],
)
def test_any_public_host_still_refuses_local_and_private_addresses(
    web_settings: Settings, job_client: Any, origin: Origin, url: str, code: str, words: str
) -> None:
    client = client_with(web_settings, job_client, fetch_hosts="*")
    response = client.post("/api/v1/jobs", data={"image_url": url.format(port=origin.port)})
    body = response.get_json()
    assert response.status_code == 400 and body["error"] == code and words in body["message"], body


def fetches(outcome: str) -> float:
    return metrics.make_registry().get_sample_value("matteflow_image_fetches_total", {"outcome": outcome}) or 0.0


def test_one_url_through_matte(
    web_settings: Settings, job_client: Any, worker: Any, origin: Origin, samples: Any
) -> None:
    before = {outcome: fetches(outcome) for outcome in metrics.FETCH_OUTCOMES}
    client = client_with(web_settings, job_client, max_upload_mb=1)
    response = client.post("/api/v1/matte", data={"image_url": f"{origin.url}/photos/IMG_0001.jpg?w=800"})
    assert response.status_code == 200, response.data
    assert response.mimetype == "image/png" and "IMG_0001.png" in response.headers["Content-Disposition"]
    image = Image.open(io.BytesIO(response.data))
    assert image.mode == "RGBA" and image.size == Image.open(io.BytesIO(samples.jpeg)).size
    missing = client.post("/api/v1/matte", data={"image_url": f"{origin.url}/gone.jpg"})
    assert missing.status_code == 422 and missing.get_json()["error"] == "image_fetch_failed"
    assert "HTTP 404" in missing.get_json()["message"]
    big = client.post("/api/v1/matte", data={"image_url": f"{origin.url}/big.jpg"})
    assert big.status_code == 422 and "larger than the limit of 1 MB" in big.get_json()["message"]
    both = client.post(
        "/api/v1/matte", data={"image_url": f"{origin.url}/photos/a.jpg", "file": (io.BytesIO(samples.jpeg), "a.jpg")}
    )
    assert both.status_code == 400 and both.get_json()["error"] == "too_many_files"
    after = {outcome: fetches(outcome) for outcome in metrics.FETCH_OUTCOMES}
    assert {k: after[k] - before[k] for k in after} == {"fetched": 1, "failed": 2, "refused": 0}


def test_a_job_of_files_and_urls_read_by_the_worker(
    client: FlaskClient, worker: Any, origin: Origin, samples: Any
) -> None:
    """The worker reads each URL as its item's first step: a permanent failure (404, a redirect loop) fails
    that item at once, a transient one (503, a timeout) is retried, and what was read is stored as the upload."""
    paths = ("photos/a.jpg", "gone.jpg", "redirect", "flaky.jpg", "slow.jpg", "loop", "to-metadata")
    urls = [f"{origin.url}/{path}" for path in paths]
    response = client.post(
        "/api/v1/jobs", data={"files": [(io.BytesIO(samples.jpeg), "upload.jpg")], "image_url": urls}
    )
    assert response.status_code == 202, response.data
    job = wait_for_job(client, response.get_json()["status_url"], timeout=120)
    items = job["items"]
    names = ["upload.jpg", "a.jpg", "gone.jpg", "redirect", "flaky.jpg", "slow.jpg", "loop", "to-metadata"]
    assert [item["name"] for item in items] == names
    states = [item["state"] for item in items]
    assert states == ["done", "done", "failed", "done", "done", "failed", "failed", "failed"], items
    assert "HTTP 404" in items[2]["error"] and "redirects" in items[6]["error"]
    assert origin.flaky_calls == 2  # the 503 was tried again, and the second answer was the photo
    assert items[5]["error"].startswith("failed after 3 attempts") and "in time" in items[5]["error"]
    assert {items[i]["error_code"] for i in (2, 5, 6)} == {"image_fetch_failed"}
    # A redirect to the cloud metadata address is refused by the worker's own check.
    assert items[7]["error_code"] == "url_not_allowed" and "169.254.169.254" in items[7]["error"]
    # What the worker read is the item's upload now: served as the "before", and what a rerun starts from.
    stored = client.get(f"/api/v1/jobs/{job['id']}/items/1?input=1")
    assert stored.status_code == 200 and stored.data == samples.jpeg


def test_the_checked_address_is_the_one_connected_to(web_settings: Settings, origin: Origin, samples: Any) -> None:
    """Resolved once and pinned (no second lookup a rebinding DNS could answer differently); the request
    still names the host it was given."""
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["203.0.113.9"]  # a second answer would go elsewhere

    settings = web_settings.replace(fetch_hosts=f"images.example.test:{origin.port}")
    name, body = fetch_image(f"http://images.example.test:{origin.port}/photos/cat.jpg", settings, resolve=resolver)
    with body:
        assert name == "cat.jpg" and body.read() == samples.jpeg
    assert lookups == ["images.example.test"] and origin.hosts[-1] == f"images.example.test:{origin.port}"
    # HTTPS goes to the pinned address too, verifying the certificate for the name (here: no TLS at all).
    with pytest.raises(ImageFetchError, match="could not fetch the image from images.example.test") as failed:
        url = f"https://images.example.test:{origin.port}/photos/cat.jpg"
        fetch_image(url, settings, resolve=lambda host, port: ["127.0.0.1"])
    assert "refused" not in str(failed.value)  # it reached the origin and failed in the handshake
    # Under "*" every address a name has must be public: one private address among public ones is refused.
    mixed = web_settings.replace(fetch_hosts="*")
    with pytest.raises(FetchRefused, match="private or local address"):
        fetch_image("http://mixed.example.test/a.jpg", mixed, resolve=lambda host, port: ["8.8.8.8", "10.0.0.5"])
    with pytest.raises(ImageFetchError, match="does not resolve"):
        fetch_image("http://nowhere.invalid/a.jpg", mixed)


def test_submit_sends_urls_beside_files(
    web_settings: Settings, job_client: Any, worker: Any, origin: Origin, samples: Any, tmp_path: Any, capsys: Any
) -> None:
    """``matteflow submit`` takes URLs among its inputs and sends them as image_url for the server to read."""
    photo = tmp_path / "local.jpg"
    photo.write_bytes(samples.jpeg)
    out = tmp_path / "results.zip"
    application = create_app(web_settings.replace(fetch_hosts=f"127.0.0.1:{origin.port}"), job_client)
    with serving_in_thread(create_server(application, host="127.0.0.1", port=0, threads=2)) as server:
        inputs = [str(photo), f"{origin.url}/photos/remote.jpg", f"{origin.url}/gone.jpg"]
        code = submit_main([*inputs, "--server", server, "-o", str(out), "--no-progress", "--poll-interval", "0.2"])
    err = capsys.readouterr().err
    assert code == 1 and "failed: gone.jpg: could not fetch the image" in err and "HTTP 404" in err, err
    with zipfile.ZipFile(out) as archive:
        assert {"local.png", "remote.png", "manifest.json"} <= set(archive.namelist())


def test_intake_resolves_each_distinct_host_once(web_settings: Settings) -> None:
    from matteflow.fetch import check_image_urls

    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["10.0.0.7"] if host == "inside.example.test" else ["93.184.215.14"]

    settings = web_settings.replace(fetch_hosts="*")
    urls = [f"https://cdn{i % 3}.example.test/p/{i}.jpg" for i in range(30)]
    check_image_urls(urls, settings, resolve=resolver)
    assert sorted(lookups) == ["cdn0.example.test", "cdn1.example.test", "cdn2.example.test"]
    with pytest.raises(FetchRefused, match="inside.example.test"):
        check_image_urls([*urls, "http://inside.example.test/a.jpg"], settings, resolve=resolver)
