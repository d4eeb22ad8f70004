"""`matteflow submit` streams its multipart body from disk: pieces of at most 1 MiB, exact length, and a body
that a real multipart parser (werkzeug's, as the server uses) reads back as the files and fields sent."""

from __future__ import annotations

import io
from pathlib import Path

from werkzeug.formparser import parse_form_data

from matteflow.submit import DOWNLOAD_CHUNK, MultipartStream


def test_the_body_is_read_from_disk_in_pieces_and_parses_back(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(bytes(range(256)) * (5 * 4096 + 7))  # ~5 MiB: several pieces
    small = tmp_path / "证件照.png"
    small.write_bytes(b"\x89PNG small")
    progress: list[int] = []

    body = MultipartStream(
        [("preset", "avatar")], [("files", big.name, big), ("files", small.name, small)], progress.append
    )
    pieces = []
    while piece := body.read(DOWNLOAD_CHUNK):
        pieces.append(piece)
    data = b"".join(pieces)

    assert len(data) == len(body) == sum(progress)
    assert max(len(p) for p in pieces) <= DOWNLOAD_CHUNK and len(pieces) > 5
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": body.content_type,
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    _, form, files = parse_form_data(environ)
    assert form["preset"] == "avatar"
    sent = [(f.filename, f.read()) for f in files.getlist("files")]
    assert sent == [(big.name, big.read_bytes()), (small.name, small.read_bytes())]
