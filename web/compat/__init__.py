"""Endpoints that speak other background-removal services' APIs, so code written for them works against
MatteFlow by changing its base URL: remove.bg's ``POST /v1.0/removebg`` (:mod:`.removebg`) and the rembg
server's ``/api/remove`` (:mod:`.rembg`).

Each translates its service's parameters into MatteFlow's options and runs the image exactly as
``POST /api/v1/matte`` does (the same single-image slots, URL guard, workers and limits); only the words
of the request and the shape of the answer differ. A parameter with no MatteFlow equivalent is refused by
name unless it is at its default, never silently dropped.
"""

from __future__ import annotations

from flask import Flask

from . import rembg, removebg


def register(app: Flask) -> None:
    app.register_blueprint(removebg.bp)
    app.register_blueprint(rembg.bp)
