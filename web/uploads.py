"""Reading a multipart request into (name, bytes) uploads and validated options.

Kept apart from the routes so the rules (what counts as "no file", how names are sanitised, which fields are
options) are one small, testable module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from werkzeug.datastructures import FileStorage

from matteflow.core.options import MatteOptions, parse_options
from matteflow.workers.storage import sanitize_name


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
        uploads.append((sanitize_name(part.filename, fallback=f"image_{number}"), part.read()))
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
