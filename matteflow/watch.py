"""``matteflow matte --watch``: a hot folder. Images that appear in (or are rewritten in) the watched folders
are reported once they have stopped changing, so a photo still being copied in is not read half-written.

File-system events come from watchdog (inotify on Linux, FSEvents on macOS, ReadDirectoryChangesW on
Windows); an image counts as settled when no event has touched it for ``settle_s`` seconds and its size and
modification time have not moved since. Hidden files (editors' and copy tools' temporaries) and files
without an image suffix are ignored; a temporary renamed to its final name is reported under that name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .core.imageio import is_image_name

# How long an image must stay untouched before it is read: long enough for a copy that pauses between
# writes, short enough that a dropped photo comes out promptly.
SETTLE_S = 1.0


class FolderWatch:
    """Watch ``folders`` (recursively) for images created, rewritten or moved in; :meth:`settled` returns
    each once it has stopped changing. Use as a context manager (starts and stops the observer thread)."""

    def __init__(self, folders: Sequence[Path], settle_s: float = SETTLE_S, ignore: Sequence[Path] = ()) -> None:
        self.folders = [Path(f) for f in folders]
        self.settle_s = settle_s
        self.ignore = [Path(f).resolve() for f in ignore]  # e.g. an output folder inside a watched one
        self._touched: dict[Path, float] = {}  # path -> monotonic time of its last event
        self._signature: dict[Path, tuple[int, int]] = {}  # (size, mtime) when it was last looked at
        self._lock = threading.Lock()
        self._observer = Observer()
        handler = _Handler(self)
        for folder in self.folders:
            self._observer.schedule(handler, str(folder), recursive=True)

    def start(self) -> FolderWatch:
        """Start watching (before the folders are listed, so nothing dropped in between is missed)."""
        if not self._observer.is_alive():
            self._observer.start()
        return self

    def __enter__(self) -> FolderWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def touch(self, path: Path) -> None:
        """An event touched ``path``: it is looked at again once it has been quiet for ``settle_s``."""
        if not is_image_name(path) or any(path.resolve().is_relative_to(f) for f in self.ignore):
            return
        signature = _signature(path)
        with self._lock:
            self._touched[path] = time.monotonic()
            if signature is not None:
                self._signature[path] = signature

    def is_changing(self, path: Path) -> bool:
        """Modified within the last ``settle_s`` (perhaps still being written): if so it is handed to the
        watch, which returns it from :meth:`settled` once it is quiet."""
        signature = _signature(path)
        if signature is None or time.time_ns() - signature[1] >= self.settle_s * 1e9:
            return False
        self.touch(path)
        return True

    def settled(self) -> list[Path]:
        """Images untouched for ``settle_s`` whose size and modification time held still since the last look;
        each is returned once per change. Vanished ones are dropped."""
        now = time.monotonic()
        with self._lock:
            quiet = [path for path, when in self._touched.items() if now - when >= self.settle_s]
        ready = []
        for path in quiet:
            signature = _signature(path)
            if signature is None:  # deleted or renamed away before it settled
                self._forget(path)
                continue
            with self._lock:
                if self._signature.get(path) == signature and signature[0] > 0:
                    del self._touched[path]
                    del self._signature[path]
                    ready.append(path)
                else:  # changed without an event we saw (or empty so far): look again after another quiet spell
                    self._signature[path] = signature
                    self._touched[path] = now
        return sorted(ready)

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._touched.pop(path, None)
            self._signature.pop(path, None)


def _signature(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file, None when it is not there."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns)


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: FolderWatch) -> None:
        self.watch = watch

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        # A move (a temporary renamed into place, a file moved in) counts under its new name.
        path = event.dest_path if event.event_type == "moved" else event.src_path
        self.watch.touch(Path(path if isinstance(path, str) else path.decode()))
