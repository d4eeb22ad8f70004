"""``matteflow submit INPUT... --server URL -o OUT.zip [options]``: the HTTP API's own client.

Uploads files (folders recursively) as one job, follows its progress with a progress bar, and downloads the
results ZIP. A folder bigger than one request may carry (the server's ``GET /api/v1/limits``) goes as one open
job in parts: still one job and one ZIP. Failures end with one clear line on stderr and exit status 1; usage
errors exit 2. Failed items are listed one per line and also make the exit status 1, but the ZIP with the other
results is still written.
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
from tqdm import tqdm
from urllib3.fields import RequestField

from matteflow.core.cropping import CROP_MODES
from matteflow.core.errors import InvalidOptionError
from matteflow.core.imageio import is_image_name
from matteflow.core.options import FORMAT_ALIASES, FORMATS, PRESETS, parse_options
from matteflow.core.registry import MODEL_ALIASES, MODEL_NAMES
from matteflow.files import temp_file_beside, write_atomic
from matteflow.inputlist import add_input_list_argument, listed_inputs
from matteflow.settings import Settings
from matteflow.urls import is_url

# Connect quickly, but give a large upload or a busy server time to answer.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0
DOWNLOAD_CHUNK = 1 << 20


class MultipartStream:
    """A multipart/form-data body read from disk as requests sends it: fields, then each file in 1 MiB
    pieces, so memory stays flat however large the batch. Its length is known up front (requests sends an
    exact Content-Length), and ``on_read(n)`` is told of every piece (the progress bar). Deliberately no
    ``tell``/``seek``: requests would take an unseekable ``tell`` as "length unknown" and send it chunked."""

    def __init__(
        self, fields: list[tuple[str, str]], files: list[tuple[str, str, Path]], on_read: Callable[[int], object]
    ) -> None:
        self.boundary = binascii.hexlify(os.urandom(16)).decode()
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._segments: list[bytes | Path] = []
        for name, value in fields:
            self._part(RequestField(name, value))
            self._segments += [value.encode(), b"\r\n"]
        for field_name, file_name, path in files:
            self._part(RequestField(field_name, b"", filename=file_name), "application/octet-stream")
            self._segments += [path, b"\r\n"]
        self._segments.append(f"--{self.boundary}--\r\n".encode())
        self.length = sum(len(s) if isinstance(s, bytes) else s.stat().st_size for s in self._segments)
        self._on_read = on_read
        self._current: io.BufferedReader | io.BytesIO | None = None

    def _part(self, field: RequestField, content_type: str | None = None) -> None:
        field.make_multipart(content_type=content_type)
        self._segments.append(f"--{self.boundary}\r\n".encode() + field.render_headers().encode())

    def __len__(self) -> int:
        return self.length

    def read(self, size: int | None = -1) -> bytes:
        wanted = DOWNLOAD_CHUNK if size is None or size < 0 else size
        while True:
            if self._current is None:
                if not self._segments:
                    return b""
                segment = self._segments.pop(0)
                self._current = open(segment, "rb") if isinstance(segment, Path) else io.BytesIO(segment)  # noqa: SIM115
            chunk = self._current.read(wanted)
            if chunk:
                self._on_read(len(chunk))
                return chunk
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def __enter__(self) -> MultipartStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SubmitError(Exception):
    """A failure to report as one line (server unreachable, refused request, timeout)."""


class TransientError(SubmitError):
    """A failure worth another try: no connection, no answer in time, a proxy's 502/503/504, a busy server."""


# Answers a later try may not get: a gateway that lost the server, a busy server (503 + Retry-After), a job
# whose first request (same Idempotency-Key) is still being created (409).
TRANSIENT_STATUSES = (409, 502, 503, 504)
# Tries of each request before the error is reported (--retries), and the first wait between them (doubling,
# at most RETRY_MAX_S; a Retry-After from the server wins when it is longer): 1 + 2 + 4 + 8 s by default.
ATTEMPTS = 5
RETRY_BASE_S = 1.0
RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class Upload:
    name: str
    path: Path


