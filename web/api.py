"""The JSON API (``/api/v1``): batch jobs, the one-shot ``/matte`` endpoint and the OpenAPI document.

Routes stay thin: they read the request (``uploads``), call the JobClient (which stores inputs, records the
job in Redis and enqueues by task name) and shape the JSON. Every failure is raised and answered by the one
error mapping in ``errors``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import PurePosixPath
from typing import IO, Any

from flask import Blueprint, Response, abort, jsonify, request, send_file, url_for

from matteflow import metrics
from matteflow.core.errors import InputError, shown
from matteflow.core.imageio import probe_image
from matteflow.core.instructions import Resolved
from matteflow.core.options import MatteOptions
from matteflow.fetch import ImageUrl, check_image_urls, fetch_image
from matteflow.files import sanitize_name
from matteflow.workers.callbacks import check_callback_url
from matteflow.workers.client import JobRequestError, SingleResult

from . import idempotency
from .context import web_context
from .errors import ApiError
from .instructions import llm_config
from .jobindex import MAX_LISTED, JobIndex, parse_api_keys, request_owner
from .openapi import build_openapi, server_limits
from .page import expired_page, wants_html
from .reasons import reason_for, warning_codes
from .uploads import read_resolved_options, read_uploads, refuse_nameless_parts, stream_size

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Seconds a client is asked to wait (Retry-After) when every single-image slot is taken.
MATTE_RETRY_AFTER_S = 2

# Response headers of POST /matte: the model that ran and the result's confidence (see the OpenAPI document).
MODEL_HEADER = "X-MatteFlow-Model"
CONFIDENCE_HEADER = "X-MatteFlow-Confidence"
WARNINGS_HEADER = "X-MatteFlow-Warnings"

# Truthy spellings for boolean query parameters (``?mask=1``, ``?download=true``).
_TRUE = ("1", "true", "yes", "on")


def _flag(name: str) -> bool:
    return request.args.get(name, "").strip().lower() in _TRUE


# Job kinds a client may ask for: "single" runs ahead of batches and gets no ZIP.
_KINDS = ("batch", "single")
# Media types of the uploads a browser may be shown (GET .../items/<i>?input=1), by Pillow's format name.
_INPUT_MEDIA = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "HEIF": "image/heic",
    "AVIF": "image/avif",
}


def _job_or_404(job_id: str, *, page_if_browser: bool = False) -> dict[str, Any]:
    """The job, or a 404: JSON for API clients; with ``page_if_browser``, a friendly page for a person who
    followed an old download link."""
    job = web_context().jobs.get_job(job_id)
    if job is None:
        if page_if_browser and wants_html():
            abort(expired_page())
        raise ApiError(404, "job_not_found", f"no job with id {shown(job_id)} (it may have expired or been deleted)")
    return job


def _owner() -> str | None:
    """The API key's owner hash of this request (None without a key); 401 for a key that is not valid."""
    return request_owner(request.headers, parse_api_keys(web_context().settings.api_keys))


def _job_index() -> JobIndex:
    ctx = web_context()
    return JobIndex(ctx.jobs.redis, ctx.settings.result_ttl_hours * 3600)


def _job_urls(job_id: str) -> dict[str, str]:
    return {
        "status_url": url_for("api.get_job", job_id=job_id),
        "results_url": url_for("api.get_results", job_id=job_id),
    }


def _job_progress(job: dict[str, Any]) -> dict[str, Any]:
    """The fields a job's status and its line in the job list share."""
    return {
        "id": job["id"],
        "state": job["state"],
        "total": job["total"],
        "done": job["done"],
        "failed": job["failed"],
        "created_at": job.get("created_at"),
        "finished_at": job.get("finished_at"),
        "options": job.get("options"),
        # pending, delivered or gave_up for a job created with a callback_url; null without one.
        "callback": job.get("callback"),
        # True while a batch sent in several requests takes more files (POST .../files, then .../close).
        "open": bool(job.get("open")),
    }


