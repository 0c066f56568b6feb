"""The ARC emulator's request handling: one WSGI app per service, each finding the operation a request asks for,
parsing and validating it by the model, and calling the operation of the same name on the models' `Control` (control
plane) or `ClusterEndpoint` (one regional endpoint of one cluster, data plane)."""

from __future__ import annotations

from typing import Any

from botocore.model import OperationModel

from sandbox.arc.models import ArcWorld, ClusterEndpoint, Control, arc_world
from sandbox.arc.urls import CLUSTER, CONTROL, match_control, match_endpoint
from sandbox.core.model import ServiceError, not_implemented, validation_error
from sandbox.core.protocol import render_output, target_operation
from sandbox.core.wsgi import Request, Response, ServiceApp

Reached = tuple[Any, OperationModel, dict[str, Any]]  # the object answering, the operation, its validated input


class _ArcApp(ServiceApp):
    def serve(self, request: Request) -> Response:
        world = arc_world()
        account, _ = request.caller
        with world.lock:
            handler, operation, params = self.reach(request, world, account)
            method = getattr(handler, operation.name, None)
            if method is None:
                raise not_implemented(self.service, operation.name)
            return render_output(operation, method(params))

    def reach(self, request: Request, world: ArcWorld, account: str) -> Reached:
        raise NotImplementedError


class ControlApp(_ArcApp):
    service = CONTROL

    def reach(self, request: Request, world: ArcWorld, account: str) -> Reached:
        matched = match_control(request.method, request.path)
        if matched is None:
            raise validation_error(CONTROL, f"no {CONTROL} operation answers {request.method} {request.path}")
        operation, labels = matched
        params = request.parse(operation, labels)
        environ = request.environ
        base = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '127.0.0.1')}"
        return Control(world, account, base), operation, params


class ClusterApp(_ArcApp):
    service = CLUSTER

    def reach(self, request: Request, world: ArcWorld, account: str) -> Reached:
        found = match_endpoint(request.environ.get("PATH_INFO", ""))
        if found is None:
            raise ServiceError(CLUSTER, "AccessDeniedException", "not a cluster endpoint of this sandbox")
        request.operation = operation = target_operation(CLUSTER, request.headers.get("x-amz-target", ""))
        endpoint = ClusterEndpoint(world, account, *found)
        # A request to an endpoint that is down fails there, before the service looks at its input.
        endpoint.check_available(operation.name)
        return endpoint, operation, request.parse(operation)
