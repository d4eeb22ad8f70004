"""One place that turns every failure into the JSON error body ``{"error": code, "message": text}``.

Registered once on the app (not per blueprint) so 404/405 for unknown routes, 413 raised by Werkzeug while
parsing an oversize body, and core's input errors all answer the same way — never an HTML page, and never a
500 for bad input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from matteflow.core.errors import (
    ImageTooLargeError,
    InputError,
    InvalidImageError,
    InvalidOptionError,
    MattingError,
    ModelError,
    shown,
)
from matteflow.fetch import FetchRefused, ImageFetchError

from .reasons import reason_for

log = logging.getLogger(__name__)

# Status + machine-readable code for each core error (docs/internal-api.md "HTTP mapping"). Most specific
# first: the lookup walks the exception's MRO, so a subclass never falls through to its parent's entry.
CORE_ERROR_STATUS: dict[type[MattingError], tuple[int, str]] = {
    FetchRefused: (400, "url_not_allowed"),  # an image_url this server may not read (matteflow/fetch.py)
    ImageFetchError: (422, "image_fetch_failed"),  # an image_url that gave no image
    InvalidImageError: (422, "invalid_image"),
    ImageTooLargeError: (413, "image_too_large"),
    InvalidOptionError: (400, "invalid_option"),
    InputError: (400, "invalid_input"),
    ModelError: (503, "model_unavailable"),
    MattingError: (500, "matting_error"),
}

# Werkzeug's exception names are long phrases; the API uses short snake_case codes.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    501: "not_implemented",
    503: "unavailable",
}


def upload_limit_message(limit_mb: int) -> str:
    """The 413 message for a body over the limit: the same whether waitress or Werkzeug found it."""
    return f"the request body is larger than the limit of {limit_mb} MB (MATTEFLOW_MAX_UPLOAD_MB)"


class ApiError(Exception):
    """An error the API raises on purpose: it carries its status, code, message and optional extra fields."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    """The JSON error body every failure uses."""
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


def status_for_core_error(exc: MattingError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in CORE_ERROR_STATUS:
            return CORE_ERROR_STATUS[cls]
    return 500, "matting_error"


@dataclass(frozen=True)
class ErrorReply:
    """What any failure answers, before it is shaped into a body: the API's JSON here, another service's
    error format on the compatibility endpoints (``web/compat``)."""

    status: int
    code: str
    message: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def reply_for(exc: Exception) -> ErrorReply:
    """The one mapping from an exception raised while answering a request to its status, code and message."""
    if isinstance(exc, ApiError):
        headers = {} if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
        return ErrorReply(exc.status, exc.code, exc.message, dict(exc.extra), headers)
    if isinstance(exc, MattingError):
        status, code = status_for_core_error(exc)
        if status >= 500:
            log.error("matting failed: %s", exc)
        # A finer stable reason (image_empty, image_too_large...) with its numbers, for translated messages.
        reason, params = reason_for(type(exc).__name__, str(exc))
        extra = {"reason": reason, "params": params} if reason else {}
        return ErrorReply(status, code, str(exc) or code, extra)
    if isinstance(exc, HTTPException):
        return _http_reply(exc)
    # A bug or an outage (e.g. Redis down), never the caller's fault: log the traceback, answer JSON.
    if isinstance(exc, (RedisError, KombuOperationalError)):
        log.error("redis unavailable: %s", exc)
        return ErrorReply(503, "unavailable", "the job store (Redis) is not reachable; try again later")
    log.exception("unhandled error")
    return ErrorReply(500, "internal_error", "internal server error")


def _http_reply(exc: HTTPException) -> ErrorReply:
    status = exc.code or 500
    code = HTTP_CODES.get(status, (exc.name or "error").lower().replace(" ", "_"))
    message = exc.description or exc.name or code
    valid_methods = getattr(exc, "valid_methods", None) or []
    headers: dict[str, str] = {}
    if status == 404:
        message = f"no such URL: {shown(request.path)} (the API is described at /api/v1/openapi.json)"
    elif status == 405:
        message = (
            f"{shown(request.method)} is not allowed on {shown(request.path)}; allowed: {', '.join(valid_methods)}"
        )
        if valid_methods:
            headers["Allow"] = ", ".join(valid_methods)
    extra = {}
    if status == 413:
        limit_mb = current_app.config.get("MAX_CONTENT_LENGTH", 0) // (1024 * 1024)
        message = upload_limit_message(limit_mb)
        extra = {"limit_mb": limit_mb}
    return ErrorReply(status, code, message, extra, headers)


def json_error(reply: ErrorReply) -> Response:
    """The API's JSON error body for ``reply``, with its headers."""
    response = error_response(reply.status, reply.code, reply.message, **reply.extra)
    response.headers.update(reply.headers)
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the single error mapping on ``app``: every exception, answered as :func:`reply_for` says."""

    @app.errorhandler(Exception)
    def _any_error(exc: Exception) -> Response:
        return json_error(reply_for(exc))