def _item_view(job_id: str, item: dict[str, Any], with_mask: bool) -> dict[str, Any]:
    """One item of the status JSON: the store's fields plus the URLs of its result (once done)."""
    done = item.get("state") == "done"
    index = int(item["index"])
    view = {
        "index": index,
        "name": item.get("name"),
        "state": item.get("state"),
        "error": item.get("error"),
        # Which network made the result (auto resolved), how sure it was, and what it could not do as asked.
        "model": item.get("model"),
        "confidence": item.get("confidence"),
        "warnings": item.get("warnings") or [],
        "warning_codes": warning_codes(item.get("warnings") or []),
        "result_url": url_for("api.get_item", job_id=job_id, index=index) if done else None,
        "mask_url": url_for("api.get_item", job_id=job_id, index=index, mask=1) if done and with_mask else None,
    }
    if item.get("state") == "failed":
        # A stable code + numbers beside the English message, for clients that speak other languages.
        view["error_code"], view["error_params"] = reason_for(None, item.get("error"))
    return view


def _job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """One line of GET /api/v1/jobs: the job without its items, plus its first result for a thumbnail."""
    job_id = job["id"]
    items = job.get("items", [])
    first_done = next((item for item in items if item.get("state") == "done"), None)
    ttl_s = web_context().settings.result_ttl_hours * 3600
    return {
        **_job_progress(job),
        "kind": job.get("kind", "batch"),
        "expires_at": job["created_at"] + ttl_s if job.get("created_at") else None,
        "names": [item.get("name") for item in items[:3]],
        "thumbnail_url": url_for("api.get_item", job_id=job_id, index=first_done["index"]) if first_done else None,
        **_job_urls(job_id),
    }


@bp.get("/jobs")
def list_jobs() -> Response:
    """The jobs whose ids the client sends (``?ids=a,b``), or, with an API key, that key's jobs."""
    ctx = web_context()
    owner = _owner()
    raw_ids = request.args.get("ids")
    if raw_ids is not None:
        ids = list(dict.fromkeys(part.strip() for part in raw_ids.split(",") if part.strip()))
        if len(ids) > MAX_LISTED:
            raise ApiError(400, "too_many_ids", f"ask for at most {MAX_LISTED} ids at once", limit=MAX_LISTED)
    elif owner is not None:
        ids = _job_index().newest(owner)
    else:
        raise ApiError(
            401,
            "api_key_required",
            "list the jobs whose ids you hold (?ids=a,b) or send an API key (Authorization: Bearer <key>)",
        )
    jobs, missing = [], []
    for job_id in ids:
        job = ctx.jobs.get_job(job_id)
        if job is None:
            missing.append(job_id)
        else:
            jobs.append(_job_summary(job))
    if raw_ids is None and owner is not None:
        _job_index().forget(owner, missing)  # expired or deleted: drop them from the key's list
        missing = []
    jobs.sort(key=lambda job: job["created_at"] or 0, reverse=True)
    response = jsonify({"jobs": jobs, "missing": missing})
    response.headers["Cache-Control"] = "no-store"
    return response


def _request_options(*sources: Any) -> Resolved:
    """The request's options (fields, query, instruction), with this deployment's LLM and default model."""
    return read_resolved_options(*sources, llm=llm_config(), default_model=web_context().settings.default_model)


BACKDROP_FIELD = "background_image"


def _backdrop_upload() -> tuple[IO[bytes] | None, dict[str, str]]:
    """The request's background image (the file part ``background_image``) and the option it implies (a
    file sent is a backdrop asked for), as a last source for :func:`_request_options`."""
    parts = read_uploads(request.files.getlist(BACKDROP_FIELD))
    if len(parts) > 1:
        raise ApiError(400, "too_many_files", f"send one background image in the field '{BACKDROP_FIELD}'")
    if not parts:
        return None, {}
    return parts[0][1], {BACKDROP_FIELD: "true"}


JobAnswer = tuple[Response, int, dict[str, str]]


@bp.post("/jobs")
def create_job() -> JobAnswer:
    owner = _owner()
    return _idempotent(owner, lambda: _create_job(owner))


