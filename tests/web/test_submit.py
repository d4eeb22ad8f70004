"""``matteflow submit`` against the live server (waitress + real Redis + real worker)."""

from __future__ import annotations

import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from waitress import create_server

from matteflow import submit
from matteflow.submit import main
from matteflow.web import create_app
from matteflow.workers.client import JobClient

from .helpers import noise_jpeg, serving_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def test_submit_folder_and_files_with_one_bad(live_server: Any, samples: Any, tmp_path: Path, capsys: Any) -> None:
    photos = tmp_path / "photos"
    (photos / "day2").mkdir(parents=True)
    (photos / "alice.jpg").write_bytes(samples.jpeg)
    (photos / "day2" / "bob.png").write_bytes(samples.png)
    (photos / "day2" / "notes.txt").write_text("sidecar, skipped inside folders")
    bad = tmp_path / "broken.png"
    bad.write_bytes(samples.text)
    out = tmp_path / "out" / "results.zip"

    code = main([str(photos), str(bad), "--server", live_server.url, "-o", str(out), "--poll-interval", "0.2"])

    err = capsys.readouterr().err
    assert code == 1, err  # one image failed: reported, and the exit status says so
    assert "failed: broken.png: not a supported image" in err
    assert f"wrote {out}: 2 done, 1 failed" in err
    with zipfile.ZipFile(out) as archive:
        assert set(archive.namelist()) == {"alice.png", "bob.png", "manifest.json"}
        manifest = json.loads(archive.read("manifest.json"))
    assert "broken.png" in json.dumps(manifest)
    assert not list(out.parent.glob("*.part"))


def test_submit_all_good_with_options(live_server: Any, samples: Any, tmp_path: Path, capsys: Any) -> None:
    image = tmp_path / "portrait.jpg"
    image.write_bytes(samples.jpeg)
    out = tmp_path / "r.zip"
    args = [str(image), "--server", live_server.url + "/", "-o", str(out), "--format", "webp", "--no-progress"]
    assert main([*args, "--background", "#00ff00", "--erode", "2"]) == 0, capsys.readouterr().err
    with zipfile.ZipFile(out) as archive:
        assert set(archive.namelist()) == {"portrait.webp", "manifest.json"}


def test_submit_sends_a_background_image(live_server: Any, samples: Any, tmp_path: Path, capsys: Any) -> None:
    image, backdrop = tmp_path / "portrait.jpg", tmp_path / "beach.png"
    image.write_bytes(samples.jpeg)
    backdrop.write_bytes(samples.png)
    out = tmp_path / "r.zip"
    args = [
        str(image),
        "--server",
        live_server.url,
        "-o",
        str(out),
        "--no-progress",
        "--background-image",
        str(backdrop),
    ]
    assert main(args) == 0, capsys.readouterr().err
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert Image.open(io.BytesIO(archive.read("portrait.png"))).mode == "RGB"  # opaque: the photo is behind
    assert manifest["options"]["background_image"] is True
    missing = main(
        [str(image), "--server", live_server.url, "-o", str(out), "--background-image", str(tmp_path / "x.jpg")]
    )
    assert missing != 0 and "--background-image" in capsys.readouterr().err


