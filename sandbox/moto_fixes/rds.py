"""RDS: corrections to moto's RDS backend."""

from __future__ import annotations

from typing import Any

from moto.rds.models import DBInstance, RDSBackend

from sandbox.moto_fixes._guard import require


def apply() -> None:
    # Checked first, so a moto without them is refused before anything here is patched.
    promote = require(RDSBackend, "promote_read_replica", "db_kwargs")
    require(DBInstance, "remove_replica", "replica")
    _promote_read_replica_detaches(promote)
    _remove_cross_region_replica()


def _remove_cross_region_replica() -> None:
    """moto 5.2.5: a source lists a cross-region replica by ARN (same-region ones by identifier), but removing a
    deleted replica looks for the identifier only: DeleteDBInstance of a cross-region replica fails with a 500 after
    the replica is already gone, and its source keeps listing it."""

    def remove_replica(self: Any, replica: Any) -> None:
        for name in (replica.db_instance_arn, replica.db_instance_identifier):
            if name in self.replicas:
                self.replicas.remove(name)

    DBInstance.remove_replica = remove_replica  # type: ignore[method-assign]


def _promote_read_replica_detaches(original: Any) -> None:
    """moto 5.2.5: PromoteReadReplica only flips an internal flag; DescribeDBInstances keeps reporting
    ReadReplicaSourceDBInstanceIdentifier and the source keeps listing the replica. On AWS the promoted instance is
    standalone, and the RDS module waits for exactly that."""

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
