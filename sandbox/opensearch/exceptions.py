"""OpenSearch's REST errors, as the emulated domains answer them."""

from __future__ import annotations

from typing import Any


class OsError(Exception):
    """An OpenSearch error response: `type` and `reason` as the REST API reports them."""

    def __init__(self, status: int, error_type: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason, self.extra = status, error_type, reason, extra

    def body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


def index_not_found(name: str) -> OsError:
    return OsError(404, "index_not_found_exception", f"no such index [{name}]", index=name,
                   **{"resource.type": "index_or_alias", "resource.id": name})
