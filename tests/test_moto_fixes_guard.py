"""The sandbox refuses a moto that changed under its patches, with one line, instead of failing request by request.

A patch target is removed (or its parameters changed) on purpose, as a moto release would: the install function
raises UnsupportedMoto before the patch touched anything, and `drctl sandbox serve` exits 1 with that one line on
stderr and no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from moto.autoscaling.models import FakeAutoScalingGroup
from moto.memorydb.responses import MemoryDBResponse

from sandbox import moto_fixes
from sandbox.moto_fixes import UnsupportedMoto, moto_version, patching


def _install_again(monkeypatch: pytest.MonkeyPatch, patch: str) -> None:
    """Apply one patch file again, as a fresh process would; the others stay applied once (undone after the test)."""
    import sandbox.server  # noqa: F401  (every patch applied, as in the session's sandbox)

    monkeypatch.setattr(moto_fixes, "_applied", moto_fixes._applied - {patch})
    moto_fixes.apply()


@pytest.mark.parametrize(("patch", "owner", "name"), [
    ("memorydb", MemoryDBResponse, "describe_clusters"),
    ("autoscaling", FakeAutoScalingGroup, "update"),
])
def test_a_patch_target_moto_no_longer_has_refuses_the_install(monkeypatch: pytest.MonkeyPatch, patch: str,
                                                                owner: Any, name: str):
    monkeypatch.delattr(owner, name)
    with pytest.raises(UnsupportedMoto) as refused:
        _install_again(monkeypatch, patch)
    assert str(refused.value) == (f"sandbox: moto {moto_version()} is not supported: moto_fixes/{patch} patches "
                                  f"{owner.__name__}.{name}, which this moto does not have")
    assert not hasattr(owner, name), "the refused patch must not have patched anything"


def test_a_wrapped_function_whose_parameters_changed_refuses_the_install(monkeypatch: pytest.MonkeyPatch):
    def update(self: Any, desired: int | None = None, **settings: Any) -> None:  # a moto that renamed them
        pass

    monkeypatch.setattr(FakeAutoScalingGroup, "update", update)
    with pytest.raises(UnsupportedMoto, match=r"^sandbox: moto \S+ is not supported: moto_fixes/autoscaling patches "
                                              r"FakeAutoScalingGroup.update, which no longer takes desired_capacity, "
                                              r"max_size, min_size, mixed_instances_policy$"):
        _install_again(monkeypatch, "autoscaling")
    assert FakeAutoScalingGroup.update is update


def test_an_import_moto_moved_names_the_patch_and_what_is_missing():
    with pytest.raises(UnsupportedMoto, match=r"^sandbox: moto \S+ is not supported: moto_fixes/example needs "
                                              r"moto.server.NoSuchThing, which this moto does not have$"):
        with patching("moto_fixes/example"):
            from moto.server import NoSuchThing  # type: ignore[attr-defined]  # noqa: F401


def test_sandbox_serve_on_a_changed_moto_exits_with_one_line_and_no_traceback():
    # `drctl sandbox serve` in its own process, on a moto whose MemoryDB handler lost DescribeClusters.
    script = ("import moto.memorydb.responses as r; del r.MemoryDBResponse.describe_clusters; "
              "import sys; from drctl.cli import main; sys.argv[0] = 'drctl'; main()")
    done = subprocess.run([sys.executable, "-c", script, "sandbox", "serve", "--port", "0", "--scenario", "none"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.splitlines() == [
        f"sandbox: moto {moto_version()} is not supported: moto_fixes/memorydb patches "
        "MemoryDBResponse.describe_clusters, which this moto does not have"]
    assert "sandbox ready" not in done.stdout
