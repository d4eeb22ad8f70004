"""Where a job's files live: ``<storage>/jobs/<job_id>/in/<index>_<name>``, ``out/<index>.<ext>``,
``out/<index>_mask.png`` and the batch ZIP beside them.

Every write is atomic (a temp file in the same folder, then ``os.replace``): a worker killed mid-write
leaves either nothing or the whole file, never a truncated result that a later run would trust.
"""

from __future__ import annotations

import re
import secrets
import shutil
import sys
from pathlib import Path

__all__ = ["JobFiles", "is_valid_job_id", "remove_tree"]

# Job ids come from secrets.token_urlsafe: anything else is refused before it reaches a path.
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# A deleted job's folder is renamed to this prefix first (atomic), then removed: a worker still writing into
# the old path then fails instead of racing the removal.
TRASH_PREFIX = ".deleted-"


def is_valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id or ""))


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

    @property
    def backdrop_path(self) -> Path:
        """The job's background image (option ``background_image``), as uploaded."""
        return self.root / "backdrop"

    def input_path(self, index: int, stored_name: str) -> Path:
        return self.in_dir / stored_name

    def result_path(self, index: int, extension: str) -> Path:
        return self.out_dir / f"{index}.{extension}"

    def mask_path(self, index: int) -> Path:
        return self.out_dir / f"{index}_mask.png"

    def zip_path(self, download_name: str) -> Path:
        return self.root / download_name

    def remove_inputs(self, indices: range) -> None:
        """Remove the stored uploads of items ``indices`` (a request that added files and then failed)."""
        wanted = {str(i) for i in indices}
        try:
            stored = list(self.in_dir.iterdir())
        except FileNotFoundError:
            return
        for path in stored:
            if path.name.split("_", 1)[0] in wanted:
                path.unlink(missing_ok=True)

    def remove(self) -> bool:
        """Delete the job's folder; True if it existed. Safe while a worker still writes into it: the folder is
        first renamed away (atomic), so the worker's next write fails (it never recreates folders) instead of
        adding files under a half-removed tree."""
        trash = self.root.with_name(f"{TRASH_PREFIX}{self.root.name}-{secrets.token_hex(4)}")
        try:
            self.root.rename(trash)
        except FileNotFoundError:
            return False
        remove_tree(trash)
        return True


def remove_tree(path: Path) -> None:
    """``rm -rf``, tolerating files that vanish meanwhile (a worker cleaning up its temp file)."""

    def ignore_vanished(exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda _f, _p, exc: ignore_vanished(exc))
    else:
        shutil.rmtree(path, onerror=lambda _f, _p, info: ignore_vanished(info[1]))
