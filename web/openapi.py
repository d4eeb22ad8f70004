"""The OpenAPI 3 description of the HTTP API, built from the same constants the code validates with.

Option enums and limits come from ``matteflow.core.options`` and the settings, so the document cannot drift
from what the server accepts. A test validates it with openapi-spec-validator.
"""

from __future__ import annotations

from typing import Any

from matteflow import __version__
from matteflow.core.cropping import CROP_MODES, MAX_CROP_MARGIN, MAX_OUTPUT_SIDE
from matteflow.core.idsizes import ID_SIZES
from matteflow.core.instructions import MAX_INSTRUCTION_CHARS
from matteflow.core.options import FORMATS, KEEP_CHOICES, MAX_ERODE, MAX_KB_LIMIT, MAX_SIDE_LIMIT, PRESETS
from matteflow.core.registry import MODEL_ALIASES, MODEL_NAMES
from matteflow.fetch import MAX_URL_CHARS
from matteflow.settings import Settings
from matteflow.workers.callbacks import MAX_CALLBACK_URL_CHARS

from .context import matte_in_flight_bound

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("Error")}}}


def _option_properties(default_model: str) -> dict[str, Any]:
    return {
        "preset": {
            "type": "string",
            "enum": list(PRESETS),
            "description": "Fills defaults for the other options; options given explicitly win.",
        },
        "background": {
            "type": "string",
            "pattern": "^(transparent|none|#?[0-9a-fA-F]{6})$",
            "description": "'transparent' or a colour '#rrggbb' to composite onto.",
            "example": "#ffffff",
        },
        "format": {"type": "string", "enum": [*FORMATS, "jpg"], "default": "png"},
        "alpha_threshold": {"type": "integer", "minimum": 0, "maximum": 255, "default": 0},
        "erode": {"type": "integer", "minimum": 0, "maximum": MAX_ERODE, "default": 0},
        "feather": {"type": "boolean", "default": False},
        "shadow": {
            "type": "boolean",
            "default": False,
            "description": "A soft floor shadow under the subject, as catalogue photos have (on the background, or "
            "as partial black alpha in a transparent output). None where the photo's bottom edge cuts the subject "
            "(it stands on no floor).",
        },
        "refine": {
            "type": "boolean",
            "default": False,
            "description": "Solve the matte's edge against the photo (closed-form matting): finer hair, fur and "
            "soft edges, about 0.2-1 s more CPU per photo.",
        },
        "max_side": {
            "type": "integer",
            "minimum": 16,
            "maximum": MAX_SIDE_LIMIT,
            "description": "Long side of the output in pixels; omitted keeps the input size.",
        },
        "mask": {
            "type": "boolean",
            "default": False,
            "description": "Also keep the 8-bit alpha mask: jobs serve it as GET .../items/{index}?mask=1; "
            "POST /api/v1/matte then answers a ZIP of the result and <name>_mask.png.",
        },
        "model": {
            "type": "string",
            "enum": [*MODEL_NAMES, *MODEL_ALIASES],
            "default": default_model,  # the deployment's MATTEFLOW_DEFAULT_MODEL
            "description": "people (portraits), general (products and objects), or auto: the people model "
            "first; the general model's matte instead when the people model is not sure of a subject and the "
            "general model is; or ensemble (best quality, both networks' cost): both run and their mattes are "
            "combined where they agree on the subject, else auto's choice. 'default' = people. The model that "
            "ran (people, general or ensemble) is reported per item.",
        },
        "keep": {
            "type": "string",
            "enum": list(KEEP_CHOICES),
            "default": "all",
            "description": "main: only the main person(s); small disconnected pieces (clutter) are removed.",
        },
        "id_size": {
            "type": "string",
            "enum": list(ID_SIZES),
            "description": "Crop and scale a real ID/passport photo of this size around the head (300 dpi).",
        },
        "max_kb": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_KB_LIMIT,
            "description": "Largest output file in KB: the JPEG/WebP quality is found by search.",
        },
        "sheet": {
            "type": "boolean",
            "default": False,
            "description": "With an ID size: as many copies as fit on 4x6 in paper (300 dpi) with cut lines.",
        },
        "crop": {
            "type": "string",
            "enum": list(CROP_MODES),
            "default": "none",
            "description": "subject: the output is trimmed to the subject's bounding box; square: the subject is "
            "centred on a square canvas (padded with transparency or the background colour). A side where the "
            "subject touches the photo's edge keeps that edge. Not with id_size.",
        },
        "crop_margin": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_CROP_MARGIN,
            "default": 0,
            "description": "With crop: room around the subject on each side, in percent of its long side.",
        },
        "output_size": {
            "type": "string",
            "pattern": "^(none|[0-9]{1,5}([x×*][0-9]{1,5})?)$",
            "example": "1000x1000",
            "description": f"Scale every result to exactly WIDTHxHEIGHT (one number: a square; 16-{MAX_OUTPUT_SIDE} "
            "px a side). The canvas is widened to that shape around the subject with crop, around the whole "
            "photo without; the rest is transparent or the background colour. Not with id_size.",
        },
        "background_image": {
            "type": "string",
            "format": "binary",
            "description": "A photo to put behind every cut-out (scaled to cover it, centred) instead of a colour: "
            "a file part. In a rerun, the text 'true' uses the source job's background image again. Not with a "
            "background colour.",
        },
        "instruction": {
            "type": "string",
            "maxLength": MAX_INSTRUCTION_CHARS,
            "description": "What you want in words, 中文 or English ('蓝底二寸证件照', 'PNG for a slide'); read "
            "into the options above. Explicit options win. Dry run: POST /api/v1/instructions:parse.",
        },
    }


