"""Where ARC requests arrive. The sandbox's dispatcher sends this emulator every request whose SigV4 credential scope
names one of its two services:
- route53-recovery-control-config (the control plane) is rest-json: the operation is the one whose method and URI
  template in botocore's model match.
- route53-recovery-cluster (the data plane) is json 1.0, reached at the regional endpoints DescribeCluster hands out:
  `<sandbox>/arc-cluster/<cluster id>/<region>/v1`, the operation named by `X-Amz-Target`.
"""

from __future__ import annotations

import re

from botocore.model import OperationModel

from sandbox.core import protocol

CONTROL = "route53-recovery-control-config"
CLUSTER = "route53-recovery-cluster"

_ENDPOINT_PATH = re.compile(r"/arc-cluster/(?P<cluster>[0-9a-f]+)/(?P<region>[a-z0-9-]+)/v1/?")


def match_control(method: str, path: str) -> tuple[OperationModel, dict[str, str]] | None:
    return protocol.match_operation(CONTROL, method, path)


def endpoint_url(base: str, cluster_id: str, region: str) -> str:
    return f"{base}/arc-cluster/{cluster_id}/{region}/v1"


def match_endpoint(path: str) -> tuple[str, str] | None:
    """(cluster id, region) of a cluster endpoint's path; None when the path is not one."""
    found = _ENDPOINT_PATH.fullmatch(path)
    return (found["cluster"], found["region"]) if found else None