def _idempotent(owner: str | None, create: Callable[[], JobAnswer]) -> JobAnswer:
    """``create()`` the job, unless the request carries an Idempotency-Key a finished request already used: a
    retried request (its answer lost on the way) gets the job the first one created, never a second."""
    raw_key = request.headers.get(idempotency.HEADER)
    if raw_key is None:
        return create()
    key = idempotency.check_key(raw_key)
    keys = idempotency.IdempotencyKeys(web_context().jobs.redis, web_context().settings.result_ttl_hours * 3600)
    digest = idempotency.request_fingerprint(request)
    answer = keys.claim(owner, key, digest)
    if answer is not None:
        return jsonify(answer), 202, {"Location": answer["status_url"], idempotency.REPLAYED_HEADER: "true"}
    try:
        response, status, headers = create()
    except BaseException:
        keys.release(owner, key, digest)
        raise
    keys.finish(owner, key, digest, response.get_json())
    return response, status, headers


def _create_job(owner: str | None) -> JobAnswer:
    ctx = web_context()
    kind = request.form.get("kind") or request.args.get("kind") or "batch"
    if kind not in _KINDS:
        raise ApiError(400, "invalid_option", f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    open_ = _open_field()
    if open_ and kind != "batch":
        raise ApiError(400, "invalid_option", "open=true is for batches: a single-image job has one file")
    # Options first: a bad option fails the request before any file is read or stored.
    refuse_nameless_parts(request.form, request.files)
    backdrop, implied = _backdrop_upload()
    job_fields = ("kind", "callback_url", "open", URL_FIELD)
    callback = _callback_url()
    resolved = _request_options(_without(request.args, *job_fields), _without(request.form, *job_fields), implied)
    options = resolved.options
    uploads: list[tuple[str, IO[bytes] | ImageUrl]] = list(read_uploads(request.files.getlist("files")))
    urls = _image_urls()
    if not uploads and not urls and not open_:
        raise ApiError(400, "no_files", f"send at least one image in the multipart field 'files' (or '{URL_FIELD}')")
    count = len(uploads) + len(urls)
    if count > ctx.settings.max_files_per_job:
        raise ApiError(
            400,
            "too_many_files",
            f"{count} files in one job; the limit is {ctx.settings.max_files_per_job} "
            "(MATTEFLOW_MAX_FILES_PER_JOB): split the batch",
            count=count,
            limit=ctx.settings.max_files_per_job,
        )
    # A URL this server may not read fails the request now; the workers read the others, each as its item's
    # first step (an origin that gives nothing fails that item alone).
    check_image_urls(urls, ctx.settings)
    uploads += [(image.name, image) for image in map(ImageUrl, urls)]
    metrics.UPLOAD_BYTES_TOTAL.inc(sum(stream_size(data) for _, data in uploads if not isinstance(data, ImageUrl)))
    # Bad files (empty, not an image, too many pixels) become failed items inside the client; the rest run.
    job_id = ctx.jobs.create_job(uploads, options, kind=kind, backdrop=backdrop, callback=callback, open_=open_)
    if owner is not None:
        _job_index().record(owner, job_id)
    urls = _job_urls(job_id)
    body: dict[str, Any] = {"id": job_id, **urls}
    if open_:
        body |= {"open": True, "total": count, **_open_job_urls(job_id)}
    if resolved.interpretation is not None:
        body["instruction"] = resolved.to_dict(request.form.get("lang") or request.args.get("lang"))
    return jsonify(body), 202, {"Location": urls["status_url"]}


def _open_field() -> bool:
    """The job field ``open`` (a batch that takes more files in later requests): true/false, 1/0, yes/no."""
    raw = (request.form.get("open") or request.args.get("open") or "false").strip().lower()
    if raw in _TRUE:
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, "invalid_option", f"open must be true or false, got {shown(raw)}")


def _open_job_urls(job_id: str) -> dict[str, str]:
    return {
        "files_url": url_for("api.add_files", job_id=job_id),
        "close_url": url_for("api.close_job", job_id=job_id),
    }


@contextmanager
def _job_request() -> Iterator[None]:
    """A refusal of the job client (:class:`JobRequestError`) answered as the API's JSON error."""
    try:
        yield
    except JobRequestError as exc:
        raise ApiError(exc.status, exc.code, str(exc), retry_after_s=exc.retry_after) from None


