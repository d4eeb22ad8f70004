"""Reading a multipart request into (name, bytes) uploads and validated options.

Kept apart from the routes so the rules (what counts as "no file", how names are sanitised, which fields are
options) are one small, testable module.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from matteflow.core.options import MatteOptions, parse_options
from werkzeug.datastructures import FileStorage

# Longest kept name, in characters: long enough for real camera/export names, short enough for any filesystem.
MAX_NAME_CHARS = 120
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]+')


def sanitize_filename(raw: str | None, fallback: str = "image") -> str:
    """The last path component of a client-supplied name, made safe to show and to store.

    Never a path: ``../../x.jpg`` and ``C:\\dir\\x.jpg`` both become ``x.jpg``. Unicode letters are kept (the
    seeds' users name files in Chinese) but control and shell/Windows-reserved characters are dropped, as are
    leading dots (no hidden files, no ``..``). An empty result falls back to ``fallback``.
    """
    text = unicodedata.normalize("NFC", raw or "")
    # Browsers on Windows and folder uploads may send either separator.
    text = text.replace("\\", "/")
    text = text.rsplit("/", 1)[-1]
    text = _UNSAFE_CHARS.sub("_", text).strip().lstrip(".").strip()
    if len(text) > MAX_NAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        keep_extension = bool(dot) and 0 < len(ext) <= 8
        text = stem[: MAX_NAME_CHARS - len(ext) - 1] + "." + ext if keep_extension else text[:MAX_NAME_CHARS]
    return text or fallback


def is_blank_part(part: FileStorage) -> bool:
    """A form's empty file input: browsers send a part with no filename and no content; it is not a file."""
    if part.filename:
        return False
    head = part.stream.read(1)
    part.stream.seek(0)
    return not head


def read_uploads(parts: Iterable[FileStorage]) -> list[tuple[str, bytes]]:
    """Every non-blank part as ``(sanitised name, bytes)``; a named 0-byte file is kept (it is bad input)."""
    uploads: list[tuple[str, bytes]] = []
    for number, part in enumerate(parts, start=1):
        if is_blank_part(part):
            continue
        uploads.append((sanitize_filename(part.filename, fallback=f"image_{number}"), part.read()))
    return uploads


def read_options(*sources: Mapping[str, str]) -> MatteOptions:
    """Options from form fields and/or query parameters (later sources win).

    An empty value counts as not given, so an HTML form's untouched fields fall back to the preset or the
    default. Unknown names and bad values raise :class:`InvalidOptionError` (answered 400).
    """
    raw: dict[str, str] = {}
    for source in sources:
        for key, value in source.items():
            if value is None or str(value).strip() == "":
                continue
            raw[key] = value
    return parse_options(raw)
