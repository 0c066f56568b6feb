"""What the patches need of moto, checked before anything is patched.

The patches lean on moto's internals, which change between releases without notice. A patch that went on anyway
would fail request by request, as hundreds of test errors or a demo that dies halfway. So every patch names what it
wraps, replaces or uses (`require`) before it touches anything; when moto no longer has it, or it no longer takes the
parameters the wrapper passes on, the sandbox refuses to start with one line naming moto's version and the patch:

    sandbox: moto 5.2.6 is not supported: moto_fixes/memorydb patches MemoryDBCluster.to_dict, which this moto does
    not have

(one line when printed; wrapped here).
"""

from __future__ import annotations

import contextlib
import inspect
import re
import threading
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

_current = threading.local()  # the patch being applied, named by every error


def moto_version() -> str:
    try:
        return version("moto")
    except PackageNotFoundError:
        return "(not installed)"


class UnsupportedMoto(RuntimeError):
    """The installed moto is not what a patch was written for. The message is the whole story, in one line."""

    def __init__(self, patch: str, problem: str) -> None:
        self.patch = patch
        super().__init__(f"sandbox: moto {moto_version()} is not supported: {patch} {problem}")


@contextlib.contextmanager
def patching(patch: str) -> Iterator[None]:
    """Apply one patch (`moto_fixes/NAME`, or the server): what goes wrong with moto inside names it.

    An import of moto that fails (a module or name moto moved) and an attribute moto no longer has that the patch
    touched without `require` become UnsupportedMoto too, so no change in moto ends in a traceback at start."""
    outer = getattr(_current, "patch", None)
    _current.patch = patch
    try:
        yield
    except ImportError as exc:
        raise UnsupportedMoto(patch, f"needs {_missing_import(exc)}, which this moto does not have") from exc
    except AttributeError as exc:
        raise UnsupportedMoto(patch, f"needs what moto no longer has ({exc})") from exc
    finally:
        _current.patch = outer


def require(owner: Any, name: str, *params: str) -> Any:
    """`owner.name`, which the current patch wraps, replaces or relies on, as moto has it now.

    `params`: the parameters the patch passes on or reads by name; they must still be in moto's signature (a wrapper
    that hands `desired_capacity=` to a function that renamed it would silently change nothing)."""
    patch = getattr(_current, "patch", None) or "moto_fixes"
    label = f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
    try:
        inspect.getattr_static(owner, name)  # no moto code runs to find out
    except AttributeError:
        raise UnsupportedMoto(patch, f"patches {label}, which this moto does not have") from None
    found = getattr(owner, name)  # as moto binds it (a property on a class stays the property)
    if params:
        target = found.fget if isinstance(found, property) else found
        try:
            if target is None:  # a property without a getter: no signature to check the parameters against
                raise TypeError(label)
            accepted = inspect.signature(target).parameters
        except (TypeError, ValueError):
            raise UnsupportedMoto(patch, f"patches {label}, which is no longer a function in moto") from None
        missing = [p for p in params if p not in accepted]
        if missing:
            raise UnsupportedMoto(patch, f"patches {label}, which no longer takes {', '.join(missing)}")
    return found


def _missing_import(exc: ImportError) -> str:
    named = re.search(r"cannot import name '([^']+)' from '([^']+)'", str(exc))
    if named:
        return f"{named.group(2)}.{named.group(1)}"
    return exc.name or str(exc)
