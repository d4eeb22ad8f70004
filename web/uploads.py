"""Reading a multipart request into uploads (name + stream) and validated options.

Kept apart from the routes so the rules (what counts as "no file", how names are sanitised, which fields are
options, which parts are refused) are one small, testable module.

Uploads are never read into memory whole: Werkzeug spools each file part to a temporary file (in memory up to
``SPOOL_IN_MEMORY_BYTES``), and the job client copies that stream to storage through a bounded buffer.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from flask import Request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import FormDataParser

from matteflow.core.errors import shown
from matteflow.core.instructions import LlmConfig, Resolved, resolve_options
from matteflow.core.registry import DEFAULT_MODEL
from matteflow.files import SPOOL_IN_MEMORY_BYTES, sanitize_name

from .errors import ApiError


class SpoolingRequest(Request):
    """A Flask request whose file parts spill to ``spool_dir`` (the storage volume, never a tmpfs)."""

    spool_dir: Path | None = None

    def make_form_data_parser(self) -> FormDataParser:
        parser = super().make_form_data_parser()
        parser.silent = False  # a body Werkzeug cannot parse is the client's error, not an empty form
        return parser

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except ValueError as exc:  # UnicodeDecodeError of a part header, no boundary, broken framing
            raise ApiError(
                400,
                "invalid_form",
                f"the multipart body cannot be parsed ({shown(str(exc))}); part headers must be UTF-8 and each "
                "part needs a name",
            ) from None

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if self.spool_dir is not None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
        return tempfile.SpooledTemporaryFile(  # noqa: SIM115 - Werkzeug owns and closes it
            max_size=SPOOL_IN_MEMORY_BYTES, mode="rb+", dir=self.spool_dir
        )


def stream_size(stream: IO[bytes]) -> int:
    """Bytes in a seekable stream (its position is kept)."""
    position = stream.tell()
    size = stream.seek(0, os.SEEK_END)
    stream.seek(position)
    return size


def is_blank_part(part: FileStorage) -> bool:
    """A form's empty file input: browsers send a part with no filename and no content; it is not a file."""
    if part.filename:
        return False
    head = part.stream.read(1)
    part.stream.seek(0)
    return not head


def refuse_nameless_parts(form: MultiDict[Any, Any], files: MultiDict[Any, Any]) -> None:
    """A multipart part without a usable field name is a malformed request: 400 (it used to reach the
    option parser as a ``None`` key and answer 500)."""
    for source, kind in ((form, "field"), (files, "file part")):
        for key in source:
            if not isinstance(key, str) or not key.strip() or "\ufffd" in key:
                raise ApiError(
                    400,
                    "invalid_form",
                    f"a multipart {kind} has no name or a name that is not valid UTF-8 ({shown(key)}); "
                    "every part needs a name such as 'files', 'file' or an option",
                )


def read_uploads(parts: Iterable[FileStorage]) -> list[tuple[str, IO[bytes]]]:
    """Every non-blank part as ``(sanitised name, stream at 0)``; a named 0-byte file is kept (it is bad
    input). The streams belong to the request and are closed with it."""
    uploads: list[tuple[str, IO[bytes]]] = []
    for number, part in enumerate(parts, start=1):
        if is_blank_part(part):
            continue
        part.stream.seek(0)
        uploads.append((sanitize_name(part.filename, fallback=f"image_{number}"), part.stream))
    return uploads


def read_resolved_options(
    *sources: Mapping[str, str], llm: LlmConfig | None = None, default_model: str = DEFAULT_MODEL
) -> Resolved:
    """Options from form fields and/or query parameters (later sources win), plus the ``instruction`` field
    (words, 中文 or English): the options it asks for, overridden by the explicit fields, and the explanation
    of how it was read.

    An empty value counts as not given, so an HTML form's untouched fields fall back to the preset or the
    default (``default_model``: the deployment's). Unknown names and bad values raise
    :class:`InvalidOptionError` (answered 400)."""
    raw: dict[str, str] = {}
    for source in sources:
        for key, value in source.items():
            if value is not None and str(value).strip() != "":
                raw[key] = value
    instruction = raw.pop("instruction", None)
    raw.pop("lang", None)  # the language of the explanation, not an option
    return resolve_options(raw, instruction, llm, default_model)
