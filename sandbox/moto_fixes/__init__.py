"""Corrections to moto, and the operations it lacks that the modules need, one file per service.

Applied once, in-process, on moto's own backends, so state stays in one place. A correction names the moto version
it was seen in; when moto fixes it upstream, it becomes a no-op and can go. A service file exposes `apply()`; list it
`apply()`; every file here is applied.
"""

from __future__ import annotations

import importlib
import pkgutil

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    for found in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{found.name}").apply()
    _applied = True
