"""AwsClients on the sandbox: one AssumeRole per account, refresh near expiry, ExternalId sources, right account."""

from __future__ import annotations

import threading

import boto3
import pytest
import structlog
from botocore.config import Config
from temporalio.exceptions import ApplicationError

from activities.core.aws import AwsClients
from plans.model import Account, ExternalIdSource
from tests.aws_helpers import app_account, count_calls, sandbox_iam_enforced, unique
from tests.conftest import APP_ACCOUNT, HUB_ACCOUNT, OTHER_ACCOUNT

pytestmark = pytest.mark.usefixtures("sandbox")


def _hub_session() -> boto3.Session:
    return boto3.Session(region_name="us-east-1")


def test_twenty_clients_one_assume_role() -> None:
    base = _hub_session()
    aws = AwsClients(base_session=base)
    account = app_account()
    services = ("s3", "rds", "route53", "ec2", "sts")
    regions = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2")
    with count_calls(base.events, "sts", "AssumeRole") as assume_roles:
        clients = [aws.client(service, account, region) for service in services for region in regions]
        for client in clients[-4:]:  # the sts clients: use the credentials, which must not trigger a refresh
            assert client.get_caller_identity()["Account"] == APP_ACCOUNT
    assert len(clients) == 20
    assert aws.assume_role_calls == 1
    assert len(assume_roles) == 1
    # The cache hands back the same client, not a new one with the same credentials.
    assert aws.client("rds", account, "us-west-2") is clients[services.index("rds") * 4 + 1]


def test_concurrent_threads_share_one_assume_role() -> None:
    base = _hub_session()
    aws = AwsClients(base_session=base)
    account = app_account()
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def worker(index: int) -> None:
        barrier.wait()
        client = aws.client("sts", account, ("us-east-1", "us-west-2")[index % 2])
        seen.append(client.get_caller_identity()["Account"])

    with count_calls(base.events, "sts", "AssumeRole") as assume_roles:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert seen == [APP_ACCOUNT] * 8
    assert aws.assume_role_calls == 1 and len(assume_roles) == 1


def test_credentials_refresh_when_near_expiry() -> None:
    base = _hub_session()
    # moto honours DurationSeconds (900 is the minimum AWS allows); a refresh margin above the session lifetime puts
    # the credentials inside botocore's refresh window from the start, so each use refreshes them.
    aws = AwsClients(base_session=base, session_duration_seconds=900, refresh_margin_seconds=1000)
    with count_calls(base.events, "sts", "AssumeRole") as assume_roles:
        sts = aws.client("sts", app_account(), "us-east-1")
        assert aws.assume_role_calls == 1
        assert sts.get_caller_identity()["Account"] == APP_ACCOUNT
        assert sts.get_caller_identity()["Account"] == APP_ACCOUNT
    assert aws.assume_role_calls >= 2
    assert len(assume_roles) == aws.assume_role_calls
    assert all(str(call["body"]["DurationSeconds"]) == "900" for call in assume_roles.calls)


def test_credentials_not_refreshed_while_fresh() -> None:
    aws = AwsClients(base_session=_hub_session(), session_duration_seconds=3600, refresh_margin_seconds=600)
    sts = aws.client("sts", app_account(), "us-east-1")
    for _ in range(3):
        sts.get_caller_identity()
    assert aws.assume_role_calls == 1


def test_external_id_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = unique("ext-secret")
    monkeypatch.setenv("DR_TEST_EXTERNAL_ID", secret)
    base = _hub_session()
    aws = AwsClients(base_session=base)
    account = app_account(external_id=ExternalIdSource(env="DR_TEST_EXTERNAL_ID"))
    with structlog.testing.capture_logs() as logs, count_calls(base.events, "sts", "AssumeRole") as assume_roles:
        assert aws.client("sts", account, "us-east-1").get_caller_identity()["Account"] == APP_ACCOUNT
    assert assume_roles.calls[0]["body"]["ExternalId"] == secret
    assert assume_roles.calls[0]["body"]["RoleArn"] == f"arn:aws:iam::{APP_ACCOUNT}:role/dr-orchestrator"
    assert any(entry["event"] == "aws.assume_role" for entry in logs)
    assert secret not in repr(logs)


def test_external_id_env_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DR_TEST_MISSING_EXTERNAL_ID", raising=False)
    aws = AwsClients(base_session=_hub_session())
    account = app_account(external_id=ExternalIdSource(env="DR_TEST_MISSING_EXTERNAL_ID"))
    with pytest.raises(ApplicationError) as error:
        aws.client("sts", account, "us-east-1")
    assert error.value.non_retryable
    assert error.value.type == "ExternalIdUnavailable"
    assert "DR_TEST_MISSING_EXTERNAL_ID" in str(error.value)
    assert aws.assume_role_calls == 0


