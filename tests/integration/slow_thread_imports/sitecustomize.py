"""Fault injection for tests/integration/test_fork_safety.py, loaded by a worker started with this folder on
PYTHONPATH (Python imports ``sitecustomize`` at start-up).

Every module that a thread other than the main thread imports is executed ``MATTEFLOW_TEST_SLOW_THREAD_IMPORTS_S``
seconds late, while that thread holds the module's import lock. A Celery prefork pool process forked during
that time inherits the lock held by a thread it does not have, and hangs for good the first time it imports
the same module (a pool process's first Redis connection imports ``encodings.idna`` through
``socket.getaddrinfo``, as a main-process heartbeat thread's first connection does). Real runs hit the same
window by chance (a millisecond or so, on a loaded machine); this makes it seconds wide. Nothing else
changes: the worker, Redis and the tasks are real.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import threading
import time

_DELAY_S = float(os.environ.get("MATTEFLOW_TEST_SLOW_THREAD_IMPORTS_S") or 0)


class _LateLoader:
    """Wraps a module's loader: the same module, executed late."""

    def __init__(self, loader: object) -> None:
        self._loader = loader

    def create_module(self, spec: object) -> object:
        return self._loader.create_module(spec)  # type: ignore[attr-defined]

    def exec_module(self, module: object) -> None:
        time.sleep(_DELAY_S)  # inside the module lock, outside the global import lock (as a slow import is)
        self._loader.exec_module(module)  # type: ignore[attr-defined]


class _SlowThreadImports:
    """A meta path finder that finds nothing itself; for a non-main thread it delays what PathFinder finds."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if threading.current_thread() is threading.main_thread():
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)  # type: ignore[arg-type]
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LateLoader(spec.loader)
        return spec


if _DELAY_S > 0:
    sys.meta_path.insert(0, _SlowThreadImports())
