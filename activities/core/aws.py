"""AWS access for activities: one credential cache per worker process, shared by every activity thread.

A resource lives in an account; the worker reaches it through an IAM role in that account (or with its own
credentials when the account has no role). Assumed-role credentials are botocore `RefreshableCredentials`, handed to
the account's botocore session by a credential provider, so the refresh-before-expiry logic (advisory and mandatory
windows, one refreshing thread) is botocore's own.

Every client comes from `AwsClients`, built once per account, service, region, config and endpoint. An endpoint is
set only for a service reached at endpoints of its own (ARC's cluster); otherwise boto3 reads `AWS_ENDPOINT_URL`
itself, which is how the sandbox is reached.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.session
import structlog
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from temporalio.exceptions import ApplicationError

from plans.model import Account

log = structlog.get_logger("dr.aws")

_FALLBACK_REGION = "us-east-1"
# Every client retries in botocore's standard mode, 3 attempts in all: botocore's own default, which every client
# had before, stated so that a worker's AWS_RETRY_MODE / AWS_MAX_ATTEMPTS or profile cannot change it. Temporal's
# retry policy is the long-term retry; botocore's only rides out a blip within one activity attempt.
_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 3})
_RETRYABLE_ASSUME_ROLE_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded", "ExpiredToken"})

# Error codes that no retry can fix: the request or the resource state is wrong, not the service's health.
NON_RETRYABLE_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "ValidationError",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MissingParameter",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBSnapshotNotFound",
        "DBSnapshotNotFoundFault",
        "DBInstanceAlreadyExists",
        "InstanceQuotaExceeded",
        "StorageQuotaExceeded",
        "SnapshotQuotaExceeded",
        "KMSKeyNotAccessibleFault",
        "InvalidChangeBatch",
        "InvalidInput",
        "NoSuchHostedZone",
        "NoSuchChange",
        "ParameterNotFound",
        "ValidationException",
        "ResourceNotFoundException",
        "UninitializedAccountException",
    }
)


def is_permanent(code: str) -> bool:
    return code in NON_RETRYABLE_CODES or code.endswith(("NotFound", "NotFoundFault", "NotFoundException"))


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def fatal(message: str, error_type: str) -> ApplicationError:
    """An error Temporal must not retry: the plan or the estate needs a human."""
    return ApplicationError(message, type=error_type, non_retryable=True)


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn AWS errors that retrying cannot fix into non-retryable errors named by their code.

    Throttling, 5xx and connection errors pass through unchanged so Temporal's retry policy handles them.
    """
    try:
        yield
    except ParamValidationError as exc:
        raise fatal(f"{what}: {exc}", "ParamValidationError") from exc
    except ClientError as exc:
        code = error_code(exc)
        if is_permanent(code):
            message = exc.response.get("Error", {}).get("Message", "")
            raise fatal(f"{what}: {code}: {message}", code) from exc
        raise


