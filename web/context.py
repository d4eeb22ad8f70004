"""What the app factory hands to every request: the settings and the one JobClient."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from prometheus_client import CollectorRegistry

from matteflow.settings import Settings
from matteflow.workers.client import JobClient

EXTENSION_KEY = "matteflow"


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    jobs: JobClient
    metrics_registry: CollectorRegistry


def web_context() -> WebContext:
    """The context of the app serving the current request (set once by ``create_app``)."""
    return current_app.extensions[EXTENSION_KEY]
