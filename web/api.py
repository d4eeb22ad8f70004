"""The JSON API (``/api/v1``): batch jobs, the one-shot ``/matte`` endpoint and the OpenAPI document.

Routes stay thin: they read the request (``uploads``), call the JobClient (which stores inputs, records the
job in Redis and enqueues by task name) and shape the JSON. Every failure is raised and answered by the one
error mapping in ``errors``.
"""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath
from typing import Any

from flask import Blueprint, Response, jsonify, request, send_file, url_for

from matteflow import metrics
from matteflow.core.errors import shown
from matteflow.files import sanitize_name

from .context import web_context
from .errors import ApiError
from .instructions import llm_config
from .openapi import build_openapi
from .uploads import read_resolved_options, read_uploads, refuse_nameless_parts, stream_size

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Seconds a client is asked to wait (Retry-After) when every single-image slot is taken.
MATTE_RETRY_AFTER_S = 2

# Response headers of POST /matte: the model that ran and the result's confidence (see the OpenAPI document).
MODEL_HEADER = "X-MatteFlow-Model"
CONFIDENCE_HEADER = "X-MatteFlow-Confidence"

# Truthy spellings for boolean query parameters (``?mask=1``, ``?download=true``).
_TRUE = ("1", "true", "yes", "on")


def _flag(name: str) -> bool:
    return request.args.get(name, "").strip().lower() in _TRUE


def _job_or_404(job_id: str) -> dict[str, Any]:
    job = web_context().jobs.get_job(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {shown(job_id)} (it may have expired or been deleted)")
    return job


def _job_urls(job_id: str) -> dict[str, str]:
    return {
        "status_url": url_for("api.get_job", job_id=job_id),
        "results_url": url_for("api.get_results", job_id=job_id),
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
        # Which network made the result (auto resolved) and how sure it was: set once the item is done.
        "model": item.get("model"),
        "confidence": item.get("confidence"),
        "result_url": url_for("api.get_item", job_id=job_id, index=index) if done else None,
        "mask_url": url_for("api.get_item", job_id=job_id, index=index, mask=1) if done and with_mask else None,
    }
    return view


@bp.post("/jobs")
def create_job() -> tuple[Response, int, dict[str, str]]:
    ctx = web_context()
    # Options first: a bad option fails the request before any file is read or stored.
    refuse_nameless_parts(request.form, request.files)
    resolved = read_resolved_options(request.args, request.form, llm=llm_config())
    options = resolved.options
    uploads = read_uploads(request.files.getlist("files"))
    if not uploads:
        raise ApiError(400, "no_files", "send at least one image in the multipart field 'files'")
    if len(uploads) > ctx.settings.max_files_per_job:
        raise ApiError(
            400,
            "too_many_files",
            f"{len(uploads)} files in one job; the limit is {ctx.settings.max_files_per_job} "
            "(MATTEFLOW_MAX_FILES_PER_JOB): split the batch",
        )
    metrics.UPLOAD_BYTES_TOTAL.inc(sum(stream_size(stream) for _, stream in uploads))
    # Bad files (empty, not an image, too many pixels) become failed items inside the client; the rest run.
    job_id = ctx.jobs.create_job(uploads, options)
    urls = _job_urls(job_id)
    body: dict[str, Any] = {"id": job_id, **urls}
    if resolved.interpretation is not None:
        body["instruction"] = resolved.to_dict(request.form.get("lang") or request.args.get("lang"))
    return jsonify(body), 202, {"Location": urls["status_url"]}


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    job = _job_or_404(job_id)
    with_mask = bool((job.get("options") or {}).get("mask"))
    body = {
        "id": job["id"],
        "state": job["state"],
        "total": job["total"],
        "done": job["done"],
        "failed": job["failed"],
        "created_at": job.get("created_at"),
        "finished_at": job.get("finished_at"),
        # Why the job itself could not run (state "failed"); item failures are on their items.
        "error": job.get("error"),
        "options": job.get("options"),
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
    job = _job_or_404(job_id)
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
        raise ApiError(404, "job_not_found", f"no job with id {shown(job_id)} (it may have expired or been deleted)")
    if index >= item["total"]:
        raise ApiError(
            404, "item_not_found", f"job {shown(job_id)} has {item['total']} items; there is no item {index}"
        )
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


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str) -> Response:
    if not web_context().jobs.delete_job(job_id):
        raise ApiError(404, "job_not_found", f"no job with id {shown(job_id)}")
    return jsonify({"id": job_id, "deleted": True})


@bp.post("/matte")
def matte_one() -> Response:
    ctx = web_context()
    refuse_nameless_parts(request.form, request.files)
    resolved = read_resolved_options(request.args, request.form, llm=llm_config())
    options = resolved.options
    uploads = read_uploads(request.files.getlist("file"))
    if not uploads:
        raise ApiError(400, "no_file", "send one image in the multipart field 'file'")
    if len(uploads) > 1:
        raise ApiError(400, "too_many_files", "this endpoint takes one image; use POST /api/v1/jobs for several")
    name, data = uploads[0]
    metrics.UPLOAD_BYTES_TOTAL.inc(stream_size(data))
    # Each call waiting on its worker holds a request thread: at most matte_max_in_flight at once, so jobs,
    # the page and the probes always have threads. Beyond that: 503 at once, with when to come back.
    if not ctx.matte_slots.acquire(blocking=False):
        raise ApiError(
            503,
            "busy",
            f"{ctx.matte_in_flight} single-image calls are already running (MATTEFLOW_MATTE_MAX_IN_FLIGHT); "
            f"retry after {MATTE_RETRY_AFTER_S} s, or send batches to POST /api/v1/jobs",
            retry_after_s=MATTE_RETRY_AFTER_S,
        )
    try:
        single = ctx.jobs.matte_one_result(data, name, options, timeout=ctx.settings.single_image_timeout_s)
    except TimeoutError as exc:
        raise ApiError(
            504,
            "timeout",
            f"no worker finished the image within {ctx.settings.single_image_timeout_s:g} s; "
            "check that workers are running (GET /readyz?workers=1)",
        ) from exc
    finally:
        ctx.matte_slots.release()
    download_name = f"{PurePosixPath(name).stem}.{options.extension}"
    response = send_file(io.BytesIO(single.image), mimetype=single.media_type, download_name=download_name)
    # The image is the body, so what the item JSON says of a batch item travels as headers here.
    if single.model:
        response.headers[MODEL_HEADER] = single.model
    if single.confidence is not None:
        response.headers[CONFIDENCE_HEADER] = f"{single.confidence:.4f}"
    if resolved.interpretation is not None:
        # The options the instruction became travel in a header too (ASCII JSON).
        response.headers["X-MatteFlow-Options"] = json.dumps(options.to_dict())
    return response


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_openapi(web_context().settings))