def collect_inputs(inputs: list[str]) -> list[Upload]:
    """Files as given, plus the images found (recursively, sorted) in the folders given; URLs are not files
    (they are sent as ``image_url``, for the server to read).

    A file named explicitly is always sent (the server judges it); inside folders only image suffixes are
    taken and hidden files are not, so sidecar files, ``.DS_Store`` and macOS's ``._photo.jpg`` are skipped.
    """
    uploads: list[Upload] = []
    for raw in inputs:
        path = Path(raw)
        if is_url(raw):
            continue
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
            uploads.extend(Upload(p.name, p) for p in found)
        elif path.is_file():
            uploads.append(Upload(path.name, path))
        else:
            raise SubmitError(f"no such file or folder: {raw}")
    if not uploads and not any(is_url(raw) for raw in inputs):
        raise SubmitError("no images found in " + ", ".join(inputs))
    return uploads


def _api_error(response: requests.Response) -> str:
    """The server's JSON error message, or the status line when the body is not ours (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return f"{body['message']} (HTTP {response.status_code} {body.get('error', '')})".replace(" )", ")")
    return f"HTTP {response.status_code} {response.reason}"


class ApiClient:
    """Thin wrapper over the JSON API: one session, absolute URLs, errors as :class:`SubmitError`."""

    def __init__(self, server: str, attempts: int = ATTEMPTS) -> None:
        self.server = server.rstrip("/") + "/"
        self.session = requests.Session()
        self.attempts = max(1, attempts)

    def url(self, path: str) -> str:
        return urljoin(self.server, path.lstrip("/"))

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, self.url(path), timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), **kwargs)
        except requests.ConnectionError as exc:
            raise TransientError(f"cannot reach the server at {self.server} ({type(exc).__name__})") from exc
        except requests.Timeout as exc:
            raise TransientError(f"the server at {self.server} did not answer in time") from exc
        except requests.RequestException as exc:  # a malformed URL, too many redirects, ...
            raise SubmitError(f"request to {self.server} failed: {exc}") from exc

    def _checked(self, response: requests.Response, expected: int, what: str) -> requests.Response:
        """``response`` when it has the ``expected`` status; else the error, transient where a retry may do."""
        if response.status_code == expected:
            return response
        error = TransientError if response.status_code in TRANSIENT_STATUSES else SubmitError
        failure = error(f"{what}: {_api_error(response)}")
        failure.retry_after = response.headers.get("Retry-After")  # type: ignore[attr-defined]
        raise failure

    def retrying(self, attempt: Callable[[], Any]) -> Any:
        """``attempt()`` until it does not fail transiently, at most ``self.attempts`` times, waiting longer
        each time (or as the server's Retry-After says); the last failure is raised."""
        for number in range(1, self.attempts + 1):
            try:
                return attempt()
            except TransientError as exc:
                if number == self.attempts:
                    raise
                wait = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (number - 1))
                asked = getattr(exc, "retry_after", None)
                if asked and str(asked).isdecimal():
                    wait = max(wait, min(RETRY_MAX_S, float(asked)))
                print(f"matteflow submit: {exc}; trying again in {wait:g} s", file=sys.stderr)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def create_job(
        self,
        uploads: list[Upload],
        fields: list[tuple[str, str]],
        progress: bool,
        backdrop: Path | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """POST the job: ``fields`` are (name, value) pairs (a name may repeat: ``image_url``). Sent again when
        the answer does not arrive, with the same ``Idempotency-Key`` (``key``, a new one when None): the
        server gives the job the first try created instead of making a second one."""
        parts = [("files", u.name, u.path) for u in uploads]
        if backdrop is not None:
            parts.append(("background_image", backdrop.name, backdrop))
        return self._post_files("/api/v1/jobs", fields, parts, key or uuid.uuid4().hex, progress, "uploading")

    def add_files(self, files_url: str, uploads: list[Upload], key: str, progress: bool, label: str) -> dict[str, Any]:
        """POST one more part of an open job (``POST .../files``), safe to send again under its ``key``."""
        parts = [("files", u.name, u.path) for u in uploads]
        return self._post_files(files_url, [], parts, key, progress, label)

    def _post_files(
        self,
        path: str,
        fields: list[tuple[str, str]],
        parts: list[tuple[str, str, Path]],
        key: str,
        progress: bool,
        label: str,
    ) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            with tqdm(unit="B", unit_scale=True, desc=label, disable=not progress, file=sys.stderr) as bar:
                body = MultipartStream(fields, parts, bar.update)
                bar.total = len(body)
                with body:
                    response = self._request(
                        "POST", path, data=body, headers={"Content-Type": body.content_type, "Idempotency-Key": key}
                    )
            return self._checked(response, 202, "the server refused the files").json()

        return self.retrying(attempt)

    def close_job(self, close_url: str) -> None:
        """Tell an open job that every part is sent (closing twice is harmless, so it is simply retried)."""
        self.retrying(lambda: self._checked(self._request("POST", close_url), 200, "cannot close the job"))

    def limits(self) -> dict[str, Any] | None:
        """The server's ``GET /api/v1/limits``, or None from a server too old to have it."""

        def attempt() -> dict[str, Any] | None:
            response = self._request("GET", "/api/v1/limits")
            if response.status_code == 404:
                return None
            return self._checked(response, 200, "cannot read the server's limits").json()

        return self.retrying(attempt)

    def job_found(self, status_url: str) -> bool:
        """Whether the server still has the job (False once it expired or was deleted: 404)."""

        def attempt() -> bool:
            response = self._request("GET", status_url)
            if response.status_code in (404, 410):
                return False
            self._checked(response, 200, "cannot read the job status")
            return True

        return self.retrying(attempt)

    def job_status(self, status_url: str) -> dict[str, Any]:
        """The job's status; a blip (no connection, a gateway error) is tried again, not the end of the wait."""
        return self.retrying(
            lambda: self._checked(self._request("GET", status_url), 200, "cannot read the job status").json()
        )

    def download(self, url: str, out: Path) -> None:
        """Stream ``url`` to ``out`` through a temp file, so a broken download never leaves a partial ZIP; one
        that breaks off is started again."""
        out.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> None:
            response = self._checked(self._request("GET", url, stream=True), 200, "cannot download the results")
            fd, tmp = temp_file_beside(out, ".part")
            try:
                with os.fdopen(fd, "wb") as handle:
                    for chunk in response.iter_content(DOWNLOAD_CHUNK):
                        handle.write(chunk)
                os.replace(tmp, out)
            except requests.RequestException as exc:
                Path(tmp).unlink(missing_ok=True)
                raise TransientError(f"the download broke off ({type(exc).__name__})") from exc
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

        self.retrying(attempt)


def wait_for_job(client: ApiClient, status_url: str, timeout_s: float, poll_s: float, progress: bool) -> dict[str, Any]:
    """Poll until the job is done or failed; :class:`SubmitError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    status = client.job_status(status_url)
    with tqdm(total=status["total"], unit="img", desc="matting", disable=not progress, file=sys.stderr) as bar:
        while True:
            bar.update(status["done"] + status["failed"] - bar.n)
            if status["state"] in ("done", "failed"):
                return status
            if time.monotonic() >= deadline:
                finished = status["done"] + status["failed"]
                raise SubmitError(
                    f"timed out after {timeout_s:g} s: {finished} of {status['total']} images finished; "
                    f"the job goes on at {client.url(status_url)}; the same command again waits for it"
                )
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            status = client.job_status(status_url)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    default_server = f"http://{settings.web_host}:{settings.web_port}"
    parser = argparse.ArgumentParser(
        prog="matteflow submit",
        description="Send images to a MatteFlow server as one batch job and download the results ZIP.",
    )
    add_input_list_argument(parser)
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image files, folders (searched recursively) or http(s) URLs (the server reads those itself, if its "
        "MATTEFLOW_FETCH_HOSTS allows)",
    )
    parser.add_argument("--server", default=default_server, help=f"server URL (default {default_server})")
    parser.add_argument("-o", "--output", required=True, type=Path, help="where to write the results ZIP")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the job (default 3600)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between status checks")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--retries",
        type=int,
        default=ATTEMPTS,
        metavar="N",
        help=f"tries of each request when the connection drops or a gateway fails (default {ATTEMPTS}); the "
        "job is sent again with the same Idempotency-Key, so it is never created twice",
    )
    group = parser.add_argument_group("matting options (as in the API)")
    group.add_argument("--preset", choices=list(PRESETS))
    group.add_argument("--model", choices=[*MODEL_NAMES, *MODEL_ALIASES], help="default auto")
    group.add_argument("--background", help="'transparent' or a colour like '#ffffff'")
    group.add_argument("--background-image", metavar="PATH", help="a photo to put behind every cut-out")
    group.add_argument("--format", choices=[*FORMATS, *FORMAT_ALIASES])
    group.add_argument("--alpha-threshold", type=int, metavar="0-255")
    group.add_argument("--erode", type=int, metavar="PX")
    group.add_argument("--feather", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None, help="finer hair and fur")
    group.add_argument("--shadow", action=argparse.BooleanOptionalAction, default=None, help="a soft floor shadow")
    group.add_argument("--max-side", type=int, metavar="PX")
    group.add_argument("--mask", action=argparse.BooleanOptionalAction, default=None, help="also keep alpha masks")
    group.add_argument("--keep", choices=["all", "main"], help="main: only the main person(s)")
    group.add_argument("--crop", choices=CROP_MODES, help="subject: trim to the subject; square: centred on a square")
    group.add_argument("--crop-margin", type=int, metavar="PCT", help="with --crop: room around the subject (%%)")
    group.add_argument("--output-size", metavar="WxH", help="scale every result to exactly this, e.g. 1000x1000")
    group.add_argument("--id-size", help="crop a real ID photo of this size (see the server's openapi.json)")
    group.add_argument("--max-kb", type=int, metavar="KB", help="largest output file")
    group.add_argument("--sheet", action="store_true", default=None, help="ID photos laid out on 4x6 in paper")
    group.add_argument("--say", metavar="TEXT", help="what you want in words, read by the server; options win")
    parser.add_argument("--callback-url", metavar="URL", help="the server POSTs the job's outcome here when it ends")
    return parser


def option_fields(args: argparse.Namespace) -> dict[str, str]:
    """The options the user gave, as the API's form fields (validated here first: a bad value is a usage
    error before anything is uploaded)."""
    given = {
        "preset": args.preset,
        "model": args.model,
        "background": args.background,
        "format": args.format,
        "alpha_threshold": args.alpha_threshold,
        "erode": args.erode,
        "feather": args.feather,
        "refine": args.refine,
        "shadow": args.shadow,
        "max_side": args.max_side,
        "mask": args.mask,
        "keep": args.keep,
        "id_size": args.id_size,
        "max_kb": args.max_kb,
        "sheet": args.sheet,
        "crop": args.crop,
        "crop_margin": args.crop_margin,
        "output_size": args.output_size,
    }
    given = {name: value for name, value in given.items() if value is not None}
    parse_options({**given, "background_image": bool(args.background_image)})
    fields = {name: str(value).lower() if isinstance(value, bool) else str(value) for name, value in given.items()}
    if args.say:
        fields["instruction"] = args.say  # read on the server (offline lexicon, or its LLM when configured)
    if args.callback_url:
        fields["callback_url"] = args.callback_url  # checked by the server against the hosts it may call
    return fields


# A request's body as the server counts it, against max_upload_mb: the files plus their multipart headers and
# the option fields. A part is filled to this share of the limit, less a fixed allowance.
PART_SHARE = 0.95
PART_ALLOWANCE_BYTES = 64 * 1024


def split_parts(uploads: list[Upload], max_upload_mb: int, first_extra: int = 0) -> list[list[Upload]]:
    """``uploads`` in order, in parts that each fit one request under ``max_upload_mb`` (the first also carries
    ``first_extra`` bytes: the background image). Raises SubmitError for a file no request can carry."""
    budget = int(max_upload_mb * 1024 * 1024 * PART_SHARE) - PART_ALLOWANCE_BYTES
    parts: list[list[Upload]] = [[]]
    size = first_extra
    for upload in uploads:
        bytes_ = upload.path.stat().st_size
        if bytes_ > budget:
            raise SubmitError(
                f"{upload.path} is {bytes_ / 1e6:.1f} MB, over what one request may carry to this server "
                f"({max_upload_mb} MB, MATTEFLOW_MAX_UPLOAD_MB)"
            )
        if parts[-1] and size + bytes_ > budget:
            parts.append([])
            size = 0
        parts[-1].append(upload)
        size += bytes_
    return parts


class JobState:
    """``<output>.job.json``: what a run sent, kept until its ZIP is on disk, so running the same command again
    after an interruption (Ctrl-C, ``--timeout``, a laptop that slept) goes on where it stopped instead of
    uploading everything again: the Idempotency-Key it sends under (written before the first request, so a job
    the server made whose answer was lost comes back), the job, and how many of its parts the server has. Only
    a run of the same request (same server, inputs by path, size and modification time, options) takes it
    over; the file goes once the ZIP is written."""

    def __init__(self, output: Path, server: str, request: list[Any]) -> None:
        self.path = output.with_name(output.name + ".job.json")
        self.server = server
        self.request = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        self.key = uuid.uuid4().hex
        self.job: dict[str, Any] | None = None
        self.parts_sent = 0

    def load(self) -> bool:
        """Take over what an interrupted run of the same request saved; False when there is none."""
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(saved, dict) or (saved.get("server"), saved.get("request")) != (self.server, self.request):
            return False
        job = saved.get("job")
        self.key = str(saved.get("key") or self.key)
        self.job = job if isinstance(job, dict) else None
        self.parts_sent = int(saved.get("parts_sent") or (1 if self.job else 0))
        return True

    def save(self) -> None:
        state = {"server": self.server, "request": self.request, "key": self.key, "job": self.job}
        write_atomic(self.path, json.dumps({**state, "parts_sent": self.parts_sent}).encode())

    def part_key(self, index: int, parts: int) -> str:
        """The Idempotency-Key of request ``index`` (0: the one that creates the job)."""
        return self.key if parts == 1 else f"{self.key}.{index}"

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _request_of(uploads: list[Upload], fields: list[tuple[str, str]], backdrop: Path | None) -> list[Any]:
    """What a run sends, for :class:`JobState`: each file by path, size and modification time, and the fields."""
    files = [*((u.name, u.path) for u in uploads), *(() if backdrop is None else (("backdrop", backdrop),))]
    described = []
    for name, path in files:
        stat = path.stat()
        described.append([name, str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return [described, sorted(fields)]


def _resume(client: ApiClient, state: JobState) -> None:
    """Take over what an interrupted run of the same request left, if the server still has its job."""
    if not state.load():
        return
    if state.job is None:  # stopped while creating it: the same key gets the job back if the server made one
        print(f"matteflow submit: sending again under the same key ({state.path.name})", file=sys.stderr)
        return
    if not client.job_found(state.job["status_url"]):  # expired or deleted on the server: start again
        state.clear()
        state.job, state.parts_sent, state.key = None, 0, uuid.uuid4().hex
        return
    print(f"matteflow submit: resuming job {state.job['id']} (already sent; {state.path.name})", file=sys.stderr)


def send_job(
    client: ApiClient,
    state: JobState,
    parts: list[list[Upload]],
    fields: list[tuple[str, str]],
    backdrop: Path | None,
    progress: bool,
) -> dict[str, Any]:
    """Create the job (as an open job sent in ``parts`` when there is more than one) and send every part the
    server does not have yet, saving the progress in ``state`` after each request."""
    many = len(parts) > 1
    if state.job is None:
        state.save()  # the key is on disk before the first request: an answer lost with the process is not lost
        sent = [*fields, ("open", "true")] if many else fields
        created = client.create_job(parts[0], sent, progress, backdrop, key=state.part_key(0, len(parts)))
        keep = ("id", "status_url", "results_url", "files_url", "close_url", "instruction")
        state.job, state.parts_sent = {k: created[k] for k in keep if k in created}, 1
        state.save()
    job = state.job
    for index in range(state.parts_sent, len(parts)):
        label = f"uploading part {index + 1} of {len(parts)}"
        client.add_files(job["files_url"], parts[index], state.part_key(index, len(parts)), progress, label)
        state.parts_sent = index + 1
        state.save()
    if many:
        client.close_job(job["close_url"])
    return job


def run(args: argparse.Namespace, fields: dict[str, str]) -> int:
    uploads = collect_inputs(args.inputs)
    client = ApiClient(args.server, attempts=args.retries)
    progress = not args.no_progress
    backdrop = Path(args.background_image) if args.background_image else None
    if backdrop is not None and not backdrop.is_file():
        raise SubmitError(f"--background-image {backdrop}: no such file")
    urls = [("image_url", raw) for raw in args.inputs if is_url(raw)]
    sent = list(fields.items()) + urls
    limits = client.limits()
    if limits is None:  # an older server: everything in one request, as it always was
        parts = [uploads]
    else:
        count, most = len(uploads) + len(urls), int(limits["max_files_per_job"])
        if count > most:  # said before hours of uploading, not after
            raise SubmitError(f"{count} images, but the server takes at most {most} per job: send them as several")
        parts = split_parts(uploads, int(limits["max_upload_mb"]), backdrop.stat().st_size if backdrop else 0)
    state = JobState(args.output, client.server, _request_of(uploads, sent, backdrop))
    _resume(client, state)
    created = send_job(client, state, parts, sent, backdrop, progress)
    if created.get("instruction"):
        print(f"matteflow: {created['instruction']['explanation']}", file=sys.stderr)
    status = wait_for_job(client, created["status_url"], args.timeout, args.poll_interval, progress)
    if status["state"] == "failed":
        state.clear()
        raise SubmitError(f"the job failed on the server: {status.get('error') or 'no reason given'}")
    client.download(created["results_url"], args.output)
    state.clear()
    for item in status["items"]:
        if item["state"] == "failed":
            print(f"failed: {item['name']}: {item.get('error') or 'no reason given'}", file=sys.stderr)
    print(f"wrote {args.output}: {status['done']} done, {status['failed']} failed", file=sys.stderr)
    return 1 if status["failed"] else 0


def main(argv: list[str]) -> int:
    """Entry point of ``matteflow submit``."""
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"matteflow submit: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    try:
        args.inputs = [*args.inputs, *listed_inputs(args.input_lists)]
    except ValueError as exc:
        parser.error(str(exc))
    if not args.inputs:
        if args.input_lists:
            print(f"matteflow submit: no inputs listed in --from {', '.join(args.input_lists)}", file=sys.stderr)
            return 1
        parser.error("give at least one INPUT (a file, folder or URL) or --from FILE")
    try:
        fields = option_fields(args)
    except InvalidOptionError as exc:
        parser.error(str(exc))
    if args.timeout <= 0 or args.poll_interval <= 0:
        parser.error("--timeout and --poll-interval must be positive")
    if args.retries < 1:
        parser.error("--retries must be 1 or more")
    try:
        return run(args, fields)
    except (SubmitError, OSError) as exc:  # OSError: an input unreadable or the output not writable
        print(f"matteflow submit: {exc}", file=sys.stderr)
        return 1
