"""Structured JSON-lines logging shared by every component.

`configure()` installs a handler that writes one JSON object per line; `bind()` attaches
context (event_id, step, attempt) to every record logged inside a `with` block.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from guideline_core import dsn

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_SECRETS: list[str] = []


def register_secret(value: str | None) -> None:
    """Make the formatter replace `value` wherever it would appear in a log line."""
    if value and len(value) >= 4 and value not in _SECRETS:
        _SECRETS.append(value)


def scrub(text: str) -> str:
    """`text` without registered secrets and connection-string passwords (for log lines,
    and for messages that leave the process some other way, such as an HTTP error)."""
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return dsn.redact(text)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the bound context and `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_context.get() or {})
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, default=str, ensure_ascii=False))


def configure(level: str = "INFO", component: str | None = None) -> None:
    """Send all logging to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if component:
        _context.set({**(_context.get() or {}), "component": component})


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Attach `fields` to every log record emitted inside the block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)
