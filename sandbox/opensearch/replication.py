"""The cross-cluster replication plugin's REST API of an emulated follower domain.

Statuses, their spelling (BOOTSTRAPING) and the errors follow the opensearch-project/cross-cluster-replication
plugin. The leader is found through the follower domain's ACTIVE outbound connection named by `leader_alias`.
"""

from __future__ import annotations

import time
from typing import Any

from sandbox.opensearch.exceptions import OsError, index_not_found
from sandbox.opensearch.models import TIMING, DomainState, Follow, Index, find_domain_state, follower_checkpoint

Result = tuple[int, Any]
_ACK = {"acknowledged": True}


def start_replication(state: DomainState, name: str, body: dict[str, Any]) -> Result:
    from sandbox.moto_fixes.opensearch import find_active_connection

    alias, leader_index = body.get("leader_alias"), body.get("leader_index")
    if not alias or not leader_index:
        raise OsError(400, "illegal_argument_exception", "leader_alias and leader_index are required")
    if name in state.indices:
        raise OsError(400, "resource_already_exists_exception", f"index [{name}] already exists", index=name)
    conn = find_active_connection(state.account, state.region, state.name, alias)
    if conn is None:
        raise OsError(400, "illegal_argument_exception", f"no such remote cluster: [{alias}]")
    remote = conn["RemoteDomainInfo"]["AWSDomainInformation"]
    leader_key = (remote["OwnerId"], remote["Region"], remote["DomainName"])
    leader_state = find_domain_state(*leader_key)
    leader = leader_state.indices.get(leader_index) if leader_state else None
    if leader is None:
        raise index_not_found(leader_index)
    now = time.monotonic()
    state.indices[name] = Index(name=name, shards=leader.shards, replicas=leader.replicas,
                                ready_at=now + TIMING.bootstrap_seconds, recovery={"type": "snapshot",
                                "repository": "replication-remote-repo", "snapshot": "replication-remote-snapshot"},
                                follow=Follow(alias, leader_index, leader_key, now))
    return 200, _ACK


def replication_status(state: DomainState, name: str) -> Result:
    index = state.indices.get(name)
    # The plugin answers this for an index it does not replicate, whether or not the index exists.
    if index is None or index.follow is None:
        return 200, {"status": "REPLICATION NOT IN PROGRESS"}
    leader_cp, follower_cp, paused = follower_checkpoint(index)
    base = {"leader_alias": index.follow.leader_alias, "leader_index": index.follow.leader_index,
            "follower_index": name}
    if paused:
        return 200, {"status": "PAUSED", "reason": paused, **base}
    if not index.ready():
        # Sic: the plugin spells it with one P.
        return 200, {"status": "BOOTSTRAPING", "reason": "User initiated", **base}
    return 200, {"status": "SYNCING", "reason": "User initiated", **base,
                 "syncing_details": {"leader_checkpoint": leader_cp, "follower_checkpoint": follower_cp,
                                     "seq_no": follower_cp + 1}}


def stop_replication(state: DomainState, name: str) -> Result:
    index = state.indices.get(name)
    if index is None:
        raise index_not_found(name)
    if index.follow is None:
        raise OsError(400, "illegal_argument_exception", f"No replication in progress for index:{name}")
    follower_checkpoint(index)  # what arrived before the stop is kept
    index.follow = None
    index.ready_at = min(index.ready_at, time.monotonic())
    return 200, _ACK