@bp.post("/jobs/<job_id>/files")
def add_files(job_id: str) -> JobAnswer:
    """More files for a batch created with ``open=true``: a batch larger than one request may carry (the
    page and ``matteflow submit`` send a big folder in parts under MATTEFLOW_MAX_UPLOAD_MB). They become the
    job's next items and start at once. Options are the job's; an Idempotency-Key works as on ``POST /jobs``,
    so a part sent again after a lost answer is not added twice."""
    owner = _owner()
    return _idempotent(owner, lambda: _add_files(job_id))


def _add_files(job_id: str) -> JobAnswer:
    ctx = web_context()
    refuse_nameless_parts(request.form, request.files)
    extra = sorted(set(request.form) - {URL_FIELD})
    if extra:
        raise ApiError(
            400,
            "invalid_option",
            f"a job's options are set when it is created; this request may carry only files and {URL_FIELD} "
            f"(got {', '.join(shown(name) for name in extra)})",
        )
    uploads: list[tuple[str, IO[bytes] | ImageUrl]] = list(read_uploads(request.files.getlist("files")))
    urls = _image_urls()
    if not uploads and not urls:
        raise ApiError(400, "no_files", f"send at least one image in the multipart field 'files' (or '{URL_FIELD}')")
    check_image_urls(urls, ctx.settings)
    uploads += [(image.name, image) for image in map(ImageUrl, urls)]
    metrics.UPLOAD_BYTES_TOTAL.inc(sum(stream_size(data) for _, data in uploads if not isinstance(data, ImageUrl)))
    with _job_request():
        added = ctx.jobs.add_files(job_id, uploads)
    links = _job_urls(job_id)
    body = {"id": job_id, **added, "open": True, **links, **_open_job_urls(job_id)}
    return jsonify(body), 202, {"Location": links["status_url"]}


@bp.post("/jobs/<job_id>/close")
def close_job(job_id: str) -> Response:
    """A batch created with ``open=true`` takes no more files: it ends once its items have, with one ZIP of
    all its parts. Closing a job that is not taking files changes nothing (a retried close is harmless)."""
    with _job_request():
        web_context().jobs.close_job(job_id)
    return get_job(job_id)


@bp.post("/jobs/<job_id>/rerun")
def rerun_job(job_id: str) -> JobAnswer:
    """A new job from the stored uploads of ``job_id`` with new options: nothing is uploaded again. A
    background image comes with the request, or is the source job's when the options ask for one. ``items``
    (indices, comma-separated) runs only those items, in that order (one doubtful photo of a batch). An
    Idempotency-Key works as on ``POST /jobs``."""
    owner = _owner()
    return _idempotent(owner, lambda: _rerun_job(job_id, owner))


def _rerun_job(job_id: str, owner: str | None) -> JobAnswer:
    ctx = web_context()
    refuse_nameless_parts(request.form, request.files)
    backdrop, implied = _backdrop_upload()
    callback = _callback_url()
    job_fields = ("callback_url", "items")
    options = _request_options(
        _without(request.args, *job_fields), _without(request.form, *job_fields), implied
    ).options
    source = _job_or_404(job_id)
    chosen = _chosen_items(request.form.get("items") or request.args.get("items"), len(source.get("items", [])))
    with ExitStack() as opened:
        stored_backdrop = ctx.jobs.backdrop_file(job_id) if backdrop is None and options.background_image else None
        if stored_backdrop is not None:
            backdrop = opened.enter_context(stored_backdrop.open("rb"))
        # Streams, not bytes: the client copies each stored upload through a bounded buffer.
        inputs = []
        items = source.get("items", [])
        for item in items if chosen is None else [items[i] for i in chosen]:
            path = ctx.jobs.input_file(job_id, int(item["index"]))
            if path is not None:
                inputs.append((item.get("name") or f"image_{item['index']}", opened.enter_context(path.open("rb"))))
        if not inputs:
            raise ApiError(409, "nothing_to_rerun", "no item of this job has a stored upload to run again")
        kind = source.get("kind", "batch")
        new_id = ctx.jobs.create_job(inputs, options, kind=kind, backdrop=backdrop, callback=callback)
    if owner is not None:
        _job_index().record(owner, new_id)
    urls = _job_urls(new_id)
    return jsonify({"id": new_id, "source": job_id, **urls}), 202, {"Location": urls["status_url"]}


