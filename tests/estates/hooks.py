"""Hooks as plain resources of the every-module plan: an SSM Automation runbook and a Lambda function in the
application account's recovery region, each run in every phase.

Neither touches production: the runbook echoes the run it was given ("${dr.mode}", "${dr.phase}"), so
`check` finds, after each phase, a successful execution told that phase and mode; the function answers its event.
"""

from __future__ import annotations

import io
import json
import zipfile

from plans.model import Mode, Phase
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import Estate

REGION = "us-west-2"
RUNBOOK = {
    "schemaVersion": "0.3",
    "parameters": {"Mode": {"type": "String"}, "Phase": {"type": "String"}},
    "mainSteps": [
        {"name": "report", "action": "aws:executeScript",
         "inputs": {"Runtime": "python3.11", "Handler": "handler", "Script": "def handler(e, c): return e",
                    "InputPayload": {"seen": "{{ Phase }} in {{ Mode }}"}},
         "outputs": [{"Name": "Seen", "Selector": "$.Payload.seen", "Type": "String"}]},
    ],
    "outputs": ["report.Seen"],
}
FUNCTION = "def handler(event, context):\n    return {'seen': event['drContext']['phase'], 'ok': True}\n"


def build(prefix: str) -> Estate:
    session = account_session(APP_ACCOUNT)
    ssm, lam, iam = (session.client(s, region_name=REGION) for s in ("ssm", "lambda", "iam"))
    document, function, role = f"{prefix}-hooks-runbook", f"{prefix}-hooks-check", f"{prefix}-hooks-lambda"
    ssm.create_document(Name=document, Content=json.dumps(RUNBOOK), DocumentType="Automation")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("check.py", FUNCTION)
    lam.create_function(FunctionName=function, Runtime="python3.11", Handler="check.handler", Timeout=30,
                        Role=f"arn:aws:iam::{APP_ACCOUNT}:role/{role}", Code={"ZipFile": code.getvalue()})

    def check(phase: Phase, mode: Mode) -> None:
        found = ssm.describe_automation_executions(
            Filters=[{"Key": "DocumentNamePrefix", "Values": [document]}])["AutomationExecutionMetadataList"]
        told = [e for e in found if e.get("Outputs", {}).get("report.Seen") == [f"{phase.value} in {mode.value}"]]
        assert told and all(e["AutomationExecutionStatus"] == "Success" for e in told), found
        assert lam.get_function(FunctionName=function)["Configuration"]["State"] in ("Active", None)

    return Estate(
        resources=[
            {"name": f"{prefix}-hooks-runbook", "action": "hook.ssm_automation",
             "parameters": {"documentName": document, "parameters": {"Mode": "${dr.mode}", "Phase": "${dr.phase}"},
                            "timeoutSeconds": 120}},
            {"name": f"{prefix}-hooks-check", "action": "hook.lambda",
             "parameters": {"functionName": function, "payload": {"from": "every-module plan"}, "timeoutSeconds": 60}},
        ],
        check=check,
        notes=["hooks run in every phase and mode; neither the runbook nor the function changes anything"],
    )
