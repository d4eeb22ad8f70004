"""MatteFlow's web intake: Flask app factory, page and JSON API. Never imports torch; enqueues by task name."""

from .app import create_app

__all__ = ["create_app"]