@bp.post("/jobs/<job_id>/items/<int:index>/adopt")
def adopt_result(job_id: str, index: int) -> tuple[Response, int]:
    """Put another job's result (``from_job``, its item ``from_item``, 0 by default: a re-run of this photo)
    into this finished batch as item ``index``'s result; the batch's ZIP is written again shortly after."""
    from_job = (request.form.get("from_job") or request.args.get("from_job") or "").strip()
    if not from_job:
        raise ApiError(400, "invalid_option", "from_job must name the job whose result to use")
    raw_item = (request.form.get("from_item") or request.args.get("from_item") or "0").strip()
    if not raw_item.isdecimal():  # int() takes every decimal digit; isdigit() also passes "²"
        raise ApiError(400, "invalid_option", f"from_item must be an item index like 0, got {shown(raw_item)}")
    with _job_request():  # the client reads both jobs once and answers 404 for an unknown one
        adopted = web_context().jobs.adopt_result(job_id, index, from_job, int(raw_item))
    body = {"id": job_id, "index": index, "from_job": from_job, "from_item": int(raw_item), **adopted}
    return jsonify({**body, **_job_urls(job_id)}), 202


def _chosen_items(field: str | None, total: int) -> list[int] | None:
    """The ``items`` field of a rerun: indices of the source job, each once, or None for all of them."""
    if not field or not field.strip():
        return None
    try:
        chosen = [int(part) for part in field.split(",") if part.strip()]
    except ValueError:
        raise ApiError(400, "invalid_option", f"items must be item indices like 0,3,7, got {shown(field)}") from None
    bad = [i for i in chosen if not 0 <= i < total]
    if bad or len(set(chosen)) != len(chosen) or not chosen:
        raise ApiError(
            400,
            "invalid_option",
            f"items must name each item of the job (0-{total - 1}) at most once, got {shown(field)}",
        )
    return chosen


# Images named by URL instead of sent (matteflow/fetch.py): repeatable on /jobs, once on /matte.
URL_FIELD = "image_url"


def _image_urls() -> list[str]:
    return [url for url in request.form.getlist(URL_FIELD) + request.args.getlist(URL_FIELD) if url.strip()]


def _without(source: Any, *names: str) -> dict[str, str]:
    return {key: value for key, value in source.items() if key not in names}


def _callback_url() -> str:
    """The job's ``callback_url`` field (a job field, not a matting option), checked against the hosts this
    server may call; empty when none was given."""
    url = (request.form.get("callback_url") or request.args.get("callback_url") or "").strip()
    return check_callback_url(url, web_context().settings) if url else ""


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    job = _job_or_404(job_id)
    with_mask = bool((job.get("options") or {}).get("mask"))
    body = {
        **_job_progress(job),
        # Why the job itself could not run (state "failed"); item failures are on their items.
        "error": job.get("error"),
        "items": [_item_view(job_id, item, with_mask) for item in job.get("items", [])],
        **_job_urls(job_id),
    }
    response = jsonify(body)
    # Pollers must see fresh progress, never a cached copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/jobs/<job_id>/results.zip")
def get_results(job_id: str) -> Response:
    ctx = web_context()
    job = _job_or_404(job_id, page_if_browser=True)
    if job.get("kind") == "single":
        raise ApiError(
            409,
            "no_zip",
            "a single-image job has no ZIP; its result is item 0",
            item_url=url_for("api.get_item", job_id=job_id, index=0),
        )
    if job["state"] == "failed":  # final: no archive will ever come, so say so instead of "not ready"
        raise ApiError(
            410,
            "job_failed",
            f"this job failed and has no results archive: {job.get('error') or 'no reason recorded'}",
            state="failed",
        )
    found = ctx.jobs.results_zip(job_id) if job["state"] == "done" else None
    if found is None:
        raise ApiError(
            409,
            "not_ready",
            f"the results are not ready yet ({job['done'] + job['failed']} of {job['total']} items finished); "
            "poll the status URL until state is 'done'",
            state=job["state"],
            status_url=url_for("api.get_job", job_id=job_id),
        )
    path, download_name = found
    return send_file(path, mimetype="application/zip", as_attachment=True, download_name=download_name)


