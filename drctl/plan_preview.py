"""What `drctl plan preview` and `drctl plan drift` read from AWS: the plan's protection groups resolved now, with
the same building blocks the DRS activities use, but called directly (no Temporal, nothing changed)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.core.aws import AwsClients
from contracts.drs import LaunchServer
from activities.drs.launch import desired_for, drift
from activities.drs import (
    ServerInfo,
    active_usage,
    drs_quotas,
    format_lag,
    list_source_servers,
    recoverability,
    resolve_selection,
)
from plans.drs import DRS_ACTION, DrsRecoveryParameters, ProtectionGroup, wave_levels
from plans.model import PHASE_ORDER, Phase, Plan


class _Estate:
    """One client per service, account and region, and one DescribeSourceServers scan per account and region,
    shared by every group there."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.aws = AwsClients()
        self._listings: dict[str, list[ServerInfo]] = {}

    def target(self, group: ProtectionGroup) -> str:
        return f"{self.plan.accounts[self.plan.account_key_for(group)].id}/{self.plan.region_for(group)}"

    def client(self, service: str, group: ProtectionGroup) -> Any:
        account = self.plan.accounts[self.plan.account_key_for(group)]
        return self.aws.client(service, account, self.plan.region_for(group))

    def servers(self, group: ProtectionGroup) -> list[ServerInfo]:
        drs, key = self.client("drs", group), self.target(group)
        if key not in self._listings:
            self._listings[key] = list_source_servers(drs)
        sel = group.selection
        return resolve_selection(drs, tags=dict(sel.tags), source_server_ids=sel.source_server_ids,
                                 hostnames=sel.hostnames, listing=self._listings[key])


def drs_resources(plan: Plan) -> dict[str, DrsRecoveryParameters]:
    """The plan's DRS recovery resources by name; the same resource usually appears in several phases."""
    found: dict[str, DrsRecoveryParameters] = {}
    for phase in [Phase.ACTIVATE, *PHASE_ORDER]:
        for layer in plan.phases[phase].layers if phase in plan.phases else []:
            for resource in layer.resources:
                if resource.action == DRS_ACTION and resource.name not in found:
                    found[resource.name] = DrsRecoveryParameters.model_validate(resource.parameters)
    return found


def preview_lines(plan: Plan, show: int) -> tuple[list[str], int]:
    """(what to print, how many problems would stop servers from being recovered)."""
    estate, lines, problems = _Estate(plan), [], 0
    resources = drs_resources(plan)
    if not resources:
        return ["the plan has no drs.recovery resource: nothing to preview"], 0
    owner: dict[str, str] = {}
    sizes: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)  # (resource, wave) -> target -> servers
    groups_of: dict[str, ProtectionGroup] = {}
    for name, params in resources.items():
        lines.append(f"resource {name} ({DRS_ACTION}): {len(params.waves)} wave(s)")
        for wave in params.waves:
            lines.append(f"  wave {wave.name}" + (f" (after {', '.join(wave.depends_on)})" if wave.depends_on else ""))
            for group_name in wave.protection_groups:
                group = plan.protection_groups[group_name]
                key = estate.target(group)
                groups_of.setdefault(key, group)
                try:
                    servers = estate.servers(group)
                except ApplicationError as exc:
                    if exc.type != "SourceServersNotFound":
                        raise
                    lines.append(f"    group {group_name} [{key}]: {exc.message}")
                    problems += 1
                    continue
                sizes[(name, wave.name)][key] += len(servers)
                group_lines, group_problems = _group_lines(group_name, group, key, servers, show, owner)
                lines += group_lines
                problems += group_problems
    lines.append("quotas per account and region:")
    for key, group in sorted(groups_of.items()):
        lines += _quota_lines(estate, key, group, resources, sizes)
    return lines, problems


