"""rds.read_replica estate: a PostgreSQL primary in us-east-1 and its cross-region read replica in us-west-2, in the
app account."""

from __future__ import annotations

from typing import Any

from plans.model import Mode, Phase
from tests.estates import Estate

PRIMARY_REGION = "us-east-1"
RECOVERY_REGION = "us-west-2"


def build(prefix: str) -> Estate:
    from tests.conftest import APP_ACCOUNT, account_session

    app = account_session(APP_ACCOUNT)
    east, west = app.client("rds", region_name=PRIMARY_REGION), app.client("rds", region_name=RECOVERY_REGION)
    primary, replica = f"{prefix}-rds-orders", f"{prefix}-rds-orders-replica"
    arn = east.create_db_instance(DBInstanceIdentifier=primary, Engine="postgres", DBInstanceClass="db.t3.medium",
                                  AllocatedStorage=20, MasterUsername="app", MasterUserPassword="sandbox-password",
                                  BackupRetentionPeriod=1)["DBInstance"]["DBInstanceArn"]
    west.create_db_instance_read_replica(DBInstanceIdentifier=replica, SourceDBInstanceIdentifier=arn,
                                         SourceRegion=PRIMARY_REGION)

    def instance(client: Any, name: str) -> dict[str, Any] | None:
        found = client.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [name]}])["DBInstances"]
        return found[0] if found else None

    def check(phase: Phase, mode: Mode) -> None:
        old, standby = instance(east, primary), instance(west, replica)
        assert old is not None and old["DBInstanceStatus"] == "available"  # oldPrimaryAction none: never touched
        assert standby is not None
        copies = [d for d in west.describe_db_instances()["DBInstances"]
                  if d["DBInstanceIdentifier"].startswith(f"{replica}-drill-")]
        if mode is Mode.DRILL or phase is Phase.INSTANTIATE:
            # Production replication as it was: the replica still follows the primary.
            assert standby["ReadReplicaSourceDBInstanceIdentifier"] == arn
            assert standby["DBInstanceArn"] in old["ReadReplicaDBInstanceIdentifiers"]
            assert bool(copies) == (mode is Mode.DRILL and phase is Phase.ACTIVATE)
            assert instance(east, f"{primary}-replica") is None
            return
        assert not standby.get("ReadReplicaSourceDBInstanceIdentifier")  # promoted, writable
        assert standby["DBInstanceStatus"] == "available" and not copies
        if phase is Phase.REPLICATE:
            back = instance(east, f"{primary}-replica")
            assert back is not None and back["ReadReplicaSourceDBInstanceIdentifier"] == standby["DBInstanceArn"]

    resource = {"name": f"{prefix}-rds-orders", "action": "rds.read_replica",
                "parameters": {"replicaIdentifier": replica, "primaryIdentifier": primary}}
    return Estate(resources=[resource], check=check,
                  notes=[f"postgres {primary} (us-east-1) replicated to {replica} (us-west-2)"])
