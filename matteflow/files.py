"""Generic file helpers shared by the CLI, the web app and the workers (no layer owns them).

``write_atomic``: readers see the old file or the whole new one, never a part. ``sanitize_name``: a
client-supplied file name made safe to store, show and put in a ZIP.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import IO

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*;\\/]+')
_MAX_NAME = 120
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
COPY_BUFFER_BYTES = 1024 * 1024  # streams are copied to storage this much at a time
# An upload or a fetched image larger than this spills from memory to a temporary file on the storage volume.
SPOOL_IN_MEMORY_BYTES = 256 * 1024


def sanitize_name(name: str | None, fallback: str = "image") -> str:
    """A client-supplied file name made safe to store, show and put in a ZIP: never a path.

    The last path component (``/`` or ``\\``); Unicode letters kept (the seeds' users name files in Chinese);
    control, shell- and Windows-reserved characters replaced by ``_``; no leading dots (no hidden files, no
    ``..``); bidi, format and other invisible characters removed; at most 120 characters, keeping the
    extension. ``'../../x.jpg'`` -> ``'x.jpg'``; ``''`` or ``'..'`` -> ``fallback``.
    """
    text = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Invisible characters go: bidi overrides and isolates (U+202E shows "gpj.exe" as "exe.jpg"), zero-width
    # and other format characters, line separators, C1 controls, lone surrogates.
    text = "".join(ch for ch in text if ch < "\x80" or unicodedata.category(ch) not in _INVISIBLE)
    text = _UNSAFE.sub("_", text).strip().lstrip(".").rstrip(" .")
    if len(text) > _MAX_NAME:
        stem, dot, ext = text.rpartition(".")
        text = (stem[: _MAX_NAME - len(ext) - 1] + dot + ext) if dot and 0 < len(ext) <= 10 else text[:_MAX_NAME]
    return text or fallback


def _process_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``os.umask`` can only be read by
    setting it, which would race with threads creating files); elsewhere by setting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once: umasks are set before a program starts its work, not while it writes.
FILE_MODE = 0o666 & ~_process_umask()


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """``mkstemp`` in ``path``'s folder (for a write then ``os.replace``), with the permissions a plain
    ``open()`` would give (0644 under the usual umask): mkstemp makes files private (0600), and a cut-out or
    ZIP that only its writer can read is no use to the web server, the colleague or the pipeline reading the
    folder next."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def write_atomic(path: Path, data: bytes | IO[bytes], *, make_parents: bool = True) -> None:
    """Write ``data`` (bytes, or a binary stream copied from its current position through a bounded
    buffer) to ``path`` so readers see the old file or the whole new one, never a part.

    ``make_parents=False`` when a missing folder means the write must not happen (a worker finishing after its
    job was deleted must not recreate the job's folder): FileNotFoundError is raised instead.
    """
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                shutil.copyfileobj(data, handle, COPY_BUFFER_BYTES)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
