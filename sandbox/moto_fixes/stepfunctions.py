"""Step Functions: run state machines for real, so a Task state can wait on a task token.

moto 5.2.5 ships two Step Functions backends. The default one never executes a definition (an execution just ends
with a canned history), so `SendTaskSuccess` has nothing to resume. The "parser" backend interprets ASL, including
`arn:aws:states:::sqs:sendMessage.waitForTaskToken` and `HeartbeatSeconds`, and answers SendTask* with the model's
errors (TaskTimedOut, TaskDoesNotExist, InvalidToken). It is switched on through moto's own config.

The parser's service integrations call the other services with a boto3 client aimed at `localhost:$MOTO_PORT`
(5000), which is not where the sandbox listens. They are aimed at the port that received the StartExecution
instead. Its credentials ("ak") map to moto's default account, so integrations act in the hub account
(123456789012): a state machine of another account would send its SQS message to the hub's queue of that name.
"""

from __future__ import annotations

import uuid
from typing import Any

from moto.core.config import default_user_config
from moto.core.responses import EmptyResult
from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint
from moto.stepfunctions.parser.asl.utils import boto_client
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse

from sandbox.moto_fixes._guard import UnsupportedMoto, require

_port: str | None = None


def apply() -> None:
    # Checked first, so a moto without them is refused before anything here is patched.
    if not isinstance(default_user_config.get("stepfunctions", {}), dict):
        raise UnsupportedMoto("moto_fixes/stepfunctions", "sets moto's config stepfunctions.execute_state_machine, "
                              "which moto no longer keeps as a section")
    require(boto_client, "moto_server_port")
    for name in ("start_execution", "send_task_failure", "stepfunction_backend", "_get_param"):
        require(StepFunctionResponse, name)
    require(StepFunctionsParserBackend, "start_execution", "state_machine_arn", "name")
    require(StepFunctionsParserBackend, "send_task_failure", "task_token", "error", "cause")
    require(CallbackEndpoint, "notify_heartbeat")
    require(CallbackEndpoint, "get_outcome")
    _execute_state_machines()
    _integrations_call_the_sandbox()
    _unnamed_executions_get_a_name()
    _send_task_failure_keeps_its_cause()
    _heartbeat_without_heartbeat_seconds_is_accepted()


def _execute_state_machines() -> None:
    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True


def _integrations_call_the_sandbox() -> None:
    # boto_client imports moto_server_port from moto.settings without re-exporting it (attr-defined): its global is
    # what is read and replaced here, since that is the name its clients call.
    default_port = boto_client.moto_server_port  # type: ignore[attr-defined]

    def moto_server_port() -> str:
        return _port or default_port()

    # A module global, looked up at each call.
    boto_client.moto_server_port = moto_server_port  # type: ignore[attr-defined]

    original = StepFunctionResponse.start_execution

    def start_execution(self: Any) -> Any:
        global _port
        # SERVER_PORT is where this server really listens, whatever Host a client (or a proxy) sent.
        port = getattr(self.normalized_request, "environ", {}).get("SERVER_PORT")
        if port:
            _port = str(port)
        return original(self)

    StepFunctionResponse.start_execution = start_execution  # type: ignore[method-assign]


def _unnamed_executions_get_a_name() -> None:
    """moto 5.2.5's parser backend names an execution started without `name` "None", so the second such start
    fails with ExecutionAlreadyExists. AWS names it with a UUID (StartExecutionInput.name is optional)."""
    original = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]


def _send_task_failure_keeps_its_cause() -> None:
    """moto 5.2.5: the SendTaskFailure handler passes `error` but drops `cause`, so the TaskFailed event and the
    execution's failure never carry it. The parser backend takes `cause`; hand it over."""
    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause"))
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]


def _heartbeat_without_heartbeat_seconds_is_accepted() -> None:
    """moto 5.2.5 answers InvalidToken to SendTaskHeartbeat for a waiting task whose state sets no HeartbeatSeconds.
    AWS accepts it (the token is valid and the task open; there is just no heartbeat timeout to reset)."""
    original = CallbackEndpoint.notify_heartbeat

    def notify_heartbeat(self: Any) -> bool:
        return original(self) or self.get_outcome() is None

    CallbackEndpoint.notify_heartbeat = notify_heartbeat  # type: ignore[method-assign]
