"""The DRS emulator's state: every account and region, the knobs scenarios turn (time scale, quotas, faults,
durations), and the public API the sandbox's admin path and scenario seeding call.

One process-wide world (`drs_world()`), guarded by one lock: requests arrive on the threaded WSGI server and a read
may apply due job steps that launch or terminate moto EC2 instances.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sandbox.drs import ec2
from sandbox.drs.backend import DrsBackend
from sandbox.drs.jobs import Timing
from sandbox.drs.servers import (
    SourceServer,
    default_launch_config,
    default_replication_config,
    make_hardware,
    replication_states,
)
from sandbox.drs.util import hex_id, utcnow

# How long ago scenario servers finished their initial sync, so they have a PIT history to choose from.
_HISTORY = timedelta(days=14)


@dataclass
class Quotas:
    concurrent_jobs: int = 20
    servers_per_job: int = 100
    servers_in_active_jobs: int = 500


@dataclass
class Faults:
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    launch_failures: set[str] = field(default_factory=set)  # source server ids or hostnames
    stuck_servers: set[str] = field(default_factory=set)
    # How long a stuck server's conversion hangs before DRS fails its launch (seconds at time scale 1); None: for
    # ever, its job never ending.
    stuck_seconds: float | None = None
    # "Operation" or "Operation:sourceServerID" -> how many more such requests are throttled (a storm on one call).
    throttled_calls: dict[str, int] = field(default_factory=dict)

    def take_throttle(self, operation: str, server_id: str | None) -> bool:
        """Whether this request is one of the throttled calls (and counts it)."""
        for key in (f"{operation}:{server_id}", operation):
            if self.throttled_calls.get(key, 0) > 0:
                self.throttled_calls[key] -= 1
                return True
        return False
    # Operations answered AccessDeniedException, as IAM does for a role without the permission.
    denied_operations: set[str] = field(default_factory=set)
    # Server (id or hostname) -> the tags of a drill job someone else starts for it just before the next
    # StartRecovery that includes it: that request loses the race (ConflictException). One shot per server.
    raced_servers: dict[str, dict[str, str]] = field(default_factory=dict)

    @staticmethod
    def matches(names: set[str], server: SourceServer) -> bool:
        return server.id in names or server.hostname in names


@dataclass
class Durations:
    """Seconds at time scale 1; the world divides them by its time scale."""

    pending: float = 1.0
    snapshot: float = 2.0
    conversion: float = 3.0
    launch: float = 3.0
    terminate: float = 2.0
    resync: float = 5.0


def _update(target: Any, changes: dict[str, Any]) -> None:
    names = {f.name: f for f in fields(target)}
    unknown = set(changes) - set(names)
    if unknown:
        raise ValueError(f"unknown {type(target).__name__.lower()} field(s) {sorted(unknown)}; known: {sorted(names)}")
    for name, value in changes.items():
        current = getattr(target, name)
        if isinstance(current, set):
            value = {value} if isinstance(value, str) else set(value)
        elif current is not None and value is not None:  # an optional field (None by default) takes the value as is
            value = type(current)(value)
        setattr(target, name, value)


class DrsWorld:
    def __init__(self, time_scale: float = 1.0, seed: int | None = None) -> None:
        self.lock = threading.RLock()
        self.time_scale, self.seed = time_scale, seed
        self.reset()

    # ---- configuration -------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every account and restore default quotas, faults and durations; reseed. moto's EC2 is untouched."""
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        with self.lock:
            seed = self.seed if self.seed is not None else random.SystemRandom().randrange(2**32)
            self.effective_seed = seed  # reported, so an unseeded run that misbehaved can be replayed
            # Separate streams, so turning on a fault (which draws per request) cannot shift the ids a seed gives.
            self.ids = random.Random(f"{seed}-ids")
            self.jitter = random.Random(f"{seed}-jitter")
            self.fault_rng = random.Random(f"{seed}-faults")
            self.hardware_rng = random.Random(f"{seed}-hardware")
            self.quotas, self.faults, self.durations = Quotas(), Faults(), Durations()
            # Errors answered, by code: what a test of the orchestrator counts (retried calls leave no history).
            self.errors_returned: Counter[str] = Counter()
            # Requests answered without error, by (operation, sourceServerID or ""): what a test counts of writes.
            self.answered: Counter[tuple[str, str]] = Counter()
            self.backends: dict[tuple[str, str], DrsBackend] = {}

    def configure(self, time_scale: float | None = None, seed: int | None = None) -> None:
        with self.lock:
            if time_scale is not None:
                self.time_scale = float(time_scale)
            self.seed = seed
            self.reset()

    def set_faults(self, **changes: Any) -> None:
        with self.lock:
            _update(self.faults, changes)

    def set_durations(self, **changes: Any) -> None:
        with self.lock:
            _update(self.durations, changes)

    def set_quotas(self, **changes: Any) -> None:
        with self.lock:
            _update(self.quotas, changes)

    # ---- helpers for the models ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        return utcnow()

    def new_id(self, prefix: str) -> str:
        return hex_id(self.ids, prefix)

    def timing(self) -> Timing:
        return Timing(asdict(self.durations), self.time_scale, self.jitter)

    def scaled(self, phase: str) -> timedelta:
        return timedelta(seconds=getattr(self.durations, phase) / self.time_scale)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.fault_rng.random() < rate

    def advance(self) -> None:
        """Apply every job step now due, in every account: reads see progress, and EC2 sees the launches."""
        with self.lock:
            now = self.now()
            for backend in list(self.backends.values()):
                backend.advance(now)

    # ---- public API ----------------------------------------------------------------------------------------------

    def backend(self, account_id: str, region: str) -> DrsBackend:
        with self.lock:
            key = (account_id, region)
            if key not in self.backends:
                self.backends[key] = DrsBackend(self, account_id, region)
            return self.backends[key]

    def add_source_server(self, account_id: str, region: str, hostname: str, tags: dict[str, str] | None = None,
                          replication_state: str = "CONTINUOUS", lag_seconds: int = 0, source_region: str | None = None,
                          source_account: str | None = None, instance_type: str = "t3.medium",
                          ec2_origin: bool = True) -> str:
        """A replicating server as scenario seeding describes it; its account+region counts as initialized."""
        server = self.create_source_server(account_id, region, hostname, tags, replication_state, lag_seconds,
                                           source_region, source_account, instance_type, ec2_origin)
        return server.id

    def create_source_server(self, account_id: str, region: str, hostname: str, tags: dict[str, str] | None,
                             replication_state: str, lag_seconds: int, source_region: str | None,
                             source_account: str | None, instance_type: str, ec2_origin: bool,
                             direction: str = "FAILOVER", reversed_arn: str | None = None) -> SourceServer:
        _check_state(replication_state)
        with self.lock:
            backend = self.backend(account_id, region)
            backend.initialized = True
            now = self.now()
            server_id = self.new_id("s-")
            hardware = make_hardware(self.hardware_rng, hostname)
            template_id = ec2.create_launch_template(account_id, region, server_id, instance_type)
            if source_region is None and ec2_origin:
                source_region = "us-east-1" if region != "us-east-1" else "us-west-2"
            syncing = replication_state in ("INITIATING", "INITIAL_SYNC")
            server = SourceServer(
                id=server_id, account=account_id, region=region, hostname=hostname, tags=dict(tags or {}),
                state=replication_state, lag_seconds=lag_seconds, state_since=now,
                added_at=now if syncing or direction == "FAILBACK" else now - _HISTORY - timedelta(hours=1),
                ready_since=None if syncing or direction == "FAILBACK" else now - _HISTORY,
                source_region=source_region, source_account=source_account or (account_id if ec2_origin else None),
                instance_type=instance_type, ec2_origin=ec2_origin, hardware=hardware,
                launch_config=default_launch_config(hostname, template_id),
                replication_config=default_replication_config(self.hardware_rng, hostname, hardware["disks"]),
                direction=direction, reversed_arn=reversed_arn,
            )
            if syncing:
                server.pending = ("CONTINUOUS", now + self.scaled("resync"))
            backend.servers[server_id] = server
            return server

    def set_replication(self, account_id: str, region: str, server: str, state: str,
                        lag_seconds: int | None = None) -> None:
        _check_state(state)
        with self.lock:
            found = self.backend(account_id, region).find_server(server)
            if found is None:
                raise KeyError(f"no source server {server!r} in {account_id}/{region}")
            found.set_state(state, self.now(), lag_seconds)

    def state_summary(self) -> dict[str, Any]:
        with self.lock:
            self.advance()
            accounts: dict[str, dict[str, Any]] = {}
            for (account, region), backend in sorted(self.backends.items()):
                accounts.setdefault(account, {})[region] = {
                    "initialized": backend.initialized,
                    "source_servers": dict(Counter(s.state for s in backend.servers.values())),
                    "jobs": dict(Counter(j.status for j in backend.jobs.values())),
                    "recovery_instances": len(backend.recovery_instances),
                }
            faults = asdict(self.faults)
            faults.update(launch_failures=sorted(self.faults.launch_failures),
                          stuck_servers=sorted(self.faults.stuck_servers),
                          denied_operations=sorted(self.faults.denied_operations))
            return {"time_scale": self.time_scale, "seed": self.effective_seed, "faults": faults,
                    "durations": asdict(self.durations), "quotas": asdict(self.quotas), "accounts": accounts,
                    "errors_returned": dict(self.errors_returned)}


def _check_state(state: str) -> None:
    if state not in replication_states():
        raise ValueError(f"{state!r} is not a DRS data replication state; one of {sorted(replication_states())}")


_WORLD = DrsWorld()


def drs_world() -> DrsWorld:
    return _WORLD


def reset_world(time_scale: float = 1.0, seed: int | None = None) -> DrsWorld:
    """Reconfigure and empty the one world in place, so every holder of `drs_world()` sees the new one."""
    _WORLD.configure(time_scale=time_scale, seed=seed)
    return _WORLD