@bp.get("/jobs/<job_id>/items/<int:index>")
def get_item(job_id: str, index: int) -> Response:
    ctx = web_context()
    item = ctx.jobs.get_item(job_id, index)  # this item only: a page of thumbnails must not read every item
    if item is None:
        if wants_html():
            abort(expired_page())  # a person followed an old download link
        raise ApiError(404, "job_not_found", f"no job with id {shown(job_id)} (it may have expired or been deleted)")
    if index >= item["total"]:
        raise ApiError(
            404, "item_not_found", f"job {shown(job_id)} has {item['total']} items; there is no item {index}"
        )
    if _flag("input"):
        return _send_input(job_id, index, item)
    if item.get("state") == "failed":
        raise ApiError(409, "item_failed", item.get("error") or "this item failed", state="failed")
    want_mask = _flag("mask")
    found: tuple[Any, str] | None
    if want_mask:
        mask_path = ctx.jobs.mask_result(job_id, index)
        found = None if mask_path is None else (mask_path, "image/png")
    else:
        found = ctx.jobs.item_result(job_id, index)
    if found is None:
        if want_mask and item.get("state") == "done":
            raise ApiError(404, "mask_not_found", "this job was not run with mask=true")
        raise ApiError(409, "not_ready", f"item {index} is {item.get('state')}; try again later", state=item["state"])
    path, media_type = found
    stem = PurePosixPath(sanitize_name(item.get("name"))).stem
    suffix = PurePosixPath(str(path)).suffix
    download_name = f"{stem}_mask{suffix}" if want_mask else f"{stem}{suffix}"
    return send_file(path, mimetype=media_type, as_attachment=_flag("download"), download_name=download_name)


def _send_input(job_id: str, index: int, item: dict[str, Any]) -> Response:
    """The upload itself (the "before" of a before/after view), as the client sent it."""
    ctx = web_context()
    path = ctx.jobs.input_file(job_id, index)
    if path is None:
        raise ApiError(404, "input_not_found", f"item {index} has no stored upload (it failed intake)")
    try:
        with path.open("rb") as stream:
            media_type = _INPUT_MEDIA.get(probe_image(stream, ctx.settings.max_pixels).format)
    except InputError:
        media_type = None
    return send_file(
        path,
        mimetype=media_type or "application/octet-stream",
        as_attachment=_flag("download"),
        download_name=sanitize_name(item.get("name")),
    )


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str) -> Response:
    if not web_context().jobs.delete_job(job_id):
        raise ApiError(404, "job_not_found", f"no job with id {shown(job_id)}")
    return jsonify({"id": job_id, "deleted": True})


@bp.post("/matte")
def matte_one() -> Response:
    refuse_nameless_parts(request.form, request.files)
    backdrop, implied = _backdrop_upload()
    resolved = _request_options(_without(request.args, URL_FIELD), _without(request.form, URL_FIELD), implied)
    options = resolved.options
    uploads = read_uploads(request.files.getlist("file"))
    urls = _image_urls()
    if not uploads and not urls:
        raise ApiError(400, "no_file", f"send one image in the multipart field 'file' (or its URL in '{URL_FIELD}')")
    if len(uploads) + len(urls) > 1:
        raise ApiError(400, "too_many_files", "this endpoint takes one image; use POST /api/v1/jobs for several")
    with single_image_slot(), ExitStack() as stack:
        name, data = open_image(stack, uploads[0] if uploads else None, urls[0] if urls else None)
        single = run_single(name, data, options, backdrop)
    return _matte_response(name, single, options, resolved)


