"""nextToken/maxResults paging over a list, with tokens a client cannot tell from the service's (opaque)."""

from __future__ import annotations

import base64
import json
from typing import TypeVar

from sandbox.core.model import validation_error

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 1000


def paginate(service: str, items: list[T], max_results: int | None,
             next_token: str | None) -> tuple[list[T], str | None]:
    start = 0
    if next_token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(next_token.encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise validation_error(service, "invalid nextToken", reason="fieldValidationFailed", fields=[
                {"name": "nextToken", "message": "not a token this API returned"}]) from None
    size = max_results or DEFAULT_PAGE_SIZE
    page = items[start:start + size]
    end = start + size
    token = base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode() if end < len(items) else None
    return page, token
