"""Where DRS requests arrive: the sandbox's dispatcher sends this emulator every request whose SigV4 credential scope
names `drs`, and the operation is the one whose method and URI template in botocore's model match (rest-json)."""

from __future__ import annotations

from botocore.model import OperationModel

from sandbox.core import protocol

SERVICE = "drs"


def match_operation(method: str, path: str) -> tuple[OperationModel, dict[str, str]] | None:
    """The operation for an HTTP method and path, with its URI labels percent-decoded; None when nothing matches."""
    return protocol.match_operation(SERVICE, method, path)
