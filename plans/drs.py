"""Elastic Disaster Recovery in a plan: protection groups (which servers, launched how) and the `drs.recovery`
resource, whose waves form a dependency graph.

plans.model imports this module and workflow code imports both, so it holds pydantic models and pure functions only:
no boto3, no I/O, nothing random. Checks that look across the plan (unknown groups, cycles, accounts) are in
plans.validation, which can name the exact field of each problem.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from plans.approvals import ApprovalPolicy
from plans.hooks import Hook, check_hook_names

DRS_ACTION = "drs.recovery"

# The same as plans.model.NAME and REGION, which cannot be imported from there: plans.model imports this module.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
SOURCE_SERVER_ID = re.compile(r"^s-[0-9a-zA-Z]{17}$")
INSTANCE_PROFILE = (
    r"^([A-Za-z0-9_+=,.@-]{1,128}|arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/[A-Za-z0-9_+=,.@/-]{1,512})$"
)


class DrsModel(BaseModel):
    """The configuration of plans.model.PlanModel and activities.core.registry.ModuleParameters, which this module cannot
    import (both import plans.model, which imports this module): camelCase in files, unknown keys rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _tag_value(value: Any) -> Any:
    # YAML reads `Tier: 2` or `Critical: yes` as a number or a boolean; a tag value on AWS is always a string, and
    # guessing the original spelling (02? True? yes?) would silently select other servers.
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    if isinstance(value, list) and not value:
        raise ValueError("an empty list of tag values matches no server: give at least one value")
    hint = " (quote numbers and booleans)" if isinstance(value, int | float) else ""
    raise ValueError(f"a tag value is a string or a list of strings, not {_kind(value)} {value!r}{hint}")


def _source_server_id(value: str) -> str:
    if not SOURCE_SERVER_ID.match(value):
        raise ValueError(f"{value!r} is not a DRS source server id ('s-' and 17 letters or digits)")
    return value


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address (like 10.0.1.25)") from None


TagValue = Annotated[str | list[Annotated[str, Field(max_length=256)]], BeforeValidator(_tag_value)]
SourceServerId = Annotated[str, AfterValidator(_source_server_id)]
Hostname = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$")]


class ServerSelection(DrsModel):
    """The servers of a group, resolved when a run starts (never frozen into ids when the plan is written): those
    matching all `tags`, plus those listed by id or hostname."""

    tags: dict[Annotated[str, Field(min_length=1, max_length=128)], TagValue] = Field(default_factory=dict)
    source_server_ids: list[SourceServerId] = Field(default_factory=list)
    hostnames: list[Hostname] = Field(default_factory=list)

    @model_validator(mode="after")
    def _selects_something(self) -> ServerSelection:
        if not (self.tags or self.source_server_ids or self.hostnames):
            raise ValueError("select servers by tags, sourceServerIds or hostnames (at least one of them)")
        return self

    @property
    def explicit_only(self) -> bool:
        """Whether every server of the group is named in the plan (no tag selection to resolve)."""
        return not self.tags


class ServerLaunchSettings(DrsModel):
    """How DRS launches a recovery instance; a field left out keeps the live setting."""

    instance_type: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
    right_sizing: Literal["NONE", "BASIC", "IN_AWS"] | None = None
    subnet_id: str | None = Field(default=None, pattern=r"^subnet-[0-9a-f]{8,17}$")
    security_group_ids: list[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]] | None = Field(
        default=None, min_length=1
    )
    instance_profile: str | None = Field(default=None, pattern=INSTANCE_PROFILE)  # a name or an ARN
    copy_private_ip: bool | None = None
    copy_tags: bool | None = None
    static_private_ip: Annotated[str, AfterValidator(_ipv4)] | None = None
    launch_disposition: Literal["STOPPED", "STARTED"] | None = None
    os_byol: bool | None = None


class LaunchSettings(ServerLaunchSettings):
    """A group's launch settings, and overrides for some of its servers (by source server id or hostname)."""

    per_server: dict[Annotated[str, Field(min_length=1, max_length=253)], ServerLaunchSettings] = Field(
        default_factory=dict
    )

    def for_server(self, *keys: str) -> ServerLaunchSettings:
        """The settings of one server: the first override found under `keys` (its id, its hostname) over the
        group's."""
        merged = self.model_dump(exclude={"per_server"}, exclude_none=True)
        for key in keys:
            if key in self.per_server:
                merged.update(self.per_server[key].model_dump(exclude_none=True))
                break
        return ServerLaunchSettings.model_validate(merged)


class ProtectionGroup(DrsModel):
    """Servers replicated by DRS into one account and region, recovered together."""

    account: str | None = None  # key into Plan.accounts; default: the plan's defaults.account
    region: str | None = None  # the DRS (recovery) region; default: the plan's recovery region
    selection: ServerSelection
    # A critical server that fails to launch fails its wave; optional ones fail it only past maxFailedPercent.
    impact: Literal["critical", "optional"] = "critical"
    allow_unhealthy_replication: bool = False
    launch_settings: LaunchSettings | None = None
    description: str = ""

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region name (like us-west-2)")
        return value


