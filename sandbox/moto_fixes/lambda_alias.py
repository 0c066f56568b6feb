"""Lambda: provisioned concurrency on aliases and versions, which moto 5.2.5 lacks (its URLs answer 404), and the
transitional states of event source mappings.

Put/Get/Delete/ListProvisionedConcurrencyConfigs as botocore's model describes them (paths, status codes 202/200/204,
`Status` IN_PROGRESS | READY, ProvisionedConcurrencyConfigNotFoundException). AWS allocates the environments in the
background; here a configuration is IN_PROGRESS until it has been read once, so a caller that waits for READY has to
poll, as on AWS. Lambda *Invoke* belongs to `awslambda.py`; nothing here touches it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from moto.awslambda import urls
from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import EventSourceMapping, LambdaBackend
from moto.awslambda.responses import LambdaResponse
from moto.core.exceptions import JsonRESTError

from sandbox.moto_fixes._guard import require

_PATH = r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"


def apply() -> None:
    # Checked first, so a moto without them is refused before anything here is patched.
    url_paths, dispatch = require(urls, "url_paths"), require(LambdaResponse, "dispatch")
    wrapped = (require(LambdaBackend, "update_event_source_mapping", "uuid", "spec"),
               require(EventSourceMapping, "get_configuration"),
               require(LambdaBackend, "delete_alias", "name", "function_name"),
               require(LambdaBackend, "delete_function", "function_name", "qualifier"))
    for used in ("backend", "_get_param"):  # what the added handlers read (path and body are set per request)
        require(LambdaResponse, used)
    url_paths.setdefault(_PATH, dispatch)
    LambdaResponse.put_provisioned_concurrency_config = _put  # type: ignore[attr-defined]
    LambdaResponse.get_provisioned_concurrency_config = _get  # type: ignore[attr-defined]
    LambdaResponse.delete_provisioned_concurrency_config = _delete  # type: ignore[attr-defined]
    LambdaResponse.list_provisioned_concurrency_configs = _list  # type: ignore[attr-defined]
    _configs_go_with_their_alias_or_function(*wrapped[2:])
    _mappings_pass_through_enabling_and_disabling(*wrapped[:2])


def _mappings_pass_through_enabling_and_disabling(update: Any, configuration: Any) -> None:
    """moto 5.2.5 switches a mapping's State straight to Enabled/Disabled. On AWS, UpdateEventSourceMapping answers
    Enabling/Disabling and the mapping settles a little later, which is what a caller must wait for. Here the
    transitional state is what the update's answer and the next read report; the read after that sees it settled."""

    def update_event_source_mapping(self: Any, uuid: str, spec: dict[str, Any]) -> Any:
        mapping = self.get_event_source_mapping(uuid)
        was = mapping.enabled if mapping is not None else None
        updated = update(self, uuid, spec)
        if updated is not None and "Enabled" in spec and bool(spec["Enabled"]) != was:
            updated._dr_transition = ["Enabling" if spec["Enabled"] else "Disabling"] * 2
        return updated

    def get_configuration(self: Any) -> dict[str, Any]:
        shown = configuration(self)
        transition = getattr(self, "_dr_transition", None)
        if transition:
            shown["State"] = transition.pop()
        return shown

    LambdaBackend.update_event_source_mapping = update_event_source_mapping  # type: ignore[method-assign]
    EventSourceMapping.get_configuration = get_configuration  # type: ignore[method-assign]


def _configs_go_with_their_alias_or_function(delete_alias: Any, delete_function: Any) -> None:
    """On AWS, deleting an alias (or the function) deletes the provisioned concurrency configured on it."""

    def delete_alias_and_config(self: Any, name: str, function_name: str) -> None:
        delete_alias(self, name, function_name)
        _configs(self).pop((_short(function_name), name), None)

    def delete_function_and_configs(self: Any, function_name: str, qualifier: str | None = None) -> None:
        delete_function(self, function_name, qualifier)
        for key in [k for k in _configs(self) if k[0] == _short(function_name) and qualifier in (None, k[1])]:
            _configs(self).pop(key, None)

    LambdaBackend.delete_alias = delete_alias_and_config  # type: ignore[method-assign]
    LambdaBackend.delete_function = delete_function_and_configs  # type: ignore[method-assign]


