"""The fault suite (`make chaos`, run by CI after `make test`): the product as processes, killed and starved on
purpose. Every test module here sets `pytestmark = pytest.mark.faults`; `make test` leaves them out (pyproject's
addopts deselects the mark)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack per test file: its processes are killed and restarted by the tests, so no sharing beyond that."""
    running = Stack.start(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        running.stop()
