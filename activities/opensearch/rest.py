"""Signed calls to an OpenSearch Service domain's REST API, with botocore's own SigV4 and HTTP machinery.

The request goes to `https://<domain endpoint>`. When an endpoint override is configured (`AWS_ENDPOINT_URL`, as in
the sandbox) it goes there instead, with the domain endpoint as `Host`: the signature covers the same host either
way, so only the address differs from production.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote, urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session

from activities.core.context import ResourceContext
from activities.core.aws import aws_errors, fatal
from contracts.activities import Operation

POLL_SECONDS = 10.0

# One pool per worker process; urllib3's pool manager is thread-safe, so activity threads share it.
_http = URLLib3Session(timeout=30, max_pool_connections=20)

# Errors OpenSearch answers with 5xx that no retry can fix: the repository, snapshot or request is wrong.
_PERMANENT_TYPES = frozenset({"snapshot_restore_exception", "repository_missing_exception",
                              "snapshot_missing_exception", "repository_verification_exception",
                              "invalid_snapshot_name_exception"})


class DomainUnavailable(Exception):
    """The domain answered 429 or 5xx: worth retrying (Temporal's retry policy does)."""


def endpoint_override() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_OPENSEARCH") or os.environ.get("AWS_ENDPOINT_URL") or None


def error_type(data: Any) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def error_reason(data: Any) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("reason", ""))
    if isinstance(data, dict):
        return str(data.get("Message") or data.get("message") or "")
    return str(data)[:300]


class DomainRest:
    """The REST API of one domain, signed with the resource account's (assumed-role) credentials."""

    def __init__(self, ctx: ResourceContext, domain: str, endpoint: str, region: str) -> None:
        self._ctx, self.domain, self.endpoint, self.region = ctx, domain, endpoint, region

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
             ok: tuple[int, ...] = (200, 201)) -> tuple[int, Any]:
        """(status, JSON) of one request. Statuses in `ok`, and 4xx other than 403/429, are for the caller to judge;
        403 is permanent (IAM or the domain's access policy), 429 and 5xx are retryable."""
        url_path = "/" + "/".join(quote(part, safe=",*") for part in path.strip("/").split("/") if part)
        base = endpoint_override() or f"https://{self.endpoint}"
        url = base.rstrip("/") + url_path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Host": self.endpoint, "Content-Type": "application/json"}
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        credentials = self._ctx.aws.session_for(self._ctx.call.account).get_credentials()
        if credentials is None:
            raise fatal(f"no AWS credentials to sign requests to OpenSearch domain {self.domain}", "NoCredentials")
        # Frozen: one consistent key/secret/token triple even if a refresh happens while we sign.
        SigV4Auth(credentials.get_frozen_credentials(), "es", self.region).add_auth(request)
        response = _http.send(request.prepare())
        status = response.status_code
        try:
            payload = json.loads(response.content) if response.content else None
        except ValueError:
            payload = response.content.decode(errors="replace")[:300]
        self._ctx.log.debug("opensearch.rest", domain=self.domain, method=method, path=url_path, status=status)
        what = f"{method} {url_path} on domain {self.domain}"
        if status in ok:
            return status, payload
        if status == 403:
            raise fatal(f"{what}: 403 {error_reason(payload)}", "AccessDenied")
        if status >= 500 and error_type(payload) in _PERMANENT_TYPES:
            raise fatal(f"{what}: {error_type(payload)}: {error_reason(payload)}", error_type(payload))
        if status == 429 or status >= 500:
            raise DomainUnavailable(f"{what}: {status} {error_reason(payload)}")
        return status, payload

    def expect(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        """The JSON of a request that must succeed; any other answer is permanent."""
        status, payload = self.call(method, path, body, query)
        if status not in (200, 201):
            raise fatal(f"{method} /{path} on domain {self.domain}: {status} {error_type(payload)}: "
                        f"{error_reason(payload)}", error_type(payload) or f"Http{status}")
        return payload


def wait(message: str, handle: dict[str, Any], outputs: dict[str, Any] | None = None) -> Operation:
    return Operation(done=False, handle=handle, outputs=outputs or {}, message=message,
                     poll_interval_seconds=POLL_SECONDS)


def describe(ctx: ResourceContext, name: str, region: str) -> dict[str, Any]:
    with aws_errors(f"DescribeDomain {name} in {region}"):
        status = ctx.client("opensearch", region=region).describe_domain(DomainName=name)["DomainStatus"]
    if status.get("Deleted"):
        raise fatal(f"OpenSearch domain {name} in {region} is being deleted", "DomainDeleted")
    return dict(status)


def busy(status: dict[str, Any]) -> bool:
    return bool(status.get("Processing") or status.get("UpgradeProcessing"))


def rest_for(ctx: ResourceContext, name: str, status: dict[str, Any], region: str) -> DomainRest:
    endpoint = status.get("Endpoint") or (status.get("Endpoints") or {}).get("vpc")
    if not endpoint:
        raise fatal(f"OpenSearch domain {name} has no endpoint yet (still being created?)", "DomainNotReady")
    return DomainRest(ctx, name, endpoint, region)