def aws_call(what: str, operation: Any, tolerate: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """Call an AWS operation; the `tolerate` codes mean an earlier attempt already did (or is doing) it: None."""
    with aws_errors(what):
        try:
            return operation(**kwargs)
        except ClientError as exc:
            if error_code(exc) not in tolerate:
                raise
    return None


def unreachable(exc: Exception) -> bool:
    """The region did not answer (network, timeout, 5xx), as opposed to answering no."""
    if isinstance(exc, (ConnectionError, ConnectionClosedError, ReadTimeoutError)):
        return True
    return isinstance(exc, ClientError) and _is_server_error(exc)


class AwsClients:
    """The one factory of AWS clients for activities: sessions and clients per target account, safe to share between
    activity threads. Each (account, service, region, config, endpoint) gets one client, built once."""

    def __init__(
        self,
        base_session: boto3.Session | None = None,
        refresh_margin_seconds: int = 600,
        session_duration_seconds: int = 3600,
        role_session_name: str = "dr-orchestrator",
    ) -> None:
        self._base = base_session
        self._refresh_margin = refresh_margin_seconds
        self._duration = session_duration_seconds
        self._role_session_name = role_session_name
        self._lock = threading.RLock()
        self._sessions: dict[tuple[Any, ...], boto3.Session] = {}
        self._account_locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._ssm_values: dict[str, str] = {}
        self._assume_role_calls = 0

    @property
    def assume_role_calls(self) -> int:
        return self._assume_role_calls

    @property
    def base_session(self) -> boto3.Session:
        # Created on first use rather than at import, so the environment (credentials, endpoint) of the worker at
        # run time is what counts.
        with self._lock:
            if self._base is None:
                self._base = boto3.Session()
            return self._base

    @property
    def hub_region(self) -> str:
        """The worker's own region: where its STS, SSM and (by default) Step Functions calls go."""
        return self.base_session.region_name or _FALLBACK_REGION

    def session_for(self, account: Account) -> boto3.Session:
        if account.role_name is None:
            return self.base_session
        key = _account_key(account)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                return session
            account_lock = self._account_locks.setdefault(key, threading.Lock())
        # A per-account lock: one AssumeRole per account however many threads ask at once, and a slow STS call
        # for one account does not hold up clients of the others.
        with account_lock:
            with self._lock:
                session = self._sessions.get(key)
            if session is None:
                session = self._assumed_session(account)
                with self._lock:
                    self._sessions[key] = session
            return session

    def client(self, service: str, account: Account, region: str, *, config: Config | None = None,
               endpoint_url: str | None = None) -> Any:
        """A client in `account` (through its role, if it has one). `config` is merged over the default (standard
        retries, 3 attempts): the options it sets win. `endpoint_url` is for a service reached at endpoints of its
        own (ARC's cluster endpoints)."""
        key = (_account_key(account), service, region, _config_key(config), endpoint_url)
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        # Outside the lock: the first client of an account waits for its AssumeRole, the others need not.
        return self._build(key, self.session_for(account), service, region, config, endpoint_url)

    def hub_client(self, service: str, region: str | None = None, *, config: Config | None = None) -> Any:
        """A client with the worker's own credentials, for what it does in the hub account (AssumeRole, reading
        ExternalIds, answering Step Functions callers); region defaults to the worker's."""
        region = region or self.hub_region
        key = (None, service, region, _config_key(config), None)
        with self._lock:
            client = self._clients.get(key)
        return client if client is not None else self._build(key, self.base_session, service, region, config, None)

    def _build(self, key: tuple[Any, ...], session: boto3.Session, service: str, region: str,
               config: Config | None, endpoint_url: str | None) -> Any:
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # Session.client() is not thread-safe; the clients it returns are, so creation stays under the lock.
                client = session.client(service, region_name=region, endpoint_url=endpoint_url,
                                        config=_RETRIES.merge(config) if config is not None else _RETRIES)
                self._clients[key] = client
            return client

    def _assumed_session(self, account: Account) -> boto3.Session:
        role_arn = f"arn:aws:iam::{account.id}:role/{account.role_name}"

        def refresh() -> dict[str, str]:
            return self._assume_role(account, role_arn)

        # The first AssumeRole happens now, so a role that cannot be assumed fails where the client is asked for,
        # with the account named, rather than inside some later call.
        credentials = RefreshableCredentials.create_from_metadata(
            metadata=refresh(),
            refresh_using=refresh,
            method=_AssumedRole.METHOD,
            advisory_timeout=self._refresh_margin,
            mandatory_timeout=max(self._refresh_margin // 2, 1),
        )
        # The session's only credential provider hands out these credentials: no environment, profile or instance
        # role of the worker can stand in for the account's role.
        core = botocore.session.Session()
        core.register_component("credential_provider", CredentialResolver([_AssumedRole(credentials)]))
        return boto3.Session(botocore_session=core, region_name=self.hub_region)

    def _assume_role(self, account: Account, role_arn: str) -> dict[str, str]:
        kwargs: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": self._role_session_name,
            "DurationSeconds": self._duration,
        }
        if account.external_id is not None:
            kwargs["ExternalId"] = self._external_id(account)
        with self._lock:
            self._assume_role_calls += 1
        try:
            response = self.hub_client("sts").assume_role(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            # Throttling passes; so does an expired token of the worker's own, which its provider renews by the retry.
            if code in _RETRYABLE_ASSUME_ROLE_CODES or _is_server_error(exc):
                raise
            raise ApplicationError(
                f"cannot assume role {account.role_name} in account {account.id}: {code}: "
                f"{exc.response.get('Error', {}).get('Message', '')}",
                type="AssumeRoleFailed",
                non_retryable=True,
            ) from exc
        creds = response["Credentials"]
        log.info(
            "aws.assume_role",
            account=account.id,
            role=account.role_name,
            expires=creds["Expiration"].isoformat(),
        )
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
            "account_id": account.id,
        }

    def _external_id(self, account: Account) -> str:
        source = account.external_id
        assert source is not None
        if source.value is not None:
            return source.value
        if source.env is not None:
            # Read at each AssumeRole, so a rotated secret is picked up at the next refresh.
            value = os.environ.get(source.env)
            if not value:
                raise ApplicationError(
                    f"the ExternalId for account {account.id} is read from environment variable {source.env}, "
                    "which is not set on this worker",
                    type="ExternalIdUnavailable",
                    non_retryable=True,
                )
            return value
        assert source.ssm is not None
        return self._ssm_parameter(account, source.ssm)

    def _ssm_parameter(self, account: Account, name: str) -> str:
        with self._lock:
            cached = self._ssm_values.get(name)
        if cached is not None:
            return cached
        try:
            value = self.hub_client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except ClientError as exc:
            if _is_server_error(exc) or "Throttl" in error_code(exc):
                raise
            raise ApplicationError(
                f"the ExternalId for account {account.id} is read from SSM parameter {name}, which cannot be "
                f"read in the hub account: {error_code(exc)}",
                type="ExternalIdUnavailable",
                non_retryable=True,
            ) from exc
        with self._lock:
            self._ssm_values[name] = value
        return value


class _AssumedRole(CredentialProvider):
    """A credential provider holding one account's assumed-role credentials, which refresh themselves."""

    METHOD = "assume-role"
    CANONICAL_NAME = "custom-dr-assume-role"  # botocore reserves names without the "custom" prefix for its own

    def __init__(self, credentials: RefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> RefreshableCredentials:
        return self._credentials


def _account_key(account: Account) -> tuple[Any, ...]:
    # The description is cosmetic; two plans naming the same account and role share credentials.
    return (account.id, account.role_name, account.external_id)


def _config_key(config: Config | None) -> tuple[Any, ...] | None:
    # Config has no equality of its own: two configs with the same options must share a client, so the key is the
    # value of every option botocore defines.
    if config is None:
        return None
    return tuple((name, repr(getattr(config, name))) for name in Config.OPTION_DEFAULTS)


def _is_server_error(exc: ClientError) -> bool:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) >= 500