def _short(name_or_arn: str) -> str:
    return name_or_arn.split(":function:")[1].split(":")[0] if ":function:" in name_or_arn else name_or_arn


def _configs(backend: Any) -> dict[tuple[str, str], dict[str, Any]]:
    # Kept on the per-account, per-region backend, so moto's reset clears it with everything else.
    if not hasattr(backend, "_dr_provisioned_concurrency"):
        backend._dr_provisioned_concurrency = {}
    return backend._dr_provisioned_concurrency


def _target(response: Any) -> tuple[Any, str, str]:
    """The function and qualifier the request names; unknown function or alias: ResourceNotFoundException."""
    name = unquote(response.path.rstrip("/").split("/")[-2])
    qualifier = response._get_param("Qualifier")
    if not qualifier:
        raise InvalidParameterValueException("Qualifier is required")  # botocore also requires it
    if qualifier == "$LATEST":
        raise InvalidParameterValueException(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
    function = response.backend.get_function(name, qualifier)  # raises ResourceNotFoundException
    return function, function.function_name, qualifier


def _item(function_arn: str, config: dict[str, Any], with_arn: bool) -> dict[str, Any]:
    ready = config["Status"] == "READY"
    item = {
        "RequestedProvisionedConcurrentExecutions": config["Requested"],
        "AvailableProvisionedConcurrentExecutions": config["Requested"] if ready else 0,
        "AllocatedProvisionedConcurrentExecutions": config["Requested"] if ready else 0,
        "Status": config["Status"],
        "LastModified": config["LastModified"],
    }
    if with_arn:
        item = {"FunctionArn": function_arn, **item}
    return item


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _put(self: Any) -> Any:
    _, name, qualifier = _target(self)
    requested = json.loads(self.body or "{}").get("ProvisionedConcurrentExecutions")
    if not isinstance(requested, int) or requested < 1:
        raise InvalidParameterValueException("ProvisionedConcurrentExecutions must be a positive integer")
    config = {"Requested": requested, "Status": "IN_PROGRESS", "LastModified": _now()}
    _configs(self.backend)[(name, qualifier)] = config
    return 202, {"status": 202}, json.dumps(_item("", config, with_arn=False))


def _get(self: Any) -> Any:
    if self._get_param("List") == "ALL":
        return _list(self)
    _, name, qualifier = _target(self)
    config = _configs(self.backend).get((name, qualifier))
    if config is None:
        error = JsonRESTError("ProvisionedConcurrencyConfigNotFoundException",
                              "No Provisioned Concurrency Config found for this function")
        error.code = 404
        raise error
    shown = _item("", config, with_arn=False)
    config["Status"] = "READY"  # allocated by the next look: a waiter sees IN_PROGRESS once, then READY
    return 200, {}, json.dumps(shown)


def _delete(self: Any) -> Any:
    _, name, qualifier = _target(self)
    _configs(self.backend).pop((name, qualifier), None)
    return 204, {"status": 204}, ""


def _list(self: Any) -> Any:
    name = unquote(self.path.rstrip("/").split("/")[-2])
    function = self.backend.get_function(name)  # raises ResourceNotFoundException
    items = []
    for (function_name, qualifier), config in sorted(_configs(self.backend).items()):
        if function_name == function.function_name:
            arn = f"{function.function_arn.split(':function:')[0]}:function:{function_name}:{qualifier}"
            items.append(_item(arn, config, with_arn=True))
    return 200, {}, json.dumps({"ProvisionedConcurrencyConfigs": items})
