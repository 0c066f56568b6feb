"""What the emulated OpenSearch domains hold: indices, snapshot repositories, replication followers.

A domain's state is keyed by its moto domain (ARN and creation time), so a domain deleted and created again starts
empty. Snapshots live in the S3 "repository" (bucket + base path), not in a domain: two domains that register the
same bucket see the same snapshots, which is how a recovery domain restores what the primary snapshotted.

Time is real but short: a restored index is red until `TIMING.restore_seconds` have passed, a follower index is
`TIMING.replication_lag_seconds` behind its leader. Tests in the sandbox's process may change both.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.opensearch.exceptions import index_not_found


@dataclass
class Timing:
    restore_seconds: float = 0.3
    replication_lag_seconds: float = 0.2
    bootstrap_seconds: float = 0.1
    snapshot_seconds: float = 0.2  # a snapshot taken without wait_for_completion is IN_PROGRESS this long


TIMING = Timing()
LOCK = threading.RLock()


@dataclass
class Follow:
    leader_alias: str
    leader_index: str
    leader: tuple[str, str, str]  # (account, region, domain name) of the leader domain
    started: float


@dataclass
class Index:
    name: str
    shards: int = 1
    replicas: int = 1
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    write_times: list[float] = field(default_factory=list)  # one per document write; the seq_no is the position
    closed: bool = False
    write_block: bool = False  # the `index.blocks.write` setting
    ready_at: float = 0.0  # monotonic time from which the shards are started (a restore is red before)
    recovery: dict[str, Any] = field(default_factory=lambda: {"type": "empty_store"})
    follow: Follow | None = None

    @property
    def docs(self) -> int:
        return len(self.write_times)

    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at

    def health(self) -> str:
        if not self.ready():
            return "red"
        # Replica shards need a second node; the emulated domains have three, so all are assigned.
        return "green"


@dataclass
class SnapshotIndex:
    shards: int
    replicas: int
    docs: int


@dataclass
class Snapshot:
    name: str
    indices: dict[str, SnapshotIndex]
    start_ms: int
    end_ms: int
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    ready_at: float = 0.0  # monotonic time the snapshot completes

    @property
    def state(self) -> str:
        return "SUCCESS" if time.monotonic() >= self.ready_at else "IN_PROGRESS"


@dataclass
class DomainState:
    account: str
    region: str
    name: str
    indices: dict[str, Index] = field(default_factory=dict)
    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)


_DOMAINS: dict[tuple[str, float], DomainState] = {}
# (bucket, base_path) -> snapshot name -> snapshot: the contents of an S3 snapshot repository.
_REPOSITORY_DATA: dict[tuple[str, str], dict[str, Snapshot]] = {}


def domain_state(domain: Any, account: str, region: str) -> DomainState:
    """The state of a moto OpenSearchDomain object."""
    key = (domain.arn, domain.creation_date)
    with LOCK:
        state = _DOMAINS.get(key)
        if state is None:
            state = _DOMAINS[key] = DomainState(account=account, region=region, name=domain.domain_name)
        return state


def find_domain_state(account: str, region: str, name: str) -> DomainState | None:
    """A domain's state by its identity (the leader a follower refers to), or None when it no longer exists."""
    from moto.opensearch.models import opensearch_backends

    if account not in opensearch_backends or region not in opensearch_backends[account]:
        return None
    domain = opensearch_backends[account][region].domains.get(name)
    if domain is None or domain.deleted:
        return None
    return domain_state(domain, account, region)


def repository_data(settings: dict[str, Any]) -> dict[str, Snapshot]:
    key = (str(settings.get("bucket")), str(settings.get("base_path", "")).strip("/"))
    with LOCK:
        return _REPOSITORY_DATA.setdefault(key, {})


def resolve(state: DomainState, expression: str, *, allow_missing: bool = False) -> list[str]:
    """Index names for a comma-separated expression with `*` wildcards and `_all`, as the REST API resolves them."""
    names: list[str] = []
    for part in (p for p in expression.split(",") if p):
        if part.startswith("-") and names:
            # An exclusion removes what the parts before it matched ("*,-.*").
            excluded = set(resolve(state, part[1:], allow_missing=True))
            names = [n for n in names if n not in excluded]
        elif part in ("_all", "*"):
            names.extend(sorted(n for n in state.indices if not n.startswith(".")))
        elif "*" in part:
            pattern = re.compile("^" + re.escape(part).replace(r"\*", ".*") + "$")
            names.extend(sorted(n for n in state.indices if pattern.match(n)))
        elif part in state.indices:
            names.append(part)
        elif not allow_missing:
            raise index_not_found(part)
    return list(dict.fromkeys(names))


def java_replacement(replacement: str) -> str:
    """A Java `replaceAll` replacement (`$1`) as a Python one (`\\g<1>`); OpenSearch renames with Java regexes."""
    return re.sub(r"\$(\d+)", r"\\g<\1>", replacement.replace("\\", "\\\\"))


def follower_checkpoint(index: Index) -> tuple[int, int, str | None]:
    """(leader checkpoint, follower checkpoint, pause reason) of a follower index, seen now."""
    assert index.follow is not None
    leader_state = find_domain_state(*index.follow.leader)
    leader = leader_state.indices.get(index.follow.leader_index) if leader_state else None
    if leader is None:
        return index.docs - 1, index.docs - 1, "AutoPaused: leader index is not reachable"
    horizon = time.monotonic() - TIMING.replication_lag_seconds
    caught_up = sum(1 for t in leader.write_times if t <= horizon)
    # The follower holds what it has replicated; it never goes back, even if the leader lost writes.
    while index.docs < caught_up:
        index.write_times.append(time.monotonic())
    return leader.docs - 1, index.docs - 1, None
