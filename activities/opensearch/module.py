"""OpenSearch Service domain: bring the recovery region's domain into service, by one of two methods.

`snapshotRestore`: the recovery domain restores indices from a manual snapshot in a registered S3 repository. A drill
restores them under names prefixed per execution (`dr-drill-<suffix>-<index>`, without their aliases), so nothing
production reads changes, and CLEANUP deletes exactly those indices. A real failover restores under the real names;
planned (and failback), given the primary domain, first snapshots the primary so the restore loses nothing, while
disaster restores the existing snapshot (the primary may be gone).

`replication`: the recovery domain follows the primary's indices by cross-cluster replication; a real failover stops
replication on the listed follower indices, which makes them ordinary writable indices. Planned (and failback) waits
until the followers have caught up before stopping, so no acknowledged write is lost; disaster stops at once (the
leader may be gone). A drill never stops replication: it checks the followers are syncing and how far behind they are.

Every step looks at what the domain reports (indices, their recovery source, replication status, blocks) and does
only what is missing, so a retried start or a poll after a worker crash is safe.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

from pydantic import Field, model_validator

from activities.core.context import ResourceContext
from activities.opensearch import replication
from activities.opensearch import snapshot
from contracts.activities import Operation
from activities.opensearch.rest import DomainRest, busy, describe, rest_for, wait
from activities.core.registry import ModuleParameters, StateMachineModule, register


class OpenSearchDomainParameters(ModuleParameters):
    domain_name: str = Field(pattern=r"^[a-z][a-z0-9-]{2,27}$")  # the recovery domain, in the recovery region
    method: Literal["snapshotRestore", "replication"]
    # snapshotRestore: a manual S3 snapshot repository registered on the recovery domain.
    repository: str | None = Field(default=None, min_length=1)
    snapshot: str | None = Field(default=None, min_length=1)  # default: the newest successful snapshot
    # snapshotRestore: the indices to restore (default: every index of the snapshot but system `.` indices).
    # replication: the follower indices to promote (required).
    indices: list[str] = Field(default_factory=list, max_length=1000)
    # snapshotRestore, real failover: an open index of the same name that this restore did not create is refused,
    # unless this allows closing it and restoring over it.
    replace_existing: bool = False
    # snapshotRestore, planned failover and failback: the primary-region domain. ACTIVATE first snapshots it into
    # the repository of the same name registered there, then restores that snapshot, so nothing written before the
    # switch is lost. Disaster (the primary may be gone) and drills use the existing snapshot.
    primary_domain_name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{2,27}$")
    # replication drill: fail when a follower is more than this many operations behind its leader.
    max_lag_operations: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _method_needs(self) -> OpenSearchDomainParameters:
        if self.method == "snapshotRestore" and not self.repository:
            raise ValueError("method snapshotRestore needs repository")
        if self.method == "replication" and not self.indices:
            raise ValueError("method replication needs indices (the follower indices)")
        if any(not i or i.startswith(("_", "-", "+")) or "," in i for i in self.indices):
            raise ValueError("indices must be index names (or patterns for snapshotRestore), without commas")
        if self.method == "replication" and any("*" in i for i in self.indices):
            raise ValueError("replication indices must be exact follower index names")
        return self


@register
class OpenSearchDomain(StateMachineModule):
    action = "opensearch.domain"
    summary = "Restore an OpenSearch domain's indices from a snapshot, or promote cross-cluster replication followers"
    Parameters = OpenSearchDomainParameters

    def status(self, ctx: ResourceContext, params: OpenSearchDomainParameters) -> dict[str, Any]:
        status = describe(ctx, params.domain_name, ctx.recovery_region)
        report: dict[str, Any] = {"domain": params.domain_name, "processing": busy(status),
                                  "engineVersion": status.get("EngineVersion")}
        rest = rest_for(ctx, params.domain_name, status, ctx.recovery_region)
        if params.method == "replication":
            report["followers"] = replication.followers(rest, params.indices)
        else:
            report["snapshot"] = snapshot.newest(rest, params)
        return report

    def instantiate(self, ctx: ResourceContext, params: OpenSearchDomainParameters, handle: dict[str, Any]) -> Operation:
        status = describe(ctx, params.domain_name, ctx.recovery_region)
        if busy(status):
            # A configuration change or upgrade in progress (blue/green): restores and stops wait until it is over.
            return wait(f"domain {params.domain_name} is processing a change; waiting", handle)
        return _method(params).preflight(ctx, params, _rest(ctx, params, status))

    def activate(self, ctx: ResourceContext, params: OpenSearchDomainParameters, handle: dict[str, Any]) -> Operation:
        rest = _rest(ctx, params, describe(ctx, params.domain_name, ctx.recovery_region))
        return _method(params).activate(ctx, params, rest, handle)

    def cleanup(self, ctx: ResourceContext, params: OpenSearchDomainParameters, handle: dict[str, Any]) -> Operation:
        rest = _rest(ctx, params, describe(ctx, params.domain_name, ctx.recovery_region))
        return _method(params).cleanup(ctx, params, rest, handle)

    def replicate(self, ctx: ResourceContext, params: OpenSearchDomainParameters, handle: dict[str, Any]) -> Operation:
        # Nothing to do but a look at the domain: REPLICATE fails on a domain that is gone, as every phase does.
        describe(ctx, params.domain_name, ctx.recovery_region)
        return Operation(done=True, message=_REPLICATE_NOTE[params.method])


def _method(params: OpenSearchDomainParameters) -> ModuleType:
    return snapshot if params.method == "snapshotRestore" else replication


def _rest(ctx: ResourceContext, params: OpenSearchDomainParameters, status: dict[str, Any]) -> DomainRest:
    return rest_for(ctx, params.domain_name, status, ctx.recovery_region)


_REPLICATE_NOTE = {
    "snapshotRestore": "nothing to replicate back: take snapshots of the recovery domain into a repository the old "
                       "primary region can read",
    "replication": "replication back is not started by this module: it needs a connection from the old primary "
                   "domain and follower indices that do not exist there yet",
}
