"""Standard Webhooks signatures (https://www.standardwebhooks.com): the headers
`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`, keyed by the tenant's secret `whsec_<base64 key>`. During a
rotation a delivery carries one signature per active secret, space-separated."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from guideline_core.db.webhooks import SECRET_PREFIX as PREFIX


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<signature>` of `body` under `secret`."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(active: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery, signed with every active secret."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, webhook_id, timestamp, body) for s in active),
    }
