"""Fixtures of the web tests: the app on the shared real Redis (tests/conftest.py), a test client, sample
uploads good and bad, and a live waitress server for the browser and ``matteflow submit`` tests.

No fake JobClient: tests that never reach a worker still use the real client on the real Redis; tests that
need results also ask for the shared ``celery_worker`` fixture (a real worker process).
"""

from __future__ import annotations

import io
import shutil
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from waitress import create_server

from matteflow.settings import Settings
from matteflow.web import create_app

from .helpers import Origin, serving_in_thread

# ---------------------------------------------------------------------------------------------------------
# sample uploads


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def portrait(width: int = 96, height: int = 128, seed: int = 3) -> Image.Image:
    """A small textured 'person' (warm ellipse) on a cool gradient: real pixels, cheap to process."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([40 + xx * 0.8, 90 + yy * 0.4, 200 - yy * 0.3], axis=2)
    inside = ((xx - width / 2) / (width * 0.3)) ** 2 + ((yy - height * 0.55) / (height * 0.4)) ** 2 <= 1.0
    noise = np.random.default_rng(seed).normal(0, 8, (height, width, 3))
    subject = np.array([210.0, 150.0, 120.0]) + noise
    pixels = np.where(inside[:, :, None], subject, background)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (1-bit grey) with no pixel data: a pixel bomb as the
    intake sees it (the header check must refuse it before anything is decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@dataclass(frozen=True)
class Samples:
    jpeg: bytes
    png: bytes
    truncated_jpeg: bytes
    text: bytes
    empty: bytes
    pixel_bomb: bytes


@pytest.fixture(scope="session")
def samples() -> Samples:
    jpeg = encode(portrait(), "JPEG", quality=90)
    big_jpeg = encode(portrait(320, 400, seed=5), "JPEG", quality=95)
    return Samples(
        jpeg=jpeg,
        png=encode(portrait(80, 100, seed=4), "PNG"),
        # Header intact, most of the scan data missing: passes the header check, fails the decode.
        truncated_jpeg=big_jpeg[: len(big_jpeg) // 3],
        text=b"this is a shopping list, not a picture\n",
        empty=b"",
        pixel_bomb=png_header_only(30000, 30000),
    )


# ---------------------------------------------------------------------------------------------------------
# the app


@pytest.fixture
def web_settings(service_settings: Settings) -> Settings:
    """The shared service settings (real Redis URL, storage the worker reads) for the web app."""
    return service_settings


@pytest.fixture
def app(web_settings: Settings, job_client: Any) -> Flask:
    return create_app(web_settings, job_client)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def worker(celery_worker: Any) -> Any:
    """The shared real worker, restarted if an earlier test (elsewhere in the suite) stopped it."""
    return celery_worker.ensure_running()


# ---------------------------------------------------------------------------------------------------------
# a live server (waitress, as in production) in a thread


@dataclass
class LiveServer:
    url: str
    settings: Settings


@pytest.fixture(scope="session")
def live_server(service_settings: Settings, job_client: Any, celery_worker: Any) -> Iterator[LiveServer]:
    """The app served by waitress (as in production) on a free port, with the shared real worker behind it."""
    application = create_app(service_settings, job_client)
    with serving_in_thread(create_server(application, host="127.0.0.1", port=0, threads=4)) as url:
        yield LiveServer(url=url, settings=service_settings)


# ---------------------------------------------------------------------------------------------------------
# the browser: Debian's chromium through Playwright (its own browser downloads are not reachable here)

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (`make test-system-deps` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def open_page(browser: Any, live_server: Any) -> Iterator[Callable[..., Any]]:
    """``open_page(locale="en-US", **context_options)`` -> a page on the app. Page errors, failed script loads
    and CSP violations (console errors) fail the test."""
    contexts: list[Any] = []
    problems: list[str] = []

    def make(locale: str = "en-US", **options: Any) -> Any:
        context = browser.new_context(accept_downloads=True, locale=locale, **options)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.goto(live_server.url + "/")
        return page

    yield make
    for context in contexts:
        context.close()
    # A failed request we provoked on purpose (4xx) is logged by Chromium as a resource error; anything else
    # (a script error, a CSP violation) fails the test.
    unexpected = [p for p in problems if "status of 4" not in p]
    assert not unexpected, unexpected


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    """The app's page in English."""
    return open_page()


# ---------------------------------------------------------------------------------------------------------
# an image host on this machine (image_url tests; the test settings list 127.0.0.1 in MATTEFLOW_FETCH_HOSTS)


@pytest.fixture(scope="module")
def origin(samples: Any) -> Iterator[Origin]:
    host = Origin(samples.jpeg)
    thread = threading.Thread(target=host.server.serve_forever, daemon=True)
    thread.start()
    yield host
    host.server.shutdown()
    host.server.server_close()
