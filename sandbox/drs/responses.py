"""The DRS emulator's request handling: `DrsApp` (faults, then routing, parsing and validation by the model, the
operation, and a rendering the model allows) and the operations, each taking the caller's account+region backend and
the validated input and returning the output as a dict of model members (the protocol layer drops anything else and
rejects enum values the model lacks). The sandbox's dispatcher sends `DrsApp` every request signed for `drs`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.model import OperationModel

from sandbox.core.model import ServiceError, not_implemented
from sandbox.core.pagination import paginate
from sandbox.core.protocol import render_output
from sandbox.core.wsgi import Request, Response, ServiceApp
from sandbox.drs.backend import DrsBackend
from sandbox.drs.exceptions import DrsError
from sandbox.drs.models import DrsWorld, drs_world
from sandbox.drs.urls import SERVICE, match_operation
from sandbox.drs.util import parse_iso

RETRY_AFTER_SECONDS = 1
# Errors any operation may answer, modeled for it or not: the service's front door raises them before any handler.
# AccessDeniedException: IAM answers it for any operation, modeled on it or not (AWS's common errors).
_SERVICE_WIDE = {"ValidationException", "ThrottlingException", "InternalServerException", "AccessDeniedException"}

Handler = Callable[[DrsBackend, dict[str, Any]], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}
# Operations real DRS answers before InitializeService (the rest raise UninitializedAccountException).
WITHOUT_INITIALIZATION = {"InitializeService", "TagResource", "UntagResource", "ListTagsForResource"}


def operation(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler
    return register


def require_initialized(backend: DrsBackend, operation_name: str) -> None:
    if operation_name not in WITHOUT_INITIALIZATION and not backend.initialized:
        raise DrsError("UninitializedAccountException",
                       f"Account {backend.account} is not initialized for Elastic Disaster Recovery in "
                       f"{backend.region}: call InitializeService first")


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    return paginate(SERVICE, items, params.get("maxResults"), params.get("nextToken"))


@operation("InitializeService")
def initialize_service(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    backend.initialized = True
    return {}


@operation("DescribeSourceServers")
def describe_source_servers(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    servers, token = _page(backend.describe_servers(params.get("filters") or {}), params)
    return {"items": [backend.server_wire(s) for s in servers], "nextToken": token}


@operation("StartRecovery")
def start_recovery(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    job = backend.start_recovery(params["sourceServers"], bool(params.get("isDrill")), params.get("tags") or {})
    return {"job": job.to_wire()}


@operation("DescribeJobs")
def describe_jobs(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    filters = params.get("filters") or {}
    jobs = list(reversed(backend.jobs.values()))  # newest first, as DRS lists them
    if filters.get("jobIDs"):
        wanted = set(filters["jobIDs"])
        jobs = [j for j in jobs if j.id in wanted]
    if filters.get("fromDate"):
        since = parse_iso(filters["fromDate"], "filters.fromDate")
        jobs = [j for j in jobs if j.created_at >= since]
    if filters.get("toDate"):
        until = parse_iso(filters["toDate"], "filters.toDate")
        jobs = [j for j in jobs if j.created_at <= until]
    page, token = _page(jobs, params)
    return {"items": [j.to_wire() for j in page], "nextToken": token}


@operation("DescribeJobLogItems")
def describe_job_log_items(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    items, token = _page(backend.job(params["jobID"]).log, params)
    return {"items": items, "nextToken": token}


@operation("DeleteJob")
def delete_job(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    backend.delete_job(params["jobID"])
    return {}


@operation("DescribeRecoveryInstances")
def describe_recovery_instances(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    filters = params.get("filters") or {}
    instances = list(backend.recovery_instances.values())
    if filters.get("recoveryInstanceIDs"):
        wanted = set(filters["recoveryInstanceIDs"])
        instances = [i for i in instances if i.id in wanted]
    if filters.get("sourceServerIDs"):
        wanted = set(filters["sourceServerIDs"])
        instances = [i for i in instances if i.source_server_id in wanted]
    page, token = _page(instances, params)
    return {"items": [i.to_wire() for i in page], "nextToken": token}


@operation("DescribeRecoverySnapshots")
def describe_recovery_snapshots(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    server = backend.server(params["sourceServerID"])
    snapshots = server.snapshots(backend.world.now())
    filters = params.get("filters") or {}
    if filters.get("fromDateTime"):
        since = parse_iso(filters["fromDateTime"], "filters.fromDateTime")
        snapshots = [s for s in snapshots if parse_iso(s["timestamp"], "timestamp") >= since]
    if filters.get("toDateTime"):
        until = parse_iso(filters["toDateTime"], "filters.toDateTime")
        snapshots = [s for s in snapshots if parse_iso(s["timestamp"], "timestamp") <= until]
    if params.get("order") == "DESC":
        snapshots.reverse()
    page, token = _page(snapshots, params)
    return {"items": page, "nextToken": token}


@operation("TerminateRecoveryInstances")
def terminate_recovery_instances(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    return {"job": backend.terminate(params["recoveryInstanceIDs"]).to_wire()}


@operation("StartFailbackLaunch")
def start_failback_launch(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    return {"job": backend.start_failback(params["recoveryInstanceIDs"], params.get("tags") or {}).to_wire()}


@operation("DisconnectRecoveryInstance")
def disconnect_recovery_instance(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    backend.disconnect_recovery_instance(params["recoveryInstanceID"])
    return {}


@operation("ReverseReplication")
def reverse_replication(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    return {"reversedDirectionSourceServerArn": backend.reverse_replication(params["recoveryInstanceID"])}


@operation("GetLaunchConfiguration")
def get_launch_configuration(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    server = backend.server(params["sourceServerID"])
    return {"sourceServerID": server.id, **server.launch_config}


@operation("UpdateLaunchConfiguration")
def update_launch_configuration(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    changes = {k: v for k, v in params.items() if k != "sourceServerID"}
    config = backend.update_launch_config(params["sourceServerID"], changes)
    return {"sourceServerID": params["sourceServerID"], **config}


@operation("GetReplicationConfiguration")
def get_replication_configuration(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    server = backend.server(params["sourceServerID"])
    return {"sourceServerID": server.id, **server.replication_config}


@operation("UpdateReplicationConfiguration")
def update_replication_configuration(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    changes = {k: v for k, v in params.items() if k != "sourceServerID"}
    config = backend.update_replication_config(params["sourceServerID"], changes)
    return {"sourceServerID": params["sourceServerID"], **config}


@operation("StopReplication")
def stop_replication(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    return {"sourceServer": backend.server_wire(backend.stop_replication(params["sourceServerID"]))}


@operation("StartReplication")
def start_replication(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    return {"sourceServer": backend.server_wire(backend.start_replication(params["sourceServerID"]))}


@operation("TagResource")
def tag_resource(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    backend.tagged(params["resourceArn"]).update(params["tags"])
    return {}


@operation("UntagResource")
def untag_resource(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    tags = backend.tagged(params["resourceArn"])
    for key in params["tagKeys"]:
        tags.pop(key, None)
    return {}


@operation("ListTagsForResource")
def list_tags_for_resource(backend: DrsBackend, params: dict[str, Any]) -> dict[str, Any]:
    return {"tags": dict(backend.tagged(params["resourceArn"]))}


class DrsApp(ServiceApp):
    service = SERVICE

    def __init__(self, world: Callable[[], DrsWorld] = drs_world) -> None:
        self._world = world

    def serve(self, request: Request) -> Response:
        world = self._world()
        with world.lock:
            if world.roll(world.faults.throttle_rate):
                raise DrsError("ThrottlingException", "Rate exceeded", serviceCode="drs",
                               retryAfterSeconds=str(RETRY_AFTER_SECONDS))
            if world.roll(world.faults.error_rate):
                raise DrsError("InternalServerException", "Internal service error (injected by the sandbox)",
                               retryAfterSeconds=RETRY_AFTER_SECONDS)
            matched = match_operation(request.method, request.path)
            if matched is None:
                raise DrsError("ValidationException", f"no DRS operation answers {request.method} {request.path}",
                               reason="unknownOperation")
            operation, labels = matched
            if operation.name in world.faults.denied_operations:
                account, _ = request.caller
                raise DrsError("AccessDeniedException", f"User: arn:aws:sts::{account}:assumed-role/sandbox is not "
                               f"authorized to perform: drs:{operation.name} (denied by the sandbox)")
            params = request.parse(operation, labels)
            server_id = params.get("sourceServerID")
            if world.faults.take_throttle(operation.name, server_id):
                raise DrsError("ThrottlingException", "Rate exceeded", serviceCode="drs",
                               retryAfterSeconds=str(RETRY_AFTER_SECONDS))
            handler = HANDLERS.get(operation.name)
            if handler is None:
                raise not_implemented(SERVICE, operation.name)
            account, region = request.caller
            world.advance()
            backend = world.backend(account, region)
            require_initialized(backend, operation.name)
            answer = render_output(operation, handler(backend, params))
            world.answered[(operation.name, server_id or "")] += 1
            return answer

    def answer(self, err: ServiceError, operation: OperationModel | None) -> ServiceError:
        answered = modeled(err, operation) if operation is not None else err
        self._world().errors_returned[answered.code] += 1
        return answered


def modeled(err: ServiceError, operation: OperationModel) -> ServiceError:
    """The error as the operation can report it: e.g. StartRecovery models no ResourceNotFoundException, so an
    unknown source server is a ValidationException there, while GetLaunchConfiguration answers 404."""
    if err.code in _SERVICE_WIDE or err.code in {shape.name for shape in operation.error_shapes}:
        return err
    return DrsError("ValidationException", err.message, reason="other")
