"""The DRS wire layer, proven against botocore itself: its serializer writes the requests, its parser reads the answers.

No server: a real boto3 client's `before-send` hands each prepared request to the protocol layer in-process.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from sandbox.core.model import ServiceError, not_implemented, service_model
from sandbox.core.protocol import parse_request, render_error, render_output
from sandbox.core.validation import validate_input
from sandbox.drs.exceptions import DrsError
from sandbox.drs.urls import SERVICE, match_operation

SERVICE_MODEL = service_model(SERVICE)

SERVER_A = "s-1234567890abcdef0"
SERVER_B = "s-0fedcba0987654321"
ARN = f"arn:aws:drs:us-west-2:123456789012:source-server/{SERVER_A}"
TS = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any):
        yield self._body


class FakeDrs:
    """A boto3 DRS client wired to `handler(operation_name, params) -> result` through the protocol layer."""

    def __init__(self, handler: Callable[[str, dict], Any], attempts: int = 1) -> None:
        self.handler, self.calls = handler, []
        self.client = botocore.session.get_session().create_client(
            "drs", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="y",
            config=Config(retries={"mode": "standard", "total_max_attempts": attempts}))
        self.client.meta.events.register("before-send.drs", self._send)

    def _send(self, request, **_: Any) -> AWSResponse:
        url = urlsplit(request.url)
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        body = request.body or b""
        status, out_headers, out_body = self.serve(request.method, url.path, url.query, headers,
                                                   body.encode() if isinstance(body, str) else body)
        return AWSResponse(request.url, status, out_headers, _Raw(out_body))

    def serve(self, method: str, path: str, query: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        matched = match_operation(method, path)
        assert matched is not None, (method, path)
        op, path_params = matched
        try:
            params = parse_request(op, path_params, parse_qs(query, keep_blank_values=True), headers, body)
            self.calls.append((op.name, params))
            validate_input(op, params)
            return render_output(op, self.handler(op.name, params))
        except ServiceError as err:
            return render_error(err)


def _raise(err: ServiceError) -> Callable[[str, dict], Any]:
    def handler(name: str, params: dict) -> Any:
        raise err
    return handler


def _parse_error(err: ServiceError) -> dict:
    """What botocore's endpoint does with an error response: generic parse, then the modeled shape's members."""
    status, headers, body = render_error(err)
    response = {"status_code": status, "headers": HeadersDict(headers), "body": body}
    parser = create_parser("rest-json")
    parsed = parser.parse(response, None)
    parsed.update(parser.parse(response, SERVICE_MODEL.shape_for_error_code(parsed["Error"]["Code"])))
    return parsed


def _validation_fields(op_name: str, params: dict) -> list[tuple[str, str]]:
    with pytest.raises(ServiceError) as caught:
        validate_input(SERVICE_MODEL.operation_model(op_name), params)
    assert caught.value.code == "ValidationException" and caught.value.status == 400
    assert caught.value.fields["reason"] == "fieldValidationFailed"
    return [(f["name"], f["message"]) for f in caught.value.fields["fieldList"]]


# --- routing ---------------------------------------------------------------------------------------------------------

def test_every_model_operation_is_routed_by_method_and_uri():
    names = SERVICE_MODEL.operation_names
    assert len(names) >= 70
    for name in names:
        op = SERVICE_MODEL.operation_model(name)
        uri = op.http["requestUri"]
        path = uri.replace("{resourceArn}", quote(ARN, safe=""))
        assert "{" not in path, f"{name}: unexpected URI label in {uri}"
        matched = match_operation(op.http["method"], path)
        assert matched is not None and matched[0].name == name, name
        assert matched[1] == ({"resourceArn": ARN} if "{resourceArn}" in uri else {})


def test_tags_uri_is_told_apart_by_method_and_tolerates_a_decoded_path():
    assert match_operation("POST", f"/tags/{ARN}")[0].name == "TagResource"  # PATH_INFO after WSGI decoding
    assert match_operation("GET", f"/tags/{quote(ARN, safe='')}?x=1") == (
        SERVICE_MODEL.operation_model("ListTagsForResource"), {"resourceArn": ARN})
    assert match_operation("DELETE", "/tags/") is None
    assert match_operation("GET", "/StartRecovery") is None
    assert match_operation("POST", "/NoSuchOperation") is None


def test_service_model_is_loaded_once():
    assert service_model(SERVICE) is SERVICE_MODEL
    assert SERVICE_MODEL.metadata["signingName"] == "drs"


# --- requests from botocore's own serializer ------------------------------------------------------------------------

def test_start_recovery_round_trips_through_boto3():
    def handler(name, params):
        return {"job": {"jobID": "drsjob-1", "status": "PENDING", "type": "LAUNCH", "initiatedBy": "START_DRILL",
                        "creationDateTime": TS, "tags": params["tags"], "internalState": "dropped",
                        "participatingServers": [{"sourceServerID": s["sourceServerID"], "launchStatus": "PENDING",
                                                  "recoveryInstanceID": None, "debug": 1}
                                                 for s in params["sourceServers"]]}}
    fake = FakeDrs(handler)
    sent = {"sourceServers": [{"sourceServerID": SERVER_A}, {"sourceServerID": SERVER_B, "recoverySnapshotID":
                                                               "pit-123456789abcdef01"}],
            "isDrill": True, "tags": {"drill": "yes"}}
    result = fake.client.start_recovery(**sent)
    assert fake.calls == [("StartRecovery", sent)]
    assert result["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert result["job"] == {
        "jobID": "drsjob-1", "status": "PENDING", "type": "LAUNCH", "initiatedBy": "START_DRILL",
        "creationDateTime": "2024-05-06T07:08:09.123Z", "tags": {"drill": "yes"},
        "participatingServers": [{"sourceServerID": SERVER_A, "launchStatus": "PENDING"},
                                 {"sourceServerID": SERVER_B, "launchStatus": "PENDING"}]}


def test_uri_and_querystring_members_are_recovered_and_typed():
    fake = FakeDrs(lambda name, params: {"tags": {"a": "1"}} if name == "ListTagsForResource" else {})
    fake.client.tag_resource(resourceArn=ARN, tags={"a": "1", "b": "2"})
    fake.client.untag_resource(resourceArn=ARN, tagKeys=["a", "b"])
    assert fake.client.list_tags_for_resource(resourceArn=ARN)["tags"] == {"a": "1"}
    fake.client.list_staging_accounts(maxResults=5, nextToken="tok")
    assert fake.calls == [
        ("TagResource", {"resourceArn": ARN, "tags": {"a": "1", "b": "2"}}),
        ("UntagResource", {"resourceArn": ARN, "tagKeys": ["a", "b"]}),
        ("ListTagsForResource", {"resourceArn": ARN}),
        ("ListStagingAccounts", {"maxResults": 5, "nextToken": "tok"}),
    ]


def test_no_content_response_parses_as_empty():
    fake = FakeDrs(lambda name, params: {"ignored": True})
    result = fake.client.delete_job(jobID="drsjob-1234567890abcdef0")
    assert result["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert set(result) == {"ResponseMetadata"}


# --- validation the service does and botocore leaves to it ----------------------------------------------------------

def test_missing_required_member_is_named_and_reaches_the_caller():
    fake = FakeDrs(lambda name, params: pytest.fail("handler must not run"))
    status, headers, body = fake.serve("POST", "/StartRecovery", "", {}, b'{"isDrill": true}')
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException"
    parsed = create_parser("rest-json").parse(
        {"status_code": status, "headers": HeadersDict(headers), "body": body},
        SERVICE_MODEL.shape_for_error_code("ValidationException"))
    assert parsed["reason"] == "fieldValidationFailed"
    assert parsed["fieldList"] == [{"name": "sourceServers", "message": "Member must not be null"}]


def test_every_problem_is_listed_enums_lengths_patterns_and_ranges():
    fields = _validation_fields("DescribeRecoverySnapshots", {
        "sourceServerID": "s-" + "a" * 30, "order": "SIDEWAYS", "maxResults": 0, "filters": {"fromDateTime": "now"}})
    assert fields == [
        ("sourceServerID", "Member must have length less than or equal to 19"),
        ("sourceServerID", "Member must satisfy regular expression pattern: s-[0-9a-zA-Z]{17}"),
        ("order", "Member must satisfy enum value set: [ASC, DESC]"),
        ("maxResults", "Member must have value greater than or equal to 1"),
        ("filters.fromDateTime", "Member must have length greater than or equal to 19"),
        ("filters.fromDateTime", "Member must satisfy regular expression pattern: "
                                 + SERVICE_MODEL.shape_for("ISO8601DatetimeString").metadata["pattern"]),
    ]
    too_long = _validation_fields("StartRecovery", {"sourceServers": [{"sourceServerID": SERVER_A}] * 201})
    assert too_long == [("sourceServers", "Member must have length less than or equal to 200")]
    nested = _validation_fields("StartRecovery", {"sourceServers": [{"sourceServerID": "i-123"}, {}]})
    assert [name for name, _ in nested] == ["sourceServers[0].sourceServerID", "sourceServers[0].sourceServerID",
                                            "sourceServers[1].sourceServerID"]


def test_types_are_checked_including_json_true_for_an_integer():
    fields = _validation_fields("ListStagingAccounts", {"maxResults": True, "nextToken": 7})
    assert fields == [("maxResults", "Member must be of type integer"), ("nextToken", "Member must be of type string")]
    assert _validation_fields("ListStagingAccounts", {"maxResults": 51}) == [
        ("maxResults", "Member must have value less than or equal to 50")]
    op = SERVICE_MODEL.operation_model("ListStagingAccounts")
    params = parse_request(op, {}, {"maxResults": ["many"]}, {}, b"")
    assert _validation_fields("ListStagingAccounts", params) == [("maxResults", "Member must be of type integer")]


def test_unknown_members_and_nulls_are_ignored():
    op = SERVICE_MODEL.operation_model("StartRecovery")
    body = b'{"sourceServers": [{"sourceServerID": "%s", "extra": 1}], "isDrill": null, "future": {}}' % (
        SERVER_A.encode())
    params = parse_request(op, {}, {}, {"Content-Type": "application/json"}, body)
    assert params == {"sourceServers": [{"sourceServerID": SERVER_A}]}
    validate_input(op, {**params, "future": 1})


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
def test_unparseable_body_is_a_validation_error(body):
    with pytest.raises(ServiceError) as caught:
        parse_request(SERVICE_MODEL.operation_model("StartRecovery"), {}, {}, {}, body)
    assert caught.value.code == "ValidationException" and caught.value.fields == {"reason": "cannotParse"}


# --- output --------------------------------------------------------------------------------------------------------

def test_output_rejects_a_status_drs_never_reports():
    # The mistake the reference orchestrator's mock made: jobs are PENDING | STARTED | COMPLETED, never IN_PROGRESS.
    op = SERVICE_MODEL.operation_model("DescribeJobs")
    with pytest.raises(RuntimeError, match=r"items\[0\]\.status.*IN_PROGRESS"):
        render_output(op, {"items": [{"jobID": "drsjob-1", "status": "IN_PROGRESS"}]})
    with pytest.raises(RuntimeError, match=r"participatingServers\[0\]\.launchStatus"):
        render_output(op, {"items": [{"jobID": "j", "participatingServers": [{"launchStatus": "DONE"}]}]})
    with pytest.raises(RuntimeError, match="nextToken"):
        render_output(op, {"items": [], "nextToken": 5})


def test_output_keeps_only_model_members_and_botocore_parses_it():
    op = SERVICE_MODEL.operation_model("DescribeSourceNetworks")
    status, headers, body = render_output(op, {"items": [{"sourceNetworkID": "sn-1", "secret": "x", "lastRecovery": {
        "apiCallDateTime": TS, "jobID": "drsjob-1", "lastRecoveryResult": "SUCCESS"}}], "nextToken": None,
        "backendOnly": 1})
    assert status == 200 and headers["Content-Type"] == "application/json" and headers["x-amzn-RequestId"]
    parsed = create_parser("rest-json").parse(
        {"status_code": status, "headers": HeadersDict(headers), "body": body}, op.output_shape)
    parsed.pop("ResponseMetadata")
    assert parsed == {"items": [{"sourceNetworkID": "sn-1", "lastRecovery": {
        "apiCallDateTime": TS, "jobID": "drsjob-1", "lastRecoveryResult": "SUCCESS"}}]}


def test_output_for_operations_without_an_output_shape():
    status, _, body = render_output(SERVICE_MODEL.operation_model("TagResource"), None)
    assert (status, body) == (200, b"{}")


# --- errors --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("err", "status", "members"), [
    (DrsError("ConflictException", "server in an active job", resourceId=SERVER_A, resourceType="SOURCE_SERVER"),
     409, {"resourceId": SERVER_A, "resourceType": "SOURCE_SERVER"}),
    (DrsError("ServiceQuotaExceededException", "too many jobs", quotaCode="L-D88FAC3A", serviceCode="drs"),
     402, {"quotaCode": "L-D88FAC3A", "serviceCode": "drs"}),
    (DrsError("ThrottlingException", "slow down", retryAfterSeconds=7), 429, {"retryAfterSeconds": "7"}),
    (DrsError("ResourceNotFoundException", "no such job", resourceId="drsjob-1"), 404, {"resourceId": "drsjob-1"}),
    (DrsError("UninitializedAccountException", "call InitializeService"), 400, {}),
])
def test_errors_round_trip_through_botocore(err, status, members):
    assert err.status == status
    parsed = _parse_error(err)
    assert parsed["Error"] == {"Code": err.code, "Message": err.message}
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == status
    assert {k: parsed[k] for k in members} == members
    with pytest.raises(ClientError) as caught:
        FakeDrs(_raise(err)).client.describe_jobs()
    assert caught.value.response["Error"]["Code"] == err.code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert {k: caught.value.response[k] for k in members} == members


def test_retry_after_travels_in_its_header():
    status, headers, body = render_error(DrsError("ThrottlingException", "slow down", retryAfterSeconds="3"))
    assert (status, headers["Retry-After"]) == (429, "3") and b"retryAfterSeconds" not in body


def test_not_implemented_is_a_clean_non_retried_client_error():
    err = not_implemented(SERVICE, "StartSourceNetworkRecovery")
    fake = FakeDrs(_raise(err), attempts=3)  # room to retry, which a 5xx would use
    with pytest.raises(ClientError) as caught:
        fake.client.describe_jobs()
    response = caught.value.response
    assert response["Error"]["Code"] == "ValidationException" and response["reason"] == "unknownOperation"
    assert "StartSourceNetworkRecovery" in response["Error"]["Message"]
    assert response["ResponseMetadata"]["RetryAttempts"] == 0 and len(fake.calls) == 1


def test_error_construction_catches_emulator_mistakes():
    with pytest.raises(ValueError):
        DrsError("NotImplementedException", "no such shape")
    with pytest.raises(TypeError):
        DrsError("ConflictException", "bad member", quotaCode="L-1")
    with pytest.raises(RuntimeError, match="reason"):
        render_error(DrsError("ValidationException", "bad enum", reason="FIELD_VALIDATION_FAILED"))
