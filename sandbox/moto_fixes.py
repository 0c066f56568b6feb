"""Corrections to moto where it differs from AWS in ways the orchestrator depends on.

Applied once, in-process, on moto's own backends, so state stays in one place. Each fix names the moto version it
was seen in; when moto fixes it upstream, the fix becomes a no-op and can go.
"""

from __future__ import annotations

from typing import Any

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    _promote_read_replica_detaches()
    _applied = True


def _promote_read_replica_detaches() -> None:
    """moto 5.2.5: PromoteReadReplica only flips an internal flag; DescribeDBInstances keeps reporting
    ReadReplicaSourceDBInstanceIdentifier and the source keeps listing the replica. On AWS the promoted instance is
    standalone, and the RDS module waits for exactly that."""
    from moto.rds.models import RDSBackend

    original = RDSBackend.promote_read_replica

    def promote_read_replica(self: Any, db_kwargs: dict[str, Any]) -> Any:
        database = self.databases.get(db_kwargs["db_instance_identifier"])
        source = database.source_db_instance_identifier if database is not None and database.is_replica else None
        promoted = original(self, db_kwargs)
        if source:
            primary = self.find_db_from_id(source)
            for name in (promoted.db_instance_arn, promoted.db_instance_identifier):
                if name in primary.replicas:
                    primary.replicas.remove(name)
            promoted.source_db_instance_identifier = None
        return promoted

    RDSBackend.promote_read_replica = promote_read_replica  # type: ignore[method-assign]
