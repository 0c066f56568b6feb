"""DR Orchestrator Framework module names and parameter names, mapped onto our actions.

Sources: the Framework's manifests and modules (aws-samples/aws-cross-region-dr-databases: PlannedFailoverAurora,
UnPlannedFailoverAurora, PromoteRDSReadReplica, FailoverElastiCacheCluster; its module factory `src/modulefactory/
modules/*.py`: ECS, R53Record, EventBridge, LambdaFunction, AutoScaling, AuroraMySQL, DRS, ElastiCache, MemoryDB,
OpenSearchService, EventArchive). docs/manifest.md explains each mapping and where our semantics differ.

Any Framework parameter not listed whose name, with its first letter lowered, is one of the action's own parameters
(`PrimaryIdentifier` -> `primaryIdentifier`) passes through, so a manifest can set everything our module offers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FrameworkName:
    action: str
    # Framework parameter -> our parameter.
    params: Mapping[str, str] = field(default_factory=dict)
    # Parameters whose Framework value must be one of these (else the reason is the error); not passed on.
    only: Mapping[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    # Framework parameters accepted and not passed on, with the reason (our module does not need them).
    ignored: Mapping[str, str] = field(default_factory=dict)
    # Framework parameters we refuse, with the reason: silently dropping them would change what the run does.
    refused: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)  # our parameters every such resource gets
    # The Framework gives `parameters` as a list of objects, one per item (ECS services, records, rules): one of our
    # resources per item.
    list_parameters: bool = False
    # A Framework parameter holding a list that becomes one of our resources per item, with the item as `to`.
    expand: tuple[str, str] | None = None
    listed: frozenset[str] = frozenset()  # our parameters that are lists: a single Framework value becomes [value]
    region_param: tuple[str, ...] = ()  # Framework parameters naming the region the resource acts in
    drs: bool = False  # DRS: the servers become a protection group of the plan (see plans/manifest.py)


_ALIAS_ONLY = (("No", "no", "false", "False"), "route53.record switches simple records; an alias record (Alias: "
               "Yes) must be switched by its target's health instead, or written as a CNAME")
_AURORA_PARAMS = {"GlobalClusterIdentifier": "globalClusterIdentifier", "DBClusterIdentifier": "recoveryClusterIdentifier",
                  "PrimaryClusterIdentifier": "primaryClusterIdentifier"}
_AURORA_IGNORED = {"DBInstanceIdentifier": "aurora.global_database acts on clusters; the instances follow them"}
_AURORA = FrameworkName(action="aurora.global_database", params=_AURORA_PARAMS, ignored=_AURORA_IGNORED,
                        region_param=("ClusterRegion",))
# The Framework's unplanned Aurora failover detaches and promotes the secondary.
_AURORA_UNPLANNED = FrameworkName(action="aurora.global_database", params=_AURORA_PARAMS, ignored=_AURORA_IGNORED,
                                  region_param=("ClusterRegion",), fixed={"disasterMethod": "detach"})
_ELASTICACHE = FrameworkName(
    action="elasticache.global_datastore",
    params={"GlobalReplicationGroupId": "globalReplicationGroupId", "GlobalClusterIdentifier":
            "globalReplicationGroupId", "TargetReplicationGroupId": "replicationGroupId",
            "DBClusterIdentifier": "replicationGroupId", "PrimaryReplicationGroupId": "primaryReplicationGroupId"},
    refused={"ClusterEndpointSSMKey": "the cache endpoint is a module output; publishing it to SSM is not done"},
    region_param=("TargetRegion",),
)
_ECS = FrameworkName(
    action="ecs.service",
    params={"EcsClusterName": "cluster", "EcsServiceName": "service", "EcsDesiredSize": "desiredCount"},
    refused={"EcsAsgMinSize": "ecs.service does not change the service's Application Auto Scaling minimum; remove "
                              "it, or raise the scalable target's minimum in the recovery region beforehand"},
    list_parameters=True,
)

NAMES: dict[str, FrameworkName] = {
    # aws-cross-region-dr-databases (Step Functions state machines, `resourceType`)
    "PlannedFailoverAurora": _AURORA,  # planned vs unplanned is the run's mode here (planned / disaster)
    "UnPlannedFailoverAurora": _AURORA_UNPLANNED,
    "PromoteRDSReadReplica": FrameworkName(
        action="rds.read_replica",
        params={"RDSInstanceIdentifier": "replicaIdentifier", "SourceDBInstanceIdentifier": "primaryIdentifier"},
        ignored={"TargetClusterIdentifier": "the replica's ARN: rds.read_replica finds the replica by identifier in "
                                            "the recovery region"},
    ),
    "FailoverElastiCacheCluster": _ELASTICACHE,
    # The module factory (`action`)
    "AuroraMySQL": _AURORA,
    "AuroraPostgreSQL": _AURORA,
    "ECS": _ECS,
    "EcsService": _ECS,
    "R53Record": FrameworkName(
        action="route53.record",
        params={"HostedZoneId": "hostedZoneId", "R53RecordName": "recordName", "RecordType": "recordType",
                "RecordValue": "recoveryValue", "TTL": "ttl"},
        # The Framework's own module reads the misspelt "Aias"; both spellings are accepted.
        only={"Alias": _ALIAS_ONLY, "Aias": _ALIAS_ONLY},
        list_parameters=True,
    ),
    "EventBridge": FrameworkName(
        action="eventbridge.rule",
        params={"EventRuleName": "rules", "BusName": "eventBusName", "EventBusName": "eventBusName"},
        listed=frozenset({"rules"}),
        list_parameters=True,
    ),
    "EventArchive": FrameworkName(
        action="eventbridge.replay",
        params={"ArchiveName": "archiveName", "StartTime": "startTime", "EndTime": "endTime",
                "LastMinutes": "lastMinutes", "EventRuleName": "rules"},
        ignored={"EventBusName": "a replay goes to its archive's own bus", "BusName": "a replay goes to its "
                 "archive's own bus"},
        listed=frozenset({"rules"}),
    ),
    "AutoScaling": FrameworkName(
        action="autoscaling.group",
        params={"DesiredCount": "desiredCapacity", "MinSize": "minSize", "MaxSize": "maxSize",
                "PrimaryPercent": "primaryPercent"},
        expand=("Autoscalinggroupnames", "groupName"),
    ),
    "LambdaFunction": FrameworkName(
        # The Framework's module invokes the function as a step: our hook.lambda (docs/hooks.md). Switching an
        # alias and its event sources is lambda.function, which has no Framework counterpart.
        action="hook.lambda",
        params={"FunctionName": "functionName", "Payload": "payload", "Qualifier": "qualifier"},
    ),
    "ElastiCache": _ELASTICACHE,
    "MemoryDB": FrameworkName(
        action="memorydb.cluster",
        params={"ClusterName": "clusterName", "SnapshotName": "snapshotName"},
        # The Framework restores the cluster in the recovery region; ours does it from a snapshot there.
        fixed={"method": "snapshot-restore"},
        refused={"BackupBucket": "memorydb.cluster restores from a snapshot in the recovery region (SnapshotName), "
                                 "not from S3 backups",
                 "Prefix": "memorydb.cluster does not restore from S3 backups",
                 "ClusterConfigSSMKey": "the cluster's configuration is not stored in SSM",
                 "ClusterEndpointSSMKey": "the endpoint is a module output; publishing it to SSM is not done"},
    ),
    "OpenSearchService": FrameworkName(
        action="opensearch.domain",
        params={"DomainName": "domainName", "RepositoryName": "repository", "SnapshotName": "snapshot",
                "Indices": "indices"},
        fixed={"method": "snapshotRestore"},
        refused={key: "opensearch.domain restores into an existing recovery domain: size that domain beforehand "
                      "(a run that creates or resizes a domain takes far longer than a failover should)"
                 for key in ("DataNodeType", "DataNodeCount", "MasterNodeType", "MasterNodeCount")},
    ),
    "DRS": FrameworkName(
        action="drs.recovery",
        params={"HostNames": "hostnames", "Tags": "tags", "SourceServerIds": "sourceServerIds"},
        drs=True,
    ),
}

# Accepted anywhere a resource's fields or parameters are: the account the resource acts in.
ACCOUNT_KEYS = ("AccountId", "accountId")


def our_parameter(entry: FrameworkName, framework_param: str, known: list[str] | None) -> str | None:
    """Our parameter for `framework_param` of an `entry` resource, or None when it has none. `known`: the action's
    own parameters when its module is registered (for the pass-through of our own names)."""
    if framework_param in entry.params:
        return entry.params[framework_param]
    lowered = framework_param[:1].lower() + framework_param[1:]
    if known is not None and lowered in known:
        return lowered
    return None


def framework_parameter(entry: FrameworkName, ours: str) -> str:
    """How a manifest spells our parameter `ours` (for error messages)."""
    for name, mapped in entry.params.items():
        if mapped == ours:
            return name
    if entry.expand and entry.expand[1] == ours:
        return entry.expand[0]
    return ours[:1].upper() + ours[1:]
