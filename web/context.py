"""What the app factory hands to every request: the settings and the one JobClient."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import current_app
from prometheus_client import CollectorRegistry

from matteflow.settings import Settings
from matteflow.workers.client import JobClient

from .readiness import ReadinessCache

EXTENSION_KEY = "matteflow"


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    jobs: JobClient
    metrics_registry: CollectorRegistry
    # Bounds POST /api/v1/matte calls in flight (each holds a request thread while it waits on its worker).
    matte_in_flight: int = 1
    matte_slots: threading.BoundedSemaphore = field(init=False)
    # /readyz's view of the workers, cached for a moment (web/observability.py).
    readiness: ReadinessCache = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matte_slots", threading.BoundedSemaphore(self.matte_in_flight))
        object.__setattr__(self, "readiness", ReadinessCache(self.jobs))


# Request threads kept for everything else (job uploads, status, downloads, the page) however many
# single-image calls wait.
THREADS_KEPT_FROM_MATTE = 4


def matte_in_flight_bound(settings: Settings) -> int:
    """How many POST /api/v1/matte calls may wait at once: the setting, but never so many that they would
    hold every request thread."""
    return max(1, min(settings.matte_max_in_flight, settings.web_threads - THREADS_KEPT_FROM_MATTE))


def web_context() -> WebContext:
    """The context of the app serving the current request (set once by ``create_app``)."""
    return current_app.extensions[EXTENSION_KEY]
