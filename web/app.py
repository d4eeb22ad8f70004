"""The Flask app factory: settings and one JobClient in, an app with the page, API and probes out."""

from __future__ import annotations

from flask import Flask, Response

from matteflow import metrics
from matteflow.settings import Settings
from matteflow.workers.client import JobClient

from . import api, compat, instructions, observability, page
from .context import EXTENSION_KEY, WebContext, matte_in_flight_bound
from .errors import register_error_handlers
from .uploads import SpoolingRequest

# Multipart fields beyond the files themselves (the options); Werkzeug answers 413 above MAX_FORM_PARTS.
_OPTION_FIELD_ALLOWANCE = 64


def create_app(settings: Settings | None = None, job_client: JobClient | None = None) -> Flask:
    """Build the web app. ``settings`` defaults to ``Settings.from_env()``; ``job_client`` to a JobClient on
    those settings (tests pass their own, built on their Redis)."""
    settings = settings if settings is not None else Settings.from_env()
    jobs = job_client if job_client is not None else JobClient(settings)

    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(
        # Werkzeug refuses larger bodies with 413 before parsing them; errors.py renders it as JSON.
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # Werkzeug's default of 1000 parts would refuse a legal batch of max_files_per_job files.
        MAX_FORM_PARTS=settings.max_files_per_job + _OPTION_FIELD_ALLOWANCE,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = WebContext(
        settings=settings,
        jobs=jobs,
        metrics_registry=metrics.web_registry(settings, jobs.redis),
        matte_in_flight=matte_in_flight_bound(settings),
    )
    # Uploads spool to the storage volume (not to a tmpfs /tmp) and reach storage by streaming copies.
    app.request_class = type("MatteflowRequest", (SpoolingRequest,), {"spool_dir": settings.storage_dir / "tmp"})

    app.register_blueprint(page.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(instructions.bp)
    app.register_blueprint(observability.bp)
    compat.register(app)
    register_error_handlers(app)
    observability.install_request_metrics(app)

    @app.after_request
    def _no_sniff(response: Response) -> Response:
        # Result images are served with their real media type; the browser must never guess another.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return app
