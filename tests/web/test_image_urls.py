"""Images named by URL (``image_url``): read by the intake from a real HTTP origin on this machine, through a
real worker; the request-forgery guard refuses local and private addresses unless the operator listed them."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image
from waitress import create_server

from matteflow import metrics
from matteflow.settings import Settings
from matteflow.submit import main as submit_main
from matteflow.web import create_app
from matteflow.web.fetch import ImageFetchError, fetch_image

from .helpers import serving_in_thread, wait_for_job


class Origin:
    """A small image host: what it serves, and the Host headers it was asked with."""

    def __init__(self, photo: bytes) -> None:
        self.photo = photo
        self.hosts: list[str] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                origin.hosts.append(self.headers.get("Host", ""))
                path = self.path.split("?", 1)[0]
                if path.startswith("/photos/"):
                    self._send(200, origin.photo)
                elif path == "/redirect":
                    self._redirect("/photos/moved.jpg")
                elif path == "/loop":
                    self._redirect("/loop")
                elif path == "/to-metadata":
                    self._redirect("http://169.254.169.254/latest/meta-data/")
                elif path == "/big.jpg":
                    self._send(200, origin.photo + bytes(2 * 1024 * 1024))
                elif path == "/slow.jpg":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(origin.photo)))
                    self.end_headers()
                    self.wfile.write(origin.photo[:100])
                    self.wfile.flush()
                    time.sleep(3)
                    self.wfile.write(origin.photo[100:])
                else:
                    self._send(404, b"not here")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def origin(samples: Any) -> Iterator[Origin]:
    host = Origin(samples.jpeg)
    thread = threading.Thread(target=host.server.serve_forever, daemon=True)
    thread.start()
    yield host
    host.server.shutdown()
    host.server.server_close()


def client_with(settings: Settings, job_client: Any, **changes: Any) -> FlaskClient:
    return create_app(settings.replace(**changes), job_client).test_client()


def test_image_urls_are_off_unless_the_operator_names_hosts(client: FlaskClient, origin: Origin) -> None:
    response = client.post("/api/v1/matte", data={"image_url": f"{origin.url}/photos/a.jpg"})
    assert response.status_code == 400 and response.get_json()["error"] == "url_not_allowed"
    assert "MATTEFLOW_FETCH_HOSTS" in response.get_json()["message"] and not origin.hosts


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


def test_one_url_through_matte(
    web_settings: Settings, job_client: Any, worker: Any, origin: Origin, samples: Any
) -> None:
    client = client_with(web_settings, job_client, fetch_hosts=f"127.0.0.1:{origin.port}")
    response = client.post("/api/v1/matte", data={"image_url": f"{origin.url}/photos/IMG_0001.jpg?w=800"})
    assert response.status_code == 200, response.data
    assert response.mimetype == "image/png" and "IMG_0001.png" in response.headers["Content-Disposition"]
    image = Image.open(io.BytesIO(response.data))
    assert image.mode == "RGBA" and image.size == Image.open(io.BytesIO(samples.jpeg)).size
    missing = client.post("/api/v1/matte", data={"image_url": f"{origin.url}/gone.jpg"})
    assert missing.status_code == 422 and missing.get_json()["error"] == "image_fetch_failed"
    assert "HTTP 404" in missing.get_json()["message"]
    both = client.post(
        "/api/v1/matte", data={"image_url": f"{origin.url}/photos/a.jpg", "file": (io.BytesIO(samples.jpeg), "a.jpg")}
    )
    assert both.status_code == 400 and both.get_json()["error"] == "too_many_files"
    many = client.post("/api/v1/jobs", data={"image_url": [f"{origin.url}/photos/{i}.jpg" for i in range(101)]})
    assert many.status_code == 400 and "at most 100 are read per request" in many.get_json()["message"]


def fetches(outcome: str) -> float:
    return metrics.make_registry().get_sample_value("matteflow_image_fetches_total", {"outcome": outcome}) or 0.0


def test_a_job_of_files_and_urls_where_bad_urls_fail_alone(
    web_settings: Settings, job_client: Any, worker: Any, origin: Origin, samples: Any
) -> None:
    before = {outcome: fetches(outcome) for outcome in metrics.FETCH_OUTCOMES}
    client = client_with(
        web_settings, job_client, fetch_hosts=f"127.0.0.1:{origin.port}", max_upload_mb=1, fetch_timeout_s=1.0
    )
    urls = [f"{origin.url}/{path}" for path in ("photos/a.jpg", "gone.jpg", "redirect", "big.jpg", "slow.jpg", "loop")]
    response = client.post(
        "/api/v1/jobs", data={"files": [(io.BytesIO(samples.jpeg), "upload.jpg")], "image_url": urls}
    )
    assert response.status_code == 202, response.data
    job = wait_for_job(client, response.get_json()["status_url"])
    items = job["items"]
    assert [item["name"] for item in items] == [
        "upload.jpg",
        "a.jpg",
        "gone.jpg",
        "moved.jpg",
        "big.jpg",
        "slow.jpg",
        "loop",
    ]
    assert [item["state"] for item in items] == ["done", "done", "failed", "done", "failed", "failed", "failed"]
    assert {items[i]["error_code"] for i in (2, 4, 5, 6)} == {"image_fetch_failed"}
    assert "HTTP 404" in items[2]["error"] and "larger than the limit of 1 MB" in items[4]["error"]
    assert "time" in items[5]["error"] and "redirects" in items[6]["error"]
    assert (job["done"], job["failed"]) == (3, 4)
    after = {outcome: fetches(outcome) for outcome in metrics.FETCH_OUTCOMES}
    assert {k: after[k] - before[k] for k in after} == {"fetched": 2, "failed": 4, "refused": 0}


def test_a_redirect_to_a_private_address_refuses_the_request(
    web_settings: Settings, job_client: Any, origin: Origin
) -> None:
    client = client_with(web_settings, job_client, fetch_hosts=f"127.0.0.1:{origin.port}")
    response = client.post(
        "/api/v1/jobs", data={"image_url": [f"{origin.url}/photos/a.jpg", f"{origin.url}/to-metadata"]}
    )
    assert response.status_code == 400 and response.get_json()["error"] == "url_not_allowed"
    assert "169.254.169.254" in response.get_json()["message"]


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
    with pytest.raises(Exception, match="private or local address"):
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