def _schemas() -> dict[str, Any]:
    state = {"type": "string", "enum": ["queued", "running", "done", "failed"]}
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "Machine-readable code, e.g. invalid_option."},
                "message": {"type": "string", "description": "What went wrong and how to fix it (English)."},
                "reason": {
                    "type": "string",
                    "description": "For image errors, a finer stable code (image_empty, image_unsupported, "
                    "image_format, image_size, image_truncated, image_corrupt, image_too_large, "
                    "image_fetch_failed).",
                },
                "params": {"type": "object", "description": "The numbers of the reason (e.g. pixels, limit)."},
            },
            "additionalProperties": True,
        },
        "JobCreated": {
            "type": "object",
            "required": ["id", "status_url", "results_url"],
            "properties": {
                "id": {"type": "string"},
                "status_url": {"type": "string"},
                "results_url": {"type": "string"},
                "source": {"type": "string", "description": "Reruns: the job whose uploads were used."},
                "open": {"type": "boolean", "description": "A batch created with open=true: it takes more files."},
                "total": {"type": "integer", "description": "Open batches: the files it holds so far."},
                "files_url": {"type": "string", "description": "Open batches: where to POST more files."},
                "close_url": {"type": "string", "description": "Open batches: POST here once every file is sent."},
            },
        },
        "FilesAdded": {
            "type": "object",
            "required": ["id", "first", "added", "total", "status_url", "results_url", "files_url", "close_url"],
            "properties": {
                "id": {"type": "string"},
                "first": {"type": "integer", "description": "The index of the first item this request added."},
                "added": {"type": "integer", "description": "Items added (a bad file is a failed item)."},
                "total": {"type": "integer", "description": "Items of the job now."},
                "open": {"type": "boolean"},
                "status_url": {"type": "string"},
                "results_url": {"type": "string"},
                "files_url": {"type": "string"},
                "close_url": {"type": "string"},
            },
        },
        "Item": {
            "type": "object",
            "required": ["index", "name", "state", "error", "result_url", "mask_url"],
            "properties": {
                "index": {"type": "integer", "minimum": 0},
                "name": {"type": "string", "description": "The upload's sanitised file name."},
                "state": state,
                "error": {"type": "string", "nullable": True},
                "model": {
                    "type": "string",
                    "nullable": True,
                    "description": "The model that made the result (auto resolved); null until done.",
                },
                "confidence": {
                    "type": "number",
                    "nullable": True,
                    "minimum": 0,
                    "maximum": 1,
                    "description": "How sure the model was of this cut-out; below 0.5 is worth a look.",
                },
                "warnings": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "What the engine could not do as asked for a done item (English): a crop with no "
                    "subject found, a shadow under a subject the photo's edge cuts, a file size limit not met, an ID "
                    "photo's face not found or tilted.",
                },
                "warning_codes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"code": {"type": "string", "nullable": True}, "params": {"type": "object"}},
                    },
                    "description": "Beside warnings, in order: a stable code and its numbers for each (code null for "
                    "a sentence without one), so clients can say them in their own language.",
                },
                "result_url": {"type": "string", "nullable": True},
                "mask_url": {"type": "string", "nullable": True},
                "error_code": {
                    "type": "string",
                    "nullable": True,
                    "description": "Failed items: a stable reason code (see Error.reason); null when the "
                    "message has no known code.",
                },
                "error_params": {"type": "object", "description": "Failed items: the numbers of the reason."},
            },
        },
        "JobSummary": {
            "type": "object",
            "required": ["id", "kind", "state", "total", "done", "failed", "status_url", "results_url"],
            "properties": {
                "id": {"type": "string"},
                "kind": {"type": "string", "enum": ["batch", "single"]},
                "state": state,
                "total": {"type": "integer"},
                "done": {"type": "integer"},
                "failed": {"type": "integer"},
                "created_at": {"type": "number", "nullable": True, "description": "Unix time."},
                "finished_at": {"type": "number", "nullable": True},
                "expires_at": {
                    "type": "number",
                    "nullable": True,
                    "description": "When the results are deleted (MATTEFLOW_RESULT_TTL_HOURS after creation).",
                },
                "options": {"type": "object", "nullable": True},
                "callback": {
                    "type": "string",
                    "nullable": True,
                    "enum": ["pending", "delivered", "gave_up", None],
                    "description": "The job-finished callback: pending, delivered or gave_up; null without one.",
                },
                "open": {"type": "boolean", "description": "True while a batch created with open=true takes files."},
                "names": {"type": "array", "items": {"type": "string"}, "description": "The first item names."},
                "thumbnail_url": {"type": "string", "nullable": True, "description": "The first done result."},
                "status_url": {"type": "string"},
                "results_url": {"type": "string"},
            },
        },
        "JobList": {
            "type": "object",
            "required": ["jobs", "missing"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("JobSummary"), "description": "Newest first."},
                "missing": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Ids asked for that are unknown: expired or deleted.",
                },
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "state", "total", "done", "failed", "items"],
            "properties": {
                "id": {"type": "string"},
                "state": {
                    **state,
                    "description": "'done' once every item ended (some may have failed); "
                    "'failed' only when the job itself could not run.",
                },
                "total": {"type": "integer"},
                "done": {"type": "integer"},
                "failed": {"type": "integer"},
                "created_at": {"type": "number", "nullable": True},
                "finished_at": {"type": "number", "nullable": True},
                "error": {"type": "string", "nullable": True, "description": "Why the job could not run."},
                "options": {"type": "object", "nullable": True},
                "callback": {
                    "type": "string",
                    "nullable": True,
                    "enum": ["pending", "delivered", "gave_up", None],
                    "description": "The job-finished callback: pending, delivered or gave_up; null without one.",
                },
                "open": {
                    "type": "boolean",
                    "description": "True while a batch created with open=true takes more files; it is not "
                    "done before it is closed.",
                },
                "items": {"type": "array", "items": _ref("Item")},
                "status_url": {"type": "string"},
                "results_url": {"type": "string"},
            },
        },
    }


