"""Stable reason codes (plus parameters) for the input errors core raises, so a client can say them in its
own language (the page translates them; see ``web/static/i18n.js`` keys ``reason.<code>``).

Core errors carry an English message only, and a worker records that message with the error's class name.
This module reads the few message shapes core writes (``core/imageio.py``) back into a code and its
numbers, in one place; ``tests/web/test_history_api.py`` pins every shape, so a reworded message fails a
test here instead of silently falling back to English on the page.
"""

from __future__ import annotations

import re
from typing import Any

# (class name, pattern on the message, reason code). First match wins; named groups become parameters.
_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("InvalidImageError", re.compile(r"^empty file"), "image_empty"),
    ("InvalidImageError", re.compile(r"^not a supported image"), "image_unsupported"),
    ("InvalidImageError", re.compile(r"^unsupported image format (?P<format>\S+?);"), "image_format"),
    ("InvalidImageError", re.compile(r"^image has an invalid size (?P<width>-?\d+)x(?P<height>-?\d+)"), "image_size"),
    ("InvalidImageError", re.compile(r"^image data is truncated"), "image_truncated"),
    ("InvalidImageError", re.compile(r"^image data is corrupt"), "image_corrupt"),
    # Also after the worker's tries: "failed after 3 attempts: ImageFetchError: could not fetch ...".
    (
        "ImageFetchError",
        re.compile(r"^(?:failed after \d+ attempts: ImageFetchError: )?could not fetch the image"),
        "image_fetch_failed",
    ),
    ("FetchRefused", re.compile(r"^image_url's host"), "url_not_allowed"),
    (
        "ImageTooLargeError",
        re.compile(
            r"^image is (?:(?P<width>\d+)x(?P<height>\d+) = )?(?P<pixels>[\d,]+) pixels; the limit is (?P<limit>[\d,]+)"
        ),
        "image_too_large",
    ),
)

# Fallbacks by class when the message has an unknown shape: still a code the page can translate.
_BY_CLASS = {
    "InvalidImageError": "invalid_image",
    "ImageTooLargeError": "image_too_large",
    "InvalidOptionError": "invalid_option",
    "ModelError": "model_unavailable",
}


def reason_for(error_type: str | None, message: str | None) -> tuple[str | None, dict[str, Any]]:
    """``(code, params)`` for a recorded error: e.g. ``("image_too_large", {"pixels": 900000000, ...})``.

    ``error_type`` (the core class name) narrows the match when known. An unknown shape gives the class's
    generic code (``invalid_image``), or ``None`` (no code: a client shows the English message as it is).
    """
    text = (message or "").strip()
    for class_name, pattern, code in _PATTERNS:
        if error_type and error_type != class_name:
            continue
        found = pattern.match(text)
        if found:
            params = {k: _number(v) for k, v in found.groupdict().items() if v is not None}
            return code, params
    return _BY_CLASS.get(error_type or ""), {}


def _number(value: str) -> Any:
    digits = value.replace(",", "")
    return int(digits) if re.fullmatch(r"-?\d+", digits) else value


# The engine's warnings on a done item (English sentences from core: cropping, postprocess, idphoto, imageio),
# as stable codes and numbers for the page (i18n keys ``warn.<code>``); tests/web/test_i18n.py pins each shape.
_WARNINGS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^no subject found to crop to"), "no_subject"),
    (re.compile(r"^no shadow: "), "no_shadow"),
    (re.compile(r"^PNG is lossless: the smallest is (?P<kb>[\d,]+) KB, over the (?P<limit>[\d,]+) KB"), "png_too_big"),
    (re.compile(r"^even at quality 10 the file is (?P<kb>[\d,]+) KB, over the (?P<limit>[\d,]+) KB"), "file_too_big"),
    (re.compile(r"^(?P<count>\d+) faces found"), "many_faces"),
    (re.compile(r"^the head is tilted by about (?P<degrees>\d+) degrees"), "head_tilted"),
    (re.compile(r"^the face is small \((?P<px>\d+) px wide\)"), "small_face"),
    (re.compile(r"^the top of the head is cut off"), "head_cut"),
    (re.compile(r"^the chin is cut off"), "chin_cut"),
    (re.compile(r"^the person is cut by the photo's side edge"), "side_cut"),
    (re.compile(r"^no face found"), "no_face"),
    (re.compile(r"^no person found in the photo"), "no_person"),
    (re.compile(r"^the head is small in the photo: scaled up (?P<scale>[\d.]+)x"), "small_head"),
)


def warning_codes(warnings: list[str]) -> list[dict[str, Any]]:
    """``[{"code", "params"}]`` beside an item's English warnings (``code`` None for a shape not known here:
    a client shows that one as it is)."""
    coded = []
    for text in warnings:
        for pattern, code in _WARNINGS:
            found = pattern.match(text)
            if found:
                coded.append({"code": code, "params": {k: _number(v) for k, v in found.groupdict().items()}})
                break
        else:
            coded.append({"code": None, "params": {}})
    return coded