def test_external_id_from_ssm_read_once() -> None:
    name = f"/dr/{unique('external-id')}"
    secret = unique("ssm-secret")
    base = _hub_session()
    base.client("ssm").put_parameter(Name=name, Value=secret, Type="SecureString")
    aws = AwsClients(base_session=base)
    source = ExternalIdSource(ssm=name)
    with count_calls(base.events, "ssm", "GetParameter") as reads, count_calls(
        base.events, "sts", "AssumeRole"
    ) as assume_roles:
        for account_id in (APP_ACCOUNT, OTHER_ACCOUNT):
            account = Account(id=account_id, role_name="dr-orchestrator", external_id=source)
            assert aws.client("sts", account, "us-east-1").get_caller_identity()["Account"] == account_id
    assert len(reads) == 1
    assert [call["body"]["ExternalId"] for call in assume_roles.calls] == [secret, secret]


def test_external_id_ssm_missing_parameter() -> None:
    aws = AwsClients(base_session=_hub_session())
    account = app_account(external_id=ExternalIdSource(ssm=f"/dr/{unique('absent')}"))
    with pytest.raises(ApplicationError) as error:
        aws.client("rds", account, "us-west-2")
    assert error.value.non_retryable and error.value.type == "ExternalIdUnavailable"
    assert "/dr/absent-" in str(error.value)


def test_no_role_uses_the_hub_credentials() -> None:
    aws = AwsClients(base_session=_hub_session())
    hub = Account(id=HUB_ACCOUNT)
    identity = aws.client("sts", hub, "us-west-2").get_caller_identity()
    assert identity["Account"] == HUB_ACCOUNT
    assert aws.session_for(hub) is aws.base_session
    assert aws.assume_role_calls == 0


def test_assumed_credentials_act_in_the_target_account() -> None:
    aws = AwsClients(base_session=_hub_session())
    bucket = unique("dr-access-test")
    aws.client("s3", app_account(), "us-east-1").create_bucket(Bucket=bucket)
    identity = aws.client("sts", app_account(), "us-east-1").get_caller_identity()
    assert identity["Account"] == APP_ACCOUNT
    assert identity["Arn"].endswith(":assumed-role/dr-orchestrator/dr-orchestrator")
    hub_buckets = {b["Name"] for b in _hub_session().client("s3").list_buckets()["Buckets"]}
    assert bucket not in hub_buckets


def test_assume_role_denied_is_non_retryable(sandbox) -> None:  # type: ignore[no-untyped-def]
    iam = _hub_session().client("iam")
    user = unique("no-assume")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    weak = boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1"
    )
    aws = AwsClients(base_session=weak)
    with sandbox_iam_enforced(sandbox.url), pytest.raises(ApplicationError) as error:
        aws.client("rds", app_account(), "us-west-2")
    assert error.value.type == "AssumeRoleFailed" and error.value.non_retryable
    assert APP_ACCOUNT in str(error.value) and "dr-orchestrator" in str(error.value)
    assert "AccessDenied" in str(error.value)
    assert key["SecretAccessKey"] not in str(error.value)


def test_one_client_per_config_and_endpoint_with_standard_retries_whatever_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # What a worker's environment or profile says about retries must not change how often an activity's call is sent.
    monkeypatch.setenv("AWS_RETRY_MODE", "legacy")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "9")
    aws = AwsClients(base_session=_hub_session())
    account = app_account()
    plain = aws.client("lambda", account, "us-east-1")
    assert plain.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    once = aws.client("lambda", account, "us-east-1",
                      config=Config(read_timeout=5, retries={"mode": "standard", "total_max_attempts": 1}))
    assert once is not plain and once.meta.config.read_timeout == 5
    assert once.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    # An equal config is the same client: callers build their Config per call.
    assert aws.client("lambda", account, "us-east-1",
                      config=Config(read_timeout=5, retries={"mode": "standard", "total_max_attempts": 1})) is once
    elsewhere = aws.client("lambda", account, "us-east-1", endpoint_url="http://127.0.0.1:9")
    assert elsewhere.meta.endpoint_url == "http://127.0.0.1:9" and elsewhere is not plain
    assert aws.assume_role_calls == 1
    hub_sts = aws.hub_client("sts")
    assert hub_sts is aws.hub_client("sts", "us-east-1")
    assert hub_sts.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert hub_sts.get_caller_identity()["Account"] == HUB_ACCOUNT
