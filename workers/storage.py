"""Where a job's files live: ``<storage>/jobs/<job_id>/in/<index>_<name>``, ``out/<index>.<ext>``,
``out/<index>_mask.png`` and the batch ZIP beside them.

Every write is atomic (a temp file in the same folder, then ``os.replace``): a worker killed mid-write
leaves either nothing or the whole file, never a truncated result that a later run would trust.
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
# Job ids come from secrets.token_urlsafe: anything else is refused before it reaches a path.
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


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


def is_valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id or ""))


def write_atomic(path: Path, data: bytes | IO[bytes]) -> None:
    """Write ``data`` (bytes, or a binary stream copied from its current position through a bounded
    buffer) to ``path`` so readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


class JobFiles:
    """The file layout of one job under ``jobs_dir``. Builds paths only; creates folders when writing."""

    def __init__(self, jobs_dir: Path, job_id: str) -> None:
        if not is_valid_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        self.root = Path(jobs_dir) / job_id

    @property
    def in_dir(self) -> Path:
        return self.root / "in"

    @property
    def out_dir(self) -> Path:
        return self.root / "out"

    def input_path(self, index: int, stored_name: str) -> Path:
        return self.in_dir / stored_name

    def result_path(self, index: int, extension: str) -> Path:
        return self.out_dir / f"{index}.{extension}"

    def mask_path(self, index: int) -> Path:
        return self.out_dir / f"{index}_mask.png"

    def zip_path(self, download_name: str) -> Path:
        return self.root / download_name

    def remove(self) -> bool:
        """Delete the job's folder; True if it existed."""
        if not self.root.exists():
            return False
        shutil.rmtree(self.root)
        return True