def _group_lines(name: str, group: ProtectionGroup, key: str, servers: list[ServerInfo], show: int,
                 owner: dict[str, str]) -> tuple[list[str], int]:
    names = [_label(s) for s in servers]
    listed = ", ".join(names[:show]) + (f", ... (+{len(names) - show} more)" if len(names) > show else "")
    lines = [f"    group {name} [{key}]: {len(servers)} server(s)" + (f": {listed}" if names else "")]
    if not servers:
        return [*lines, "      no server matches: its wave would fail"], 1
    states = Counter(s.replication_state or "UNKNOWN" for s in servers)
    lags = [s.lag_seconds for s in servers if s.lag_seconds is not None]
    lines.append("      replication: " + ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
                 + (f"; max lag {format_lag(max(lags))}" if lags else ""))
    problems = 0
    for server in servers:
        problem = None if group.allow_unhealthy_replication else recoverability(server)
        if problem:
            lines.append(f"      UNHEALTHY {_label(server)}: {problem}")
            problems += 1
        first = owner.setdefault(server.source_server_id, name)
        if first != name:
            lines.append(f"      IN TWO GROUPS {_label(server)}: also in group {first}")
            problems += 1
    return lines, problems


def _quota_lines(estate: _Estate, key: str, group: ProtectionGroup, resources: dict[str, DrsRecoveryParameters],
                 sizes: dict[tuple[str, str], Counter[str]]) -> list[str]:
    quotas = drs_quotas(estate.client("service-quotas", group))
    jobs_now, servers_now = active_usage(estate.client("drs", group))
    per_job = quotas.servers_per_job
    lines = [(f"  {key}: {quotas.concurrent_jobs} concurrent jobs, {per_job} servers per job, "
              f"{quotas.servers_in_active_jobs} servers in active jobs; in use now: {jobs_now} job(s), "
              f"{servers_now} server(s)")]
    waves = {(r, w): c[key] for (r, w), c in sizes.items() if c[key]}
    if not waves:
        return [*lines, "    no server to recover here"]
    (resource, wave), largest = max(waves.items(), key=lambda item: item[1])
    lines.append(f"    largest wave: {resource}/{wave}, {largest} server(s) -> {math.ceil(largest / per_job)} job(s)")
    # Waves of one dependency layer may run at the same time: their sum is what the quotas must hold at once.
    busiest: tuple[int, int, list[str]] = (0, 0, [])
    for name, params in resources.items():
        for layer in wave_levels(params.waves):
            counts = [waves.get((name, w), 0) for w in layer]
            jobs = sum(math.ceil(n / per_job) for n in counts)
            if sum(counts) > busiest[0]:
                busiest = (sum(counts), jobs, [w for w, n in zip(layer, counts, strict=True) if n])
    servers, jobs, names = busiest
    fits = jobs <= quotas.concurrent_jobs - jobs_now and servers <= quotas.servers_in_active_jobs - servers_now
    verdict = "within the free quota" if fits else "more than the free quota: jobs queue and start as capacity frees"
    lines.append(f"    most at once: wave(s) {', '.join(names)}: {servers} server(s) in {jobs} job(s), {verdict}")
    return lines


def drift_lines(plan: Plan) -> tuple[list[str], bool]:
    """(what to print, whether any server's live launch settings differ from the plan's)."""
    groups = {name: g for name, g in plan.protection_groups.items() if g.launch_settings is not None}
    if not groups:
        return ["no protection group has launch settings: nothing to compare"], False
    estate, lines, drifted, checked = _Estate(plan), [], 0, 0
    for name, group in groups.items():
        assert group.launch_settings is not None
        try:
            servers = estate.servers(group)
        except ApplicationError as exc:
            if exc.type != "SourceServersNotFound":
                raise
            lines.append(f"group {name}: {exc.message}")
            drifted += 1
            continue
        drs, ec2 = estate.client("drs", group), estate.client("ec2", group)
        for server in servers:
            ref = LaunchServer(id=server.source_server_id, hostname=server.hostname)
            fields = drift(drs, ec2, ref, desired_for(ref, group.launch_settings))
            checked += 1
            drifted += bool(fields)
            lines += [(f"group {name}  {_label(server)} ({server.source_server_id})  {f.field}: live "
                       f"{_show(f.live)}, plan {_show(f.desired)}") for f in fields]
    if drifted:
        lines.append(f"drift: {drifted} of {checked} server(s) differ from the plan")
    else:
        lines.append(f"no drift: {checked} server(s) in {len(groups)} group(s) match the plan")
    return lines, bool(drifted)


def _label(server: ServerInfo) -> str:
    return server.hostname or server.source_server_id


def _show(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)