@contextmanager
def single_image_slot() -> Iterator[None]:
    """Hold one of the deployment's single-image slots while a call waits (on its image URL, then on its
    worker): each such call holds a request thread, so at most ``matte_max_in_flight`` at once leaves threads
    for jobs, the page and the probes. Beyond that: 503 at once, with when to come back."""
    ctx = web_context()
    if not ctx.matte_slots.acquire(blocking=False):
        raise ApiError(
            503,
            "busy",
            f"{ctx.matte_in_flight} single-image calls are already running (MATTEFLOW_MATTE_MAX_IN_FLIGHT); "
            f"retry after {MATTE_RETRY_AFTER_S} s, or send batches to POST /api/v1/jobs",
            retry_after_s=MATTE_RETRY_AFTER_S,
        )
    try:
        yield
    finally:
        ctx.matte_slots.release()


def open_image(stack: ExitStack, upload: tuple[str, IO[bytes]] | None, url: str | None) -> tuple[str, IO[bytes]]:
    """A single-image call's image as (name, stream): the upload, or what ``url`` gave (read here, inside the
    call's slot; a refusal answers 400, an origin giving nothing 422). The fetched body closes with ``stack``."""
    if url is not None:
        return fetched_image(stack, url)
    if upload is None:
        raise ValueError("open_image needs an upload or a URL")
    metrics.UPLOAD_BYTES_TOTAL.inc(stream_size(upload[1]))
    return upload


def fetched_image(stack: ExitStack, url: str) -> tuple[str, IO[bytes]]:
    """(name, body) of the image at ``url``, read through the request-forgery guard into the storage volume's
    spool; the body closes with ``stack``. Raises FetchRefused / ImageFetchError."""
    settings = web_context().settings
    name, body = fetch_image(url, settings, spool_dir=settings.storage_dir / "tmp")
    return name, stack.enter_context(body)


def run_single(name: str, data: IO[bytes], options: MatteOptions, backdrop: IO[bytes] | None) -> SingleResult:
    """One image through a worker (as a one-item job), waited for; 504 when none finished it in time."""
    ctx = web_context()
    try:
        return ctx.jobs.matte_one_result(
            data, name, options, timeout=ctx.settings.single_image_timeout_s, backdrop=backdrop
        )
    except TimeoutError as exc:
        raise ApiError(
            504,
            "timeout",
            f"no worker finished the image within {ctx.settings.single_image_timeout_s:g} s; "
            "check that workers are running (GET /readyz?workers=1)",
        ) from exc


def result_headers(single: SingleResult) -> dict[str, str]:
    """What the item JSON says of a batch item, as headers of an answer whose body is the image: the model
    that ran, its confidence and the engine's warnings."""
    headers = {}
    if single.model:
        headers[MODEL_HEADER] = single.model
    if single.confidence is not None:
        headers[CONFIDENCE_HEADER] = f"{single.confidence:.4f}"
    if single.warnings:
        headers[WARNINGS_HEADER] = json.dumps(list(single.warnings))  # ASCII: a header
    return headers


def _matte_response(name: str, single: SingleResult, options: MatteOptions, resolved: Resolved) -> Response:
    """The answer of /matte: the result image (or a ZIP of it and its mask), named as the upload."""
    stem = PurePosixPath(name).stem
    download_name = f"{stem}.{options.extension}"
    if single.mask is not None:
        # Both asked for: one ZIP with the result and its mask, named as the upload.
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(download_name, single.image)
            archive.writestr(f"{stem}_mask.png", single.mask)
        buffer.seek(0)
        response = send_file(buffer, mimetype="application/zip", as_attachment=True, download_name=f"{stem}.zip")
    else:
        response = send_file(io.BytesIO(single.image), mimetype=single.media_type, download_name=download_name)
    response.headers.update(result_headers(single))
    if resolved.interpretation is not None:
        # The options the instruction became travel in a header too (ASCII JSON).
        response.headers["X-MatteFlow-Options"] = json.dumps(options.to_dict())
    return response


@bp.get("/limits")
def limits() -> Response:
    """What one request and one job may carry here, for clients that size their requests (``matteflow submit``
    sends a folder bigger than one request as an open job in parts)."""
    return jsonify(server_limits(web_context().settings))


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_openapi(web_context().settings))
