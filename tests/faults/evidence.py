"""What a run left in the estate, read from the sandbox with real boto3 as an auditor would: DRS jobs per
execution, drill recovery instances and RDS drill copies still there."""

from __future__ import annotations

from typing import Any

from activities.core.context import TAG_EXECUTION
from plans.model import Plan
from sandbox.scenario import session_in


def _targets(plan: Plan) -> list[tuple[str, str]]:
    return sorted({(plan.accounts[plan.account_key_for(g)].id, plan.region_for(g))
                   for g in plan.protection_groups.values()})


def _drs(account_id: str, region: str) -> Any:
    return session_in(account_id).client("drs", region_name=region)


def launch_jobs(plan: Plan, execution_id: str) -> list[dict[str, Any]]:
    """The LAUNCH jobs DRS holds for the execution (by their execution tag), in every account+region of the plan."""
    jobs = []
    for account_id, region in _targets(plan):
        drs = _drs(account_id, region)
        jobs += [job for page in drs.get_paginator("describe_jobs").paginate(filters={}) for job in page["items"]
                 if job.get("type") == "LAUNCH" and (job.get("tags") or {}).get(TAG_EXECUTION) == execution_id]
    return jobs


def drill_instances(plan: Plan) -> list[str]:
    """Every drill recovery instance still in the plan's accounts and regions, whoever launched it."""
    left = []
    for account_id, region in _targets(plan):
        drs = _drs(account_id, region)
        left += [item["recoveryInstanceID"] for page in drs.get_paginator("describe_recovery_instances").paginate(
            filters={}) for item in page["items"] if item.get("isDrill")]
    return left


def rds_drill_copies(plan: Plan) -> list[str]:
    """RDS instances an execution created (tagged with it) still in the plan's accounts and regions."""
    left = []
    for account in plan.accounts.values():
        for region in (plan.regions.primary, plan.regions.recovery):
            rds = session_in(account.id).client("rds", region_name=region)
            for db in rds.describe_db_instances()["DBInstances"]:
                tags = {t["Key"]: t["Value"] for t in db.get("TagList", [])}
                if TAG_EXECUTION in tags:
                    left.append(db["DBInstanceIdentifier"])
    return left
