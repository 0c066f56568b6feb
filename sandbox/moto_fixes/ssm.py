"""SSM: Automation executions, which moto 5.2.5 lacks (StartAutomationExecution is not implemented at all).

Start, Get, Describe and Stop are added on moto's own SSM backend, with the request and response shapes, enum values
and error codes of botocore's model. An Automation document (schemaVersion 0.3, created with moto's CreateDocument)
runs minimally but honestly, in real time, worked out whenever the execution is read:
- `aws:sleep` waits its Duration (PTnS/PTnM/PTnH) or until its Timestamp;
- `aws:pause` waits for a signal the sandbox does not take (SendAutomationSignal): it waits until stopped;
- `aws:executeScript` is not executed (no script runtime here): it takes a second and its declared outputs are read
  from its InputPayload ("$.Payload.key" -> InputPayload.key), as if the script returned its input;
- `aws:executeAwsApi` runs SSM GetParameter / PutParameter on this backend (a missing parameter fails the step);
  other APIs and actions fail their step, saying the sandbox does not run them.
Step `onFailure` (Abort, Continue, step:<name>), `nextStep`, `isEnd`, `timeoutSeconds`, `{{ Parameter }}` and
`{{ step.Output }}` references, and the document's `outputs` are honoured.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.ssm.exceptions import InvalidDocument, SSMException
from moto.ssm.models import SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from sandbox.moto_fixes._guard import require

_TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}
_STEP_SECONDS = 1.0  # how long a step that does not wait takes, so progress is visible
_REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_.:]+)\s*\}\}")
_lock = threading.RLock()
# What an Automation's PutParameter leaves at moto's defaults (moto's put_parameter takes every argument by name).
_PUT_DEFAULTS: dict[str, Any] = {"description": "", "allowed_pattern": None, "keyid": None, "tags": [],
                                  "data_type": "text", "tier": None, "policies": None}


class AutomationDefinitionNotFound(SSMException):
    code = "AutomationDefinitionNotFoundException"


class AutomationDefinitionVersionNotFound(SSMException):
    code = "AutomationDefinitionVersionNotFoundException"


class InvalidAutomationExecutionParameters(SSMException):
    code = "InvalidAutomationExecutionParametersException"


class IdempotentParameterMismatch(SSMException):
    code = "IdempotentParameterMismatch"


class AutomationExecutionNotFound(SSMException):
    code = "AutomationExecutionNotFoundException"


class InvalidAutomationStatusUpdate(SSMException):
    code = "InvalidAutomationStatusUpdateException"


class InvalidFilterKey(SSMException):
    code = "InvalidFilterKey"


def _duration(step: dict[str, Any], started: datetime) -> float | None:
    """Seconds the step takes; None: it waits for ever (aws:pause)."""
    action, inputs = step.get("action"), step.get("inputs") or {}
    if action == "aws:pause":
        return None
    if action == "aws:sleep":
        if "Timestamp" in inputs:
            until = datetime.fromisoformat(str(inputs["Timestamp"]).replace("Z", "+00:00")).replace(tzinfo=None)
            return max((until - started).total_seconds(), 0.0)
        match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", str(inputs.get("Duration", "PT0S")))
        if not match:
            return 0.0
        hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return float(hours * 3600 + minutes * 60 + seconds)
    return _STEP_SECONDS


class Automation:
    def __init__(self, backend: Any, document: Any, parameters: dict[str, list[str]], mode: str,
                 tags: list[dict[str, str]], token: str | None) -> None:
        self.id = str(uuid.uuid4())
        self.backend, self.document, self.parameters, self.mode = backend, document, parameters, mode
        self.tags, self.token = tags, token
        self.started = utcnow()
        self.ended: datetime | None = None
        self.status = "InProgress"
        self.failure: str | None = None
        self.steps: list[dict[str, Any]] = []  # StepExecution shapes, in the order run
        self.values: dict[str, list[str]] = {}  # "step.Output" -> values
        self.current = 0 if document.content_json.get("mainSteps") else None
        if self.current is None:
            self.status, self.ended = "Success", self.started

    @property
    def main_steps(self) -> list[dict[str, Any]]:
        return list(self.document.content_json.get("mainSteps") or [])

    def advance(self) -> None:
        now = utcnow()
        while self.status in ("InProgress", "Waiting") and self.current is not None:
            spec = self.main_steps[self.current]
            if not self.steps or self.steps[-1]["StepName"] != spec["name"] or "ExecutionEndTime" in self.steps[-1]:
                begun = self.steps[-1]["ExecutionEndTime"] if self.steps else self.started
                self.steps.append({"StepName": spec["name"], "Action": spec.get("action", ""),
                                   "ExecutionStartTime": begun, "StepStatus": "InProgress",
                                   "OnFailure": spec.get("onFailure", "Abort"),
                                   "MaxAttempts": spec.get("maxAttempts", 1),
                                   "TimeoutSeconds": spec.get("timeoutSeconds"), "StepExecutionId": str(uuid.uuid4()),
                                   "Inputs": {k: v if isinstance(v, str) else json.dumps(v)
                                              for k, v in (spec.get("inputs") or {}).items()}})
            step = self.steps[-1]
            took = _duration(spec, step["ExecutionStartTime"])
            limit = spec.get("timeoutSeconds")
            if limit is not None and (took is None or took > float(limit)):
                if now < step["ExecutionStartTime"] + timedelta(seconds=float(limit)):
                    self.status = "Waiting" if took is None else "InProgress"
                    return
                self._end_step(step, timedelta(seconds=float(limit)), "TimedOut", f"Step timed out after {limit}s")
                self._finish("TimedOut", f"Step {spec['name']} timed out")
                return
            if took is None:
                step["StepStatus"] = self.status = "Waiting"
                return
            if now < step["ExecutionStartTime"] + timedelta(seconds=took):
                return
            error = self._run(spec, step)
            self._end_step(step, timedelta(seconds=took), "Failed" if error else "Success", error)
            self._next(spec, failed=error is not None)

    def _run(self, spec: dict[str, Any], step: dict[str, Any]) -> str | None:
        """Do what the step does at its end; the failure message, or None."""
        action, inputs = spec.get("action"), self._resolve(spec.get("inputs") or {})
        result: dict[str, Any] = {}
        if action == "aws:executeScript":
            payload = inputs.get("InputPayload") or {}
            result = {"Payload": payload if isinstance(payload, dict) else {}}
        elif action == "aws:executeAwsApi":
            try:
                result = self._call_api(inputs)
            except SSMException as exc:  # as the step sees an API error: its failure, not the caller's
                return f"An error occurred ({exc.code}) when calling the {inputs.get('Api')} operation: {exc.message}"
        elif action != "aws:sleep":
            return f"the sandbox does not run {action}"
        outputs: dict[str, list[str]] = {}
        for declared in spec.get("outputs") or []:
            value = _select(result, str(declared.get("Selector", "")))
            if value is not None:
                outputs[declared["Name"]] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
                self.values[f"{spec['name']}.{declared['Name']}"] = outputs[declared["Name"]]
        if outputs:
            step["Outputs"] = outputs
        return None

    def _call_api(self, inputs: dict[str, Any]) -> dict[str, Any]:
        service, api = str(inputs.get("Service", "")).lower(), inputs.get("Api")
        if service == "ssm" and api == "GetParameter":
            parameter = self.backend.get_parameter(str(inputs.get("Name")))
            if parameter is None:
                raise SSMException("ParameterNotFound", f"Parameter {inputs.get('Name')} not found.")
            return {"Parameter": {"Name": parameter.name, "Value": parameter.value, "Type": parameter.parameter_type,
                                  "Version": parameter.version}}
        if service == "ssm" and api == "PutParameter":
            stored = self.backend.put_parameter(
                name=str(inputs["Name"]), value=str(inputs["Value"]), parameter_type=str(inputs.get("Type", "String")),
                overwrite=str(inputs.get("Overwrite", False)).lower() == "true", **_PUT_DEFAULTS)
            return {"Version": stored.version if stored is not None else None, "Tier": "Standard"}
        raise SSMException("UnsupportedOperation", f"the sandbox does not run aws:executeAwsApi {service}:{api}")

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v) for v in value]
        if not isinstance(value, str):
            return value

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "automation:EXECUTION_ID":
                return self.id
            found = self.parameters.get(name, self.values.get(name))
            return ",".join(found) if found is not None else match.group(0)

        return _REFERENCE.sub(one, value)

    def _end_step(self, step: dict[str, Any], took: timedelta, status: str, failure: str | None) -> None:
        step["ExecutionEndTime"] = step["ExecutionStartTime"] + took
        step["StepStatus"] = status
        if failure:
            step["FailureMessage"] = failure

    def _next(self, spec: dict[str, Any], failed: bool) -> None:
        names = [s["name"] for s in self.main_steps]
        on_failure = str(spec.get("onFailure", "Abort"))
        if failed and on_failure.startswith("step:") and on_failure[5:] in names:
            self.current = names.index(on_failure[5:])
            return
        if failed and on_failure != "Continue":
            self._finish("Failed", f"Step fails when it is {self.steps[-1].get('FailureMessage')}")
            return
        if spec.get("isEnd"):
            self.current = None
        elif spec.get("nextStep") in names:
            self.current = names.index(spec["nextStep"])
        else:
            self.current = self.current + 1 if self.current is not None and self.current + 1 < len(names) else None
        if self.current is None:
            self._finish("Success")

    def _finish(self, status: str, failure: str | None = None) -> None:
        self.status, self.failure, self.current = status, failure, None
        self.ended = self.steps[-1]["ExecutionEndTime"] if self.steps else utcnow()

    def stop(self) -> None:
        if self.status in _TERMINAL:
            raise InvalidAutomationStatusUpdate(f"Automation execution {self.id} is already in {self.status}")
        now = utcnow()
        if self.steps and "ExecutionEndTime" not in self.steps[-1]:
            self.steps[-1].update(ExecutionEndTime=now, StepStatus="Cancelled")
        self.status, self.ended, self.current = "Cancelled", now, None

    def outputs(self) -> dict[str, list[str]]:
        found = {name: self.values[name] for name in self.document.content_json.get("outputs") or []
                 if name in self.values}
        return found

    def metadata(self, full: bool) -> dict[str, Any]:
        self.advance()
        base: dict[str, Any] = {
            "AutomationExecutionId": self.id, "DocumentName": self.document.name,
            "DocumentVersion": self.document.document_version, "AutomationExecutionStatus": self.status,
            "ExecutionStartTime": self.started, "Mode": self.mode,
            "ExecutedBy": f"arn:aws:iam::{self.backend.account_id}:root",
        }
        if self.ended:
            base["ExecutionEndTime"] = self.ended
        if self.outputs():
            base["Outputs"] = self.outputs()
        if self.failure:
            base["FailureMessage"] = self.failure
        running = next((s for s in self.steps if "ExecutionEndTime" not in s), None)
        if running:
            base["CurrentStepName"], base["CurrentAction"] = running["StepName"], running["Action"]
        if full:
            base.update(StepExecutions=self.steps, StepExecutionsTruncated=False,
                        Parameters=self.parameters or None)
        else:
            base["AutomationType"] = "Local"
        return {k: v for k, v in base.items() if v is not None}


def _select(result: dict[str, Any], selector: str) -> Any:
    """A JSONPath of the simple "$.A.B" kind, as Automation step outputs use."""
    value: Any = result
    for part in selector.removeprefix("$.").split(".") if selector.startswith("$.") else []:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if selector.startswith("$.") else None


def _automations(backend: Any) -> dict[str, Automation]:
    if not hasattr(backend, "_dr_automations"):
        backend._dr_automations = {}
    return backend._dr_automations


def start_automation_execution(backend: Any, request: dict[str, Any]) -> str:
    with _lock:
        name = request["DocumentName"].split("/")[-1] if request["DocumentName"].startswith("arn:") \
            else request["DocumentName"]
        version = request.get("DocumentVersion")
        document = _document(backend, name, version if version != "$DEFAULT" else None)
        parameters = _check_parameters(document, request.get("Parameters") or {})
        token = request.get("ClientToken")
        fingerprint = (name, version, repr(sorted(parameters.items())))
        for automation in _automations(backend).values():
            if token and automation.token == token:
                if automation.fingerprint != fingerprint:  # type: ignore[attr-defined]
                    raise IdempotentParameterMismatch("Idempotency token was already used with other parameters.")
                return automation.id
        automation = Automation(backend, document, parameters, request.get("Mode", "Auto"),
                                request.get("Tags") or [], token)
        automation.fingerprint = fingerprint  # type: ignore[attr-defined]
        _automations(backend)[automation.id] = automation
        return automation.id


@dataclass
class _Document:
    name: str
    document_version: str
    content_json: dict[str, Any]


def _document(backend: Any, name: str, version: str | None) -> _Document:
    """The document as moto's GetDocument has it (its backend's public API; content always as JSON)."""
    try:
        found = backend.get_document(name, None, None, "JSON")  # the default version: does the document exist?
    except InvalidDocument:
        raise AutomationDefinitionNotFound(f"Document with name {name} does not exist.") from None
    if found["DocumentType"] != "Automation":
        raise AutomationDefinitionNotFound(f"Document with name {name} does not exist.")
    if version is not None:
        try:
            found = backend.get_document(name, version, None, "JSON")
        except InvalidDocument:
            raise AutomationDefinitionVersionNotFound(f"Document {name} with version {version} does not exist.") \
                from None
    return _Document(found["Name"], found["DocumentVersion"], json.loads(found["Content"]))


def _check_parameters(document: Any, given: dict[str, list[str]]) -> dict[str, list[str]]:
    declared = document.content_json.get("parameters") or {}
    for key in given:
        if key not in declared:
            raise InvalidAutomationExecutionParameters(f"Parameter \"{key}\" not defined in the document.")
    resolved: dict[str, list[str]] = {}
    for key, spec in declared.items():
        if key in given:
            resolved[key] = list(given[key])
        elif isinstance(spec, dict) and "default" in spec:
            default = spec["default"]
            resolved[key] = [str(v) for v in default] if isinstance(default, list) else [str(default)]
        else:
            raise InvalidAutomationExecutionParameters(f"Parameter \"{key}\" is required but not provided.")
    return resolved


def _found(backend: Any, execution_id: str) -> Automation:
    automation = _automations(backend).get(execution_id)
    if automation is None:
        raise AutomationExecutionNotFound(f"Automation execution {execution_id} does not exist.")
    return automation


def _matches(automation: Automation, key: str, values: list[str]) -> bool:
    if key == "DocumentNamePrefix":
        return any(automation.document.name.startswith(v) for v in values)
    if key == "ExecutionStatus":
        return automation.status in values
    if key == "ExecutionId":
        return automation.id in values
    if key == "TagKey":
        return any(t["Key"] in values for t in automation.tags)
    if key == "StartTimeAfter":
        return any(automation.started >= datetime.fromisoformat(v.replace("Z", "")) for v in values)
    if key == "StartTimeBefore":
        return any(automation.started <= datetime.fromisoformat(v.replace("Z", "")) for v in values)
    if key == "AutomationType":
        return "Local" in values
    return False  # ParentExecutionId, CurrentAction, ...: no execution of the sandbox has them


class _Responses:
    """Methods added to moto's SimpleSystemManagerResponse, which dispatches by the action's snake_case name."""

    def start_automation_execution(self: Any) -> ActionResult:
        request = {k: self._get_param(k) for k in ("DocumentName", "DocumentVersion", "Parameters", "ClientToken",
                                                   "Mode", "Tags")}
        execution_id = start_automation_execution(self.ssm_backend, request)
        return ActionResult({"AutomationExecutionId": execution_id})

    def get_automation_execution(self: Any) -> ActionResult:
        with _lock:
            automation = _found(self.ssm_backend, self._get_param("AutomationExecutionId"))
            return ActionResult({"AutomationExecution": automation.metadata(full=True)})

    def describe_automation_executions(self: Any) -> ActionResult:
        filters = self._get_param("Filters") or []
        for item in filters:
            if item["Key"] not in ("DocumentNamePrefix", "ExecutionStatus", "ExecutionId", "ParentExecutionId",
                                   "CurrentAction", "StartTimeBefore", "StartTimeAfter", "AutomationType",
                                   "TagKey", "TargetResourceGroup", "AutomationSubtype", "OpsItemId"):
                raise InvalidFilterKey(f"The filter key {item['Key']} is not valid.")
        limit = int(self._get_param("MaxResults") or 50)
        start = int(self._get_param("NextToken") or 0)
        with _lock:
            found = list(_automations(self.ssm_backend).values())
            for automation in found:
                automation.advance()
            found = [a for a in found if all(_matches(a, f["Key"], f["Values"]) for f in filters)]
            found.sort(key=lambda a: a.started, reverse=True)
            page = [a.metadata(full=False) for a in found[start:start + limit]]
        result: dict[str, Any] = {"AutomationExecutionMetadataList": page}
        if start + limit < len(found):
            result["NextToken"] = str(start + limit)
        return ActionResult(result)

    def stop_automation_execution(self: Any) -> ActionResult:
        with _lock:
            automation = _found(self.ssm_backend, self._get_param("AutomationExecutionId"))
            automation.advance()
            automation.stop()
        return EmptyResult()


def apply() -> None:
    # What the automations use of moto's SSM backend (its public operations) and of its response handler.
    require(SimpleSystemManagerBackend, "get_document")
    require(SimpleSystemManagerBackend, "get_parameter")
    require(SimpleSystemManagerBackend, "put_parameter", "name", "value", "parameter_type", "overwrite", *_PUT_DEFAULTS)
    require(SimpleSystemManagerResponse, "ssm_backend")
    for name in ("start_automation_execution", "get_automation_execution", "describe_automation_executions",
                 "stop_automation_execution"):
        if name not in SimpleSystemManagerResponse.__dict__:  # moto gained it upstream: keep moto's
            setattr(SimpleSystemManagerResponse, name, getattr(_Responses, name))