def server_limits(settings: Settings) -> dict[str, Any]:
    """The body of ``GET /api/v1/limits``."""
    return {
        "max_upload_mb": settings.max_upload_mb,
        "max_files_per_job": settings.max_files_per_job,
        "max_pixels": settings.max_pixels,
        "open_job_idle_s": settings.open_job_idle_s,
    }


def build_openapi(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.0 document of this server."""
    from .compat.docs import compat_paths  # the compat endpoints run through web.api, which imports this module

    options = _option_properties(settings.default_model)
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    image_content = {
        media: {"schema": {"type": "string", "format": "binary"}} for media in ("image/png", "image/jpeg", "image/webp")
    }
    api_key = [{}, {"apiKey": []}, {"bearer": []}]
    callback_url = {
        "type": "string",
        "maxLength": MAX_CALLBACK_URL_CHARS,
        "example": "https://pipeline.example.com/matteflow-done",
        "description": "POSTed the job's outcome (JSON: event job.finished, id, state, counts, status_url, "
        "results_url) once the job ends; at least once (deduplicate on X-MatteFlow-Delivery), signed with "
        "X-MatteFlow-Signature: sha256=<HMAC> when the server has MATTEFLOW_CALLBACK_SECRET. Its host must be in "
        "the server's MATTEFLOW_CALLBACK_HOSTS (400 invalid_option otherwise, and when callbacks are off).",
    }
    image_url_text = (
        f"http or https, at most {settings.max_upload_mb} MB and {settings.fetch_timeout_s:g} s each; only from "
        "hosts in the server's "
        "MATTEFLOW_FETCH_HOSTS (off when empty; * = any host whose addresses are all public): a host not listed, "
        "or one that resolves to a private or local address, is refused with 400 url_not_allowed."
    )
    image_url = {"type": "string", "maxLength": MAX_URL_CHARS, "example": "https://cdn.example.com/p/123.jpg"}
    # A job's uploads and image addresses (create, and each part of an open job).
    files_array = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "minItems": 1,
        "maxItems": settings.max_files_per_job,
    }
    image_urls = {"type": "array", "items": image_url, "maxItems": settings.max_files_per_job}
    idempotency_key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "Send the request again under the same key (a UUID) when its answer was lost: the answer "
        "the first request got comes back (Idempotent-Replayed: true) and no second job is made. Kept 24 h, per "
        "API key; the same key with another request is 422.",
    }
    key_in_progress = {
        **_error(
            "the first request with this Idempotency-Key is still creating its job (idempotency_key_in_progress): "
            "retry after Retry-After seconds."
        ),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
    bad_backdrop_or_key = _error(
        "The background image (file part background_image) is not a decodable image: empty, not an image "
        "(invalid_image); a bad image among the files is a failed item instead. Or this Idempotency-Key was used "
        "for a different request (idempotency_key_reused)."
    )
    too_large = _error(
        f"Body over {settings.max_upload_mb} MB (MATTEFLOW_MAX_UPLOAD_MB; answered as soon as the Content-Length "
        "says so, or when a chunked body passes it), or an image over "
        f"{settings.max_pixels} pixels or over the per-image memory budget of {settings.max_image_memory_mb} MB "
        "(error image_too_large; the message says which max_side would fit)."
    )
    bad_form = (
        "An unknown field (error invalid_option: only the fields listed are accepted), a bad option value, or a "
        "malformed body: a part without a name or with a name that is not UTF-8 (error invalid_form)."
    )
    unavailable = _error("The job store (Redis) is not reachable (error unavailable); try again later.")
    bad_key = _error(
        "An API key this server does not know (invalid_api_key), or a key sent to a server without keys "
        "(api_keys_disabled; MATTEFLOW_API_KEYS)."
    )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "MatteFlow",
            "version": __version__,
            "description": "Background removal for photos of people: one image at once, or batches "
            "through a queue with progress and a ZIP of the results. Errors are JSON "
            '`{"error": code, "message": text}`.',
        },
        "paths": {
            "/api/v1/jobs": {
                "get": {
                    "summary": "List jobs: those whose ids you hold, or your API key's",
                    "description": "A job id is the secret that opens a job; the server lists no job to a "
                    "client that does not already hold its id or the API key it was created with. With "
                    "?ids=a,b the named jobs are returned (unknown ones under missing: expired or deleted). "
                    "Without ids, an API key (MATTEFLOW_API_KEYS; Authorization: Bearer <key> or X-API-Key) "
                    "lists the jobs created with that key, newest first.",
                    "operationId": "listJobs",
                    "security": api_key,
                    "parameters": [
                        {
                            "name": "ids",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Comma-separated job ids (at most 200).",
                        }
                    ],
                    "responses": {
                        "200": {"description": "The jobs.", "content": {_JSON: {"schema": _ref("JobList")}}},
                        "400": _error("More than 200 ids (too_many_ids)."),
                        "503": unavailable,
                        "401": _error(
                            "No ids and no API key (api_key_required), a key that is not valid "
                            "(invalid_api_key), or keys are off on this server (api_keys_disabled)."
                        ),
                    },
                },
                "post": {
                    "summary": "Create a batch job",
                    "description": "Each upload is checked from its header; a bad file becomes a failed item "
                    "with its reason and the rest of the batch runs.",
                    "operationId": "createJob",
                    "security": api_key,
                    "parameters": [idempotency_key],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "description": "Unknown fields are rejected with 400 (invalid_option).",
                                    "properties": {
                                        "files": files_array,
                                        "image_url": {
                                            **image_urls,
                                            "description": "Images named by URL, beside or instead of files (the "
                                            "job's items follow the files, in this order), read by the workers: "
                                            + image_url_text
                                            + " One that gives no image (HTTP 404, too large, a redirect loop) is a "
                                            "failed item (error_code image_fetch_failed, or url_not_allowed for a "
                                            "redirect to a refused address); timeouts and HTTP 5xx are retried "
                                            "first.",
                                        },
                                        "callback_url": callback_url,
                                        "open": {
                                            "type": "string",
                                            "enum": ["true", "false"],
                                            "default": "false",
                                            "description": "true: a batch sent in several requests (a folder "
                                            f"bigger than {settings.max_upload_mb} MB): it may start with no "
                                            "files, takes more at files_url and ends only after close_url; its "
                                            "images start as they arrive, and it has one ZIP. The file limit "
                                            "counts every part.",
                                        },
                                        "kind": {
                                            "type": "string",
                                            "enum": ["batch", "single"],
                                            "default": "batch",
                                            "description": "single: an interactive image, queued ahead of "
                                            "batches, no ZIP.",
                                        },
                                        **options,
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted; poll status_url.",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {_JSON: {"schema": _ref("JobCreated")}},
                            # What a client does next with the id (stateful fuzzers follow these too).
                            "links": {
                                **{
                                    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
                                    for name, operation in (
                                        ("GetJob", "getJob"),
                                        ("GetResults", "getResults"),
                                        ("DeleteJob", "deleteJob"),
                                        ("RerunJob", "rerunJob"),
                                        ("AddFiles", "addFiles"),
                                        ("CloseJob", "closeJob"),
                                    )
                                },
                                "GetFirstItem": {
                                    "operationId": "getItem",
                                    "parameters": {"job_id": "$response.body#/id", "index": 0},
                                },
                            },
                        },
                        "400": _error(
                            "No files and no image_url (no_files), too many (too_many_files), an image_url this "
                            "server may not read (url_not_allowed), an Idempotency-Key that is not 1-255 printable "
                            f"ASCII characters (invalid_idempotency_key). {bad_form}"
                        ),
                        "401": bad_key,
                        "409": key_in_progress,
                        "413": too_large,
                        "422": bad_backdrop_or_key,
                        "503": unavailable,
                    },
                },
            },
            "/api/v1/jobs/{job_id}": {
                "parameters": [job_id],
                "get": {
                    "summary": "Job status and per-item progress",
                    "operationId": "getJob",
                    "responses": {
                        "200": {"description": "The job.", "content": {_JSON: {"schema": _ref("Job")}}},
                        "404": _error("Unknown job id."),
                    },
                },
                "delete": {
                    "summary": "Delete a job, its inputs and its results",
                    "operationId": "deleteJob",
                    "responses": {
                        "200": {
                            "description": "Deleted.",
                            "content": {
                                _JSON: {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}},
                                    }
                                }
                            },
                        },
                        "404": _error("Unknown job id."),
                    },
                },
            },
            "/api/v1/jobs/{job_id}/files": {
                "parameters": [job_id],
                "post": {
                    "summary": "Add files to a batch created with open=true",
                    "description": "They become the job's next items (in this order) and start at once; the "
                    "job's options apply. Send parts one after another: a part sent while another is being "
                    "stored is answered 409 job_busy.",
                    "operationId": "addFiles",
                    "security": api_key,
                    "parameters": [idempotency_key],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "description": "Only files and image_url: options are set when the job is "
                                    "created (another field is 400 invalid_option).",
                                    "properties": {
                                        "files": files_array,
                                        "image_url": image_urls,
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Added and queued.",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {_JSON: {"schema": _ref("FilesAdded")}},
                        },
                        "400": _error(
                            "No files (no_files), more than the job may hold in all (too_many_files), an image_url "
                            f"this server may not read (url_not_allowed), a bad Idempotency-Key. {bad_form}"
                        ),
                        "401": bad_key,
                        "404": _error("Unknown job id."),
                        "409": {
                            **key_in_progress,
                            "description": "The job takes no more files: closed, finished or created without "
                            "open=true (job_closed); another part is being stored (job_busy, retry after "
                            "Retry-After); or " + key_in_progress["description"],
                        },
                        "413": too_large,
                        "422": _error(
                            "This Idempotency-Key was used for a different request (idempotency_key_reused)."
                        ),
                        "503": unavailable,
                    },
                },
            },
            "/api/v1/jobs/{job_id}/close": {
                "parameters": [job_id],
                "post": {
                    "summary": "Close a batch created with open=true",
                    "description": "It takes no more files and ends once its items have, with one ZIP of every "
                    "part. Closing a job that takes no files changes nothing. A batch left open with no new "
                    "files for MATTEFLOW_OPEN_JOB_IDLE_S (an hour) is closed by the server.",
                    "operationId": "closeJob",
                    "responses": {
                        "200": {"description": "The job.", "content": {_JSON: {"schema": _ref("Job")}}},
                        "404": _error("Unknown job id."),
                        "503": unavailable,
                    },
                },
            },
            "/api/v1/jobs/{job_id}/rerun": {
                "parameters": [job_id],
                "post": {
                    "summary": "Run a job's uploads again with other options",
                    "description": "A new job of the same kind from the uploads stored with job_id (nothing "
                    "is uploaded again); the page re-renders a photo this way when an option changes. The "
                    "source job is left as it is.",
                    "operationId": "rerunJob",
                    "security": api_key,
                    "parameters": [idempotency_key],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        **options,
                                        "callback_url": callback_url,
                                        "items": {
                                            "type": "string",
                                            "pattern": "^[0-9]+(,[0-9]+)*$",
                                            "example": "0,3,7",
                                            "description": "Only these items of the job (indices), in this "
                                            "order; all of them when omitted.",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted; poll status_url.",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {_JSON: {"schema": _ref("JobCreated")}},
                        },
                        "400": _error(bad_form),
                        "401": bad_key,
                        "404": _error("Unknown job id."),
                        "409": {
                            **key_in_progress,
                            "description": "No item of the job has a stored upload (nothing_to_rerun); or "
                            + key_in_progress["description"],
                        },
                        "413": too_large,
                        "422": bad_backdrop_or_key,
                        "503": unavailable,
                    },
                },
            },
            "/api/v1/jobs/{job_id}/items/{index}/adopt": {
                "parameters": [
                    job_id,
                    {"name": "index", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                ],
                "post": {
                    "summary": "Use another job's result for one item of a finished batch",
                    "description": "Typically a re-run of this one photo (POST .../rerun with items=<index> "
                    "and another model): its result (and mask) becomes this item's, with its model and "
                    "confidence, and a worker writes the batch's ZIP again shortly after (the old one is "
                    "served until then). Both jobs must be done and their results of the same format.",
                    "operationId": "adoptResult",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["from_job"],
                                    "properties": {
                                        "from_job": {"type": "string", "description": "The job whose result to use."},
                                        "from_item": {
                                            "type": "string",
                                            "pattern": "^[0-9]+$",
                                            "default": "0",
                                            "description": "Its item index (0 for a one-photo re-run).",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "The item now has that result; the ZIP is being written again.",
                            "content": {
                                _JSON: {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "id": {"type": "string"},
                                            "index": {"type": "integer"},
                                            "from_job": {"type": "string"},
                                            "from_item": {"type": "integer"},
                                            "model": {"type": "string", "nullable": True},
                                            "confidence": {"type": "number", "nullable": True},
                                            "status_url": {"type": "string"},
                                            "results_url": {"type": "string"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error("from_job missing, or from_item not an index (invalid_option)."),
                        "404": _error("Unknown job or item (job_not_found, item_not_found)."),
                        "409": _error(
                            "A job not done (not_ready), an item without a result (item_failed), a one-image "
                            "job (no_zip), or results of another format (incompatible_result)."
                        ),
                    },
                },
            },
            "/api/v1/jobs/{job_id}/results.zip": {
                "parameters": [job_id],
                "get": {
                    "summary": "ZIP of the results",
                    "description": "Served as batch_results_<YYYYMMDDHHMMSS>.zip: one result per done item, "
                    "named as its upload, plus manifest.json with every item's state and error.",
                    "operationId": "getResults",
                    "responses": {
                        "200": {
                            "description": "The ZIP.",
                            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "404": {
                            "description": "Unknown job id: JSON for API clients, a page saying the link "
                            "expired for a browser that navigated here.",
                            "content": {_JSON: {"schema": _ref("Error")}, "text/html": {"schema": {"type": "string"}}},
                        },
                        "409": _error(
                            "Not ready yet (error not_ready); poll the status. Or a single-image job (kind "
                            "single), which has no ZIP (error no_zip, with item_url)."
                        ),
                        "410": _error("The job failed (error job_failed): no archive will ever exist."),
                    },
                },
            },
            "/api/v1/jobs/{job_id}/items/{index}": {
                "parameters": [
                    job_id,
                    {"name": "index", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "mask",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                        "description": "The 8-bit alpha mask instead (jobs created with mask=true).",
                    },
                    {
                        "name": "input",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                        "description": "The upload itself, as sent (the 'before' of a before/after view).",
                    },
                    {
                        "name": "download",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                        "description": "Send as an attachment named after the upload.",
                    },
                ],
                "get": {
                    "summary": "One result image",
                    "operationId": "getItem",
                    "responses": {
                        "200": {
                            "description": "The image (with input=1: the upload as sent, in its own format).",
                            "content": {
                                **image_content,
                                **{
                                    media: {"schema": {"type": "string", "format": "binary"}}
                                    for media in ("image/heic", "image/avif", "image/bmp", "image/tiff")
                                },
                            },
                        },
                        "404": _error("Unknown job or item."),
                        "409": _error("Not done yet (not_ready) or failed (item_failed, with its reason)."),
                    },
                },
            },
            "/api/v1/matte": {
                "post": {
                    "summary": "Cut out one image and wait for it",
                    "description": "Runs through the same queue and workers as jobs; waits up to "
                    f"{settings.single_image_timeout_s:g} s (MATTEFLOW_SINGLE_IMAGE_TIMEOUT_S). At most "
                    f"{matte_in_flight_bound(settings)} calls wait at once; more are answered 503 with Retry-After "
                    "at once. Option fields may also be sent as query parameters.",
                    "operationId": "matte",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "description": "Unknown fields are rejected with 400 (invalid_option).",
                                    "properties": {
                                        "file": {"type": "string", "format": "binary"},
                                        "image_url": {
                                            **image_url,
                                            "description": "The image by URL, read while the call waits: "
                                            + image_url_text,
                                        },
                                        **options,
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The result image; with mask=true a ZIP of the result and "
                            "<name>_mask.png (for the mask alone, create a job and GET items/0?mask=1).",
                            "headers": {
                                "X-MatteFlow-Model": {
                                    "description": "The model that ran (people or general).",
                                    "schema": {"type": "string"},
                                },
                                "X-MatteFlow-Confidence": {
                                    "description": "How sure the model was of this cut-out, 0 to 1.",
                                    "schema": {"type": "number"},
                                },
                                "X-MatteFlow-Warnings": {
                                    "description": "Only when there are some: what the engine could not do as asked "
                                    "(a JSON list of English sentences, ASCII-escaped), as an item's warnings.",
                                    "schema": {"type": "string"},
                                },
                            },
                            "content": {
                                **image_content,
                                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                            },
                        },
                        "400": _error(
                            "No file and no image_url (no_file), more than one (too_many_files), an image_url this "
                            f"server may not read (url_not_allowed). {bad_form}"
                        ),
                        "413": too_large,
                        "422": _error(
                            "Not a decodable image (empty, truncated, not an image), or image_url gave no image "
                            "(image_fetch_failed: an HTTP error, too large, too slow, unreachable)."
                        ),
                        "503": {
                            **_error(
                                f"Already {matte_in_flight_bound(settings)} single-image calls in flight "
                                "(error busy, MATTEFLOW_MATTE_MAX_IN_FLIGHT): retry after Retry-After seconds, or "
                                "use POST /api/v1/jobs; or the job store (Redis) is unreachable (unavailable)."
                            ),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                        "504": _error("No worker finished the image in time."),
                    },
                }
            },
            "/api/v1/instructions:parse": {
                "post": {
                    "summary": "Read an instruction into options, without running anything",
                    "description": "JSON or form fields: 'instruction', optional explicit options (they win) and "
                    "'lang' (en or zh) for the explanation. Answers the options, which words set which option, "
                    "the words ignored and not understood, overrides, and an explanation to confirm.",
                    "operationId": "parseInstruction",
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["instruction"],
                                    "properties": {**options, "lang": {"type": "string", "enum": ["en", "zh"]}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "options, mapped, ignored, not_understood, overridden, explanation"},
                        "400": _error("No instruction, or options that do not fit."),
                    },
                }
            },
            "/api/v1/limits": {
                "get": {
                    "summary": "What one request and one job may carry on this server",
                    "description": "A client sizes its requests by these: a batch bigger than max_upload_mb goes as "
                    "one job created with open=true, in parts.",
                    "operationId": "getLimits",
                    "responses": {
                        "200": {
                            "description": "The limits.",
                            "content": {
                                _JSON: {
                                    "schema": {
                                        "type": "object",
                                        "required": list(server_limits(settings)),
                                        "properties": {
                                            "max_upload_mb": {
                                                "type": "integer",
                                                "description": "Largest request body (MATTEFLOW_MAX_UPLOAD_MB).",
                                            },
                                            "max_files_per_job": {
                                                "type": "integer",
                                                "description": "Files of one job, every part counted.",
                                            },
                                            "max_pixels": {"type": "integer", "description": "Pixels of one image."},
                                            "open_job_idle_s": {
                                                "type": "number",
                                                "description": "An open job that gets no files this long is "
                                                "closed by the server.",
                                            },
                                        },
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "OpenAPI 3 document.", "content": {_JSON: {}}}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "operationId": "healthz",
                    "responses": {"200": {"description": "The process serves requests."}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: Redis reachable (with workers=1: and a worker answered a ping)",
                    "operationId": "readyz",
                    "responses": {
                        "200": {"description": "Ready."},
                        "503": _error("Redis unreachable, or with workers=1 no worker answered (not_ready)."),
                    },
                }
            },
            **compat_paths(),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
