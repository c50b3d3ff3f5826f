"""GET /audit: who did what, when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntry(BaseModel):
    """Who did what, when."""

    id: int
    at: datetime
    tenant: str
    actor: str
    action: str
    event_id: str | None = None
    detail: dict[str, Any] | None = None


class AuditPage(BaseModel):
    """Audit entries newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[AuditEntry]
    next_cursor: str | None