_POINT_IN_TIME = "pointInTime is 'latest' or a timestamp like 2026-11-26T10:00:00Z"


def _point_in_time(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("give the timezone of pointInTime (like 2026-11-26T10:00:00Z)")
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError("pointInTime needs a time and a timezone (like 2026-11-26T10:00:00Z), not only a date")
    if isinstance(value, str) and value != "latest":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{_POINT_IN_TIME}, not {value!r}") from None
        return _point_in_time(parsed)
    if not isinstance(value, str | datetime):
        raise ValueError(f"{_POINT_IN_TIME}, not {value!r}")
    return value


class Wave(DrsModel):
    name: Name
    protection_groups: list[Name] = Field(min_length=1)
    # Waves run as soon as all those they depend on have succeeded; waves with no path between them run together.
    depends_on: list[Name] = Field(default_factory=list)
    pause_before: bool = False  # an operator approves before this wave starts (one approval)
    approval: ApprovalPolicy | None = None  # who must approve before this wave starts (implies pauseBefore)
    timeout_seconds: int = Field(default=7200, ge=60, le=7 * 24 * 3600)
    # Any critical server failing fails the wave; optional servers may fail up to this share of them.
    max_failed_percent: float = Field(default=0, ge=0, le=100)
    description: str = ""
    # ACTIVATE only: run before the wave's first job starts and after its servers launched (plans.hooks).
    pre_hooks: list[Hook] = Field(default_factory=list)
    post_hooks: list[Hook] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_hooks(self) -> Wave:
        check_hook_names(self.pre_hooks, self.post_hooks)
        if self.approval is not None and self.approval.timeout_minutes is not None:
            raise ValueError("a wave's approval has no timeout (its DRS recovery waits for the run's decision); "
                             "put a timed approval on the layer instead")
        return self

    @property
    def gated(self) -> bool:
        return self.pause_before or self.approval is not None


class DrsRecoveryParameters(DrsModel):
    """The parameters of a `drs.recovery` resource."""

    waves: list[Wave] = Field(min_length=1)
    # "latest", or the latest snapshot of each server taken before this time.
    point_in_time: Annotated[Literal["latest"] | AwareDatetime, BeforeValidator(_point_in_time)] = "latest"
    max_concurrent_waves: int | None = Field(default=None, ge=1, le=100)


Graph = Mapping[str, Sequence[str]]


def _graph(waves: Sequence[Wave] | Graph) -> dict[str, list[str]]:
    if isinstance(waves, Mapping):
        return {name: list(deps) for name, deps in waves.items()}
    graph: dict[str, list[str]] = {}
    for wave in waves:
        if wave.name in graph:
            raise ValueError(f"wave name {wave.name!r} is used twice")
        graph[wave.name] = list(wave.depends_on)
    return graph


def find_cycle(waves: Sequence[Wave] | Graph) -> list[str] | None:
    """A dependency cycle as a path that ends where it starts (['a', 'b', 'a']), or None. Names that are not waves
    are ignored. The first cycle in declaration order, so the same plan always reports the same cycle."""
    graph = _graph(waves)
    done: set[str] = set()
    for root in graph:
        if root in done:
            continue
        # Iterative depth-first search: a plan may chain many waves, recursion would hit Python's limit.
        path, on_path = [root], {root}
        pending = [iter(graph[root])]
        while pending:
            following = next((dep for dep in pending[-1] if dep in graph and dep not in done), None)
            if following is None:
                pending.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if following in on_path:
                return [*path[path.index(following):], following]
            path.append(following)
            on_path.add(following)
            pending.append(iter(graph[following]))
    return None


def wave_levels(waves: Sequence[Wave] | Graph) -> list[list[str]]:
    """The waves in layers: each wave one layer after the last of those it depends on, in declaration order within
    a layer. Raises ValueError on an unknown dependency or a cycle (a validated plan has neither)."""
    graph = _graph(waves)
    for name, deps in graph.items():
        for dep in deps:
            if dep not in graph:
                raise ValueError(f"wave {name!r} depends on {dep!r}, which is not a wave")
    cycle = find_cycle(graph)
    if cycle:
        raise ValueError(f"waves depend on each other in a cycle: {' -> '.join(cycle)}")
    level: dict[str, int] = {}
    remaining = list(graph)
    while remaining:  # at most one pass per layer: every pass places all waves whose dependencies are placed
        waiting = []
        for name in remaining:
            if all(dep in level for dep in graph[name]):
                level[name] = 1 + max((level[dep] for dep in graph[name]), default=-1)
            else:
                waiting.append(name)
        remaining = waiting
    layers: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for name in graph:
        layers[level[name]].append(name)
    return layers


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", dict: "a mapping"}.get(type(value), "a value")