def test_submit_unreachable_server_is_one_line(samples: Any, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(submit, "RETRY_BASE_S", 0.05)
    image = tmp_path / "a.jpg"
    image.write_bytes(samples.jpeg)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main([str(image), "--server", f"http://127.0.0.1:{port}", "-o", str(tmp_path / "r.zip"), "--retries", "2"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert lines[-1].startswith("matteflow submit: cannot reach the server")  # after one more try
    assert sum("trying again in" in line for line in lines) == 1
    assert not (tmp_path / "r.zip").exists()


class LossyGateway:
    """A gateway in front of the live server that loses answers: the first job request is passed on (the
    server creates the job), then the connection is dropped before the answer reaches the client, as a
    proxy restart or a broken mobile link does; a status poll meets a 502 once. Everything else passes."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.created: list[str] = []  # job ids the server answered, in order
        self.dropped = self.gateway_errors = 0
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _relay(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if method == "GET" and "/api/v1/jobs/" in self.path and not gateway.gateway_errors:
                    gateway.gateway_errors += 1
                    self.send_error(502, "upstream went away")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(method, gateway.upstream + self.path, data=body, headers=headers, timeout=60)
                if method == "POST" and self.path == "/api/v1/jobs" and answer.status_code == 202:
                    gateway.created.append(answer.json()["id"])
                    if not gateway.dropped:
                        gateway.dropped += 1
                        self.close_connection = True  # the job exists, the client never hears of it
                        return
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Location", "Retry-After", "Idempotent-Replayed"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._relay("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._relay("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_submit_retries_a_lost_answer_without_creating_a_second_job(
    live_server: Any, samples: Any, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(submit, "RETRY_BASE_S", 0.05)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"p{i}.jpg").write_bytes(samples.jpeg)
    gateway = LossyGateway(live_server.url)
    threading.Thread(target=gateway.server.serve_forever, daemon=True).start()
    out = tmp_path / "r.zip"
    try:
        code = main([str(photos), "--server", gateway.url, "-o", str(out), "--no-progress", "--poll-interval", "0.2"])
    finally:
        gateway.server.shutdown()
        gateway.server.server_close()
    err = capsys.readouterr().err
    assert code == 0, err
    assert gateway.dropped == 1 and gateway.gateway_errors == 1 and "trying again" in err
    # The retry carried the same Idempotency-Key: the server answered with the job it had made, not a new one.
    assert len(gateway.created) == 2 and len(set(gateway.created)) == 1
    with zipfile.ZipFile(out) as archive:
        assert set(archive.namelist()) == {"p0.png", "p1.png", "p2.png", "manifest.json"}


def test_submit_inputs_listed_in_a_file(live_server: Any, samples: Any, tmp_path: Path, capsys: Any) -> None:
    first, second = tmp_path / "first.jpg", tmp_path / "second.png"
    first.write_bytes(samples.jpeg)
    second.write_bytes(samples.png)
    listing = tmp_path / "feed.txt"
    listing.write_text(f"# product feed\n{first}\n\n{second}\n")
    out = tmp_path / "r.zip"
    assert main(["--from", str(listing), "--server", live_server.url, "-o", str(out), "--no-progress"]) == 0
    with zipfile.ZipFile(out) as archive:
        assert set(archive.namelist()) == {"first.png", "second.png", "manifest.json"}
    listing.write_text("# nothing today\n")
    assert main(["--from", str(listing), "-o", str(out)]) == 1
    assert "no inputs listed in --from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["-o", str(out)])
    assert exit_info.value.code == 2


def test_submit_missing_input(tmp_path: Path, capsys: Any) -> None:
    code = main([str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "r.zip")])
    assert code == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_submit_server_refusal_is_reported(live_server: Any, tmp_path: Path, capsys: Any) -> None:
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    (empty_folder / "readme.txt").write_text("no images here")
    code = main([str(empty_folder), "--server", live_server.url, "-o", str(tmp_path / "r.zip")])
    assert code == 1
    assert "no images found" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--format", "gif"], ["--alpha-threshold", "999"], ["--background", "blueish"]])
def test_submit_bad_option_is_a_usage_error(tmp_path: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "-o", str(tmp_path / "r.zip"), *bad])
    assert exit_info.value.code == 2


def test_an_interrupted_submit_resumes_its_job_instead_of_sending_it_again(
    live_server: Any, samples: Any, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """Ctrl-C while waiting leaves <output>.job.json; the same command again waits for that job (nothing is
    uploaded twice); another request (other options) does not take it over."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"p{i}.jpg").write_bytes(samples.jpeg)
    out = tmp_path / "r.zip"
    command = [str(photos), "--server", live_server.url, "-o", str(out), "--no-progress", "--poll-interval", "0.2"]
    jobs_before = {p.name for p in live_server.settings.jobs_dir.iterdir()}

    def interrupted(*args: Any) -> dict[str, Any]:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(submit, "wait_for_job", interrupted)
        with pytest.raises(KeyboardInterrupt):
            main(command)
    state = out.with_name("r.zip.job.json")
    assert state.is_file() and not out.exists()
    created = {p.name for p in live_server.settings.jobs_dir.iterdir()} - jobs_before
    assert len(created) == 1

    assert main(command) == 0, capsys.readouterr().err
    assert "resuming job" in capsys.readouterr().err
    assert {p.name for p in live_server.settings.jobs_dir.iterdir()} - jobs_before == created  # no second job
    with zipfile.ZipFile(out) as archive:
        assert set(archive.namelist()) == {"p0.png", "p1.png", "manifest.json"}
    assert not state.exists()  # done: the next run is a new job

    with monkeypatch.context() as patched:
        patched.setattr(submit, "wait_for_job", interrupted)
        with pytest.raises(KeyboardInterrupt):
            main(command)
    assert main([*command, "--format", "webp"]) == 0  # another request: a new job, not the saved one
    assert "resuming job" not in capsys.readouterr().err
    with zipfile.ZipFile(out) as archive:
        assert "p0.webp" in archive.namelist()


@pytest.fixture(scope="module")
def small_server(service_settings: Any) -> Iterator[Any]:
    """A second live server on the same Redis, storage and worker that takes 1 MB per request."""
    settings = service_settings.replace(max_upload_mb=1)
    with serving_in_thread(create_server(create_app(settings, JobClient(settings)), host="127.0.0.1", port=0)) as url:
        yield url


def test_a_folder_bigger_than_one_request_goes_as_one_job_in_parts(
    small_server: str, service_settings: Any, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """2.7 MB of photos to a server that takes 1 MB per request: one open job, four requests and a close, one
    ZIP. Interrupted after its second part, the same command sends only the parts the server lacks."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        (photos / f"p{i}.jpg").write_bytes(noise_jpeg(i))
    out = tmp_path / "r.zip"
    command = [str(photos), "--server", small_server, "-o", str(out), "--no-progress", "--poll-interval", "0.2"]
    jobs_before = {p.name for p in service_settings.jobs_dir.iterdir()}
    sent: list[str] = []
    add_files = submit.ApiClient.add_files

    def add_then_stop(self: Any, files_url: str, uploads: list[Any], *rest: Any) -> dict[str, Any]:
        answer = add_files(self, files_url, uploads, *rest)
        sent.append(uploads[0].name)
        if len(sent) == 1:
            raise KeyboardInterrupt  # Ctrl-C after the server took part 2 (its answer is in, not yet saved)
        return answer

    with monkeypatch.context() as patched:
        patched.setattr(submit.ApiClient, "add_files", add_then_stop)
        with pytest.raises(KeyboardInterrupt):
            main(command)
        assert main(command) == 0, capsys.readouterr().err
    assert "resuming job" in capsys.readouterr().err
    # Part 2 went again under its key (the server gave back what it had added), then parts 3 and 4; one job.
    assert sent == ["p1.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    created = {p.name for p in service_settings.jobs_dir.iterdir()} - jobs_before
    assert len(created) == 1
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert set(archive.namelist()) == {"p0.png", "p1.png", "p2.png", "p3.png", "manifest.json"}
    assert [item["name"] for item in manifest["items"]] == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert not out.with_name("r.zip.job.json").exists()

    # A file no request can carry is refused before anything is sent.
    (photos / "huge.jpg").write_bytes(noise_jpeg(9, (1000, 1000)))
    assert main(command) == 1
    assert "huge.jpg is 1.2 MB, over what one request may carry" in capsys.readouterr().err
    (photos / "huge.jpg").unlink()
    with monkeypatch.context() as patched:  # more files than the server takes per job: said before any upload
        patched.setattr(submit.ApiClient, "limits", lambda self: {"max_upload_mb": 1, "max_files_per_job": 3})
        assert main(command) == 1
    assert "4 images, but the server takes at most 3 per job" in capsys.readouterr().err
    assert {p.name for p in service_settings.jobs_dir.iterdir()} - jobs_before == created
