"""Corrections to moto, and the operations it lacks that the modules need, one file per service.

Applied once, in-process, on moto's own backends, so state stays in one place. A correction names the moto version
it was seen in; when moto fixes it upstream, it becomes a no-op and can go. A service file exposes `apply()`; every
file here is applied.

Each file first takes what it patches from moto through `_guard.require`, then patches: when moto changed under a
file, `apply()` raises `UnsupportedMoto` (one line: moto's version, the file, what is missing) before that file
touched anything, and the sandbox does not start.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading

from sandbox.moto_fixes._guard import UnsupportedMoto, moto_version, patching, require

__all__ = ["UnsupportedMoto", "apply", "moto_version", "patching", "require"]

_applied: set[str] = set()  # per file, so a file that refused can be tried again without patching the others twice
_lock = threading.Lock()


def apply() -> None:
    with _lock:
        for found in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if found.name.startswith("_") or found.name in _applied:
                continue
            with patching(f"moto_fixes/{found.name}"):
                importlib.import_module(f"{__name__}.{found.name}").apply()
            _applied.add(found.name)
