"""OpenSearch estate: a primary domain (us-east-1) and a recovery domain (us-west-2) in the app account.

The primary holds `orders` and `customers`, snapshotted into an S3 repository that both domains register, and a
leader index `events` that the recovery domain follows by cross-cluster replication (connection alias `primary`).
Two plan resources act on the recovery domain: a snapshot restore and a follower promotion.

The helpers here (signed domain calls, seeding) are what tests/test_opensearch.py uses too.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session

from plans.model import Mode, Phase
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import Estate

PRIMARY, RECOVERY = "us-east-1", "us-west-2"
ROLE_ARN = f"arn:aws:iam::{APP_ACCOUNT}:role/opensearch-snapshots"
_http = URLLib3Session()
_FOLLOWING = ("BOOTSTRAPING", "SYNCING")  # sic: the plugin spells it so


class Domain:
    """A domain as a test sees it: its control-plane description and signed REST calls to its endpoint."""

    def __init__(self, name: str, region: str) -> None:
        self.name, self.region = name, region
        self.session = account_session(APP_ACCOUNT)
        self.client = self.session.client("opensearch", region_name=region)
        status = self.client.create_domain(DomainName=name, EngineVersion="OpenSearch_2.11",
                                           ClusterConfig={"InstanceCount": 3})["DomainStatus"]
        self.endpoint = status["Endpoint"]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = os.environ["AWS_ENDPOINT_URL"].rstrip("/") + "/" + path.lstrip("/")
        request = AWSRequest(method=method, url=url, data=json.dumps(body).encode() if body is not None else None,
                             headers={"Host": self.endpoint, "Content-Type": "application/json"})
        SigV4Auth(self.session.get_credentials().get_frozen_credentials(), "es", self.region).add_auth(request)
        response = _http.send(request.prepare())
        return response.status_code, json.loads(response.content) if response.content else None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        assert status in (200, 201), (method, path, status, data)
        return data

    def index_docs(self, index: str, count: int) -> None:
        for n in range(count):
            self.ok("POST", f"{index}/_doc", {"n": n})

    def indices(self) -> dict[str, dict[str, Any]]:
        return {row["index"]: row for row in self.ok("GET", "_cat/indices?format=json")}

    def replication(self, index: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"_plugins/_replication/{index}/_status"))

    def register_repository(self, repo: str, bucket: str) -> None:
        self.ok("PUT", f"_snapshot/{repo}", {"type": "s3", "settings": {"bucket": bucket, "region": PRIMARY,
                                                                         "role_arn": ROLE_ARN}})


def domain_names(prefix: str) -> tuple[str, str]:
    # Domain names: 3-28 characters, lowercase, starting with a letter; the prefix may be anything.
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:10]
    return f"os{digest}-p", f"os{digest}-r"


def follow(recovery: Domain, primary: Domain, alias: str, indices: list[str]) -> None:
    info = {name: {"AWSDomainInformation": {"OwnerId": APP_ACCOUNT, "DomainName": d.name, "Region": d.region}}
            for name, d in (("local", recovery), ("remote", primary))}
    conn = recovery.client.create_outbound_connection(LocalDomainInfo=info["local"], RemoteDomainInfo=info["remote"],
                                                      ConnectionAlias=alias)
    primary.client.accept_inbound_connection(ConnectionId=conn["ConnectionId"])
    for index in indices:
        recovery.ok("PUT", f"_plugins/_replication/{index}/_start", {"leader_alias": alias, "leader_index": index})


def seed(prefix: str) -> tuple[Domain, Domain, str]:
    """Both domains, the snapshot `snap-1` of orders (5 docs) and customers (3 docs), `events` (4 docs) followed."""
    names = domain_names(prefix)
    primary, recovery = Domain(names[0], PRIMARY), Domain(names[1], RECOVERY)
    bucket = f"{names[0]}-snapshots"
    account_session(APP_ACCOUNT).client("s3", region_name=PRIMARY).create_bucket(Bucket=bucket)
    primary.index_docs("orders", 5)
    primary.index_docs("customers", 3)
    primary.index_docs("events", 4)
    primary.register_repository("dr-snapshots", bucket)
    primary.ok("PUT", "_snapshot/dr-snapshots/snap-1?wait_for_completion=true", {"indices": "orders,customers"})
    recovery.register_repository("dr-snapshots", bucket)
    follow(recovery, primary, "primary", ["events"])
    return primary, recovery, bucket


def build(prefix: str) -> Estate:
    primary, recovery, _ = seed(prefix)
    restore, promote = f"opensearch-restore-{prefix}", f"opensearch-follow-{prefix}"
    resources = [
        {"name": restore, "action": "opensearch.domain",
         "parameters": {"domainName": recovery.name, "method": "snapshotRestore", "repository": "dr-snapshots",
                        "snapshot": "snap-1", "indices": ["orders", "customers"],
                        "primaryDomainName": primary.name}},
        {"name": promote, "action": "opensearch.domain",
         "parameters": {"domainName": recovery.name, "method": "replication", "indices": ["events"],
                        "maxLagOperations": 100}},
    ]
    leader_docs = primary.ok("GET", "events/_count")["count"]

    def check(phase: Phase, mode: Mode) -> None:
        indices = recovery.indices()
        drill_copies = sorted(n for n in indices if n.startswith("dr-drill-"))
        # The primary is never touched, in any mode.
        assert primary.ok("GET", "events/_count")["count"] == leader_docs
        assert set(primary.indices()) == {"orders", "customers", "events"}
        if mode is Mode.DRILL:
            assert "orders" not in indices and "customers" not in indices
            assert recovery.replication("events")["status"] in _FOLLOWING
            status, _ = recovery.call("POST", "events/_doc", {"drill": True})
            assert status == 403  # still a read-only follower
            if phase is Phase.ACTIVATE:
                assert [n.rsplit("-", 1)[-1] for n in drill_copies] == ["customers", "orders"], drill_copies
                assert all(indices[n]["health"] == "green" for n in drill_copies)
                assert {indices[n]["docs.count"] for n in drill_copies} == {"5", "3"}
            else:
                assert drill_copies == [], drill_copies
            return
        assert drill_copies == []
        if phase is Phase.INSTANTIATE:
            assert "orders" not in indices and recovery.replication("events")["status"] in _FOLLOWING
            return
        assert indices["orders"]["health"] == "green" and indices["orders"]["docs.count"] == "5"
        assert indices["customers"]["docs.count"] == "3"
        assert recovery.replication("events")["status"] == "REPLICATION NOT IN PROGRESS"
        assert indices["events"]["docs.count"] is not None and int(indices["events"]["docs.count"]) >= leader_docs
        assert recovery.call("POST", "events/_doc", {"after": phase.value})[0] == 201  # promoted: writable

    return Estate(resources=resources, check=check,
                  notes=["opensearch: a drill restores dr-drill-<suffix>-* copies and never stops replication"])
