"""`status.result` within a byte bound: etcd stores a GuidelineJob whole, and refuses one
over 1.5 MiB (docs/contracts.md, "The result's size"). Unbounded parts go first: the
passages no item covers (`quality.uncovered`, as many kept as fit; the text has them all),
then checklist items from the end (`quality.capped.result_bytes`; the result needs review).
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import BaseModel

from guideline_runner.models import Capped, ChainResult

ETCD_MAX_OBJECT_BYTES: Final = 1_572_864  # etcd's default --max-request-bytes (1.5 MiB)
# Kept free for what the operator still writes to the object (conditions, timestamps,
# kopf's bookkeeping) and the request's own envelope.
OBJECT_RESERVE_BYTES: Final = 65_536


def json_bytes(value: Any) -> int:
    """Size of `value` as the API server stores it: JSON in UTF-8."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def room_for_result(body: dict[str, Any], max_result_bytes: int) -> int:
    """The bytes status.result may take in this GuidelineJob: the setting, or less when
    the rest of the object (an inline text, kopf's copy of the spec, status.partial) leaves
    less under etcd's limit."""
    rest = {
        **body,
        "status": {k: v for k, v in (body.get("status") or {}).items() if k != "result"},
    }
    return max(
        0, min(max_result_bytes, ETCD_MAX_OBJECT_BYTES - OBJECT_RESERVE_BYTES - json_bytes(rest))
    )


def fit(result: ChainResult, max_bytes: int) -> ChainResult:
    """`result` cut down to at most `max_bytes` of JSON (unchanged when it fits)."""
    size = json_bytes(result.to_status())
    if size <= max_bytes:
        return result
    quality = result.quality
    passages = [json_bytes(p) + 1 for p in quality.uncovered]  # +1: the comma
    kept = len(passages)
    while kept and size > max_bytes:
        kept -= 1
        size -= passages[kept]
    quality = quality.model_copy(
        update={
            "uncovered": quality.uncovered[:kept],
            "uncovered_omitted": len(passages) - kept,
        }
    )
    result = result.model_copy(update={"quality": quality})
    size = json_bytes(result.to_status())
    if size <= max_bytes:
        return result
    items = list(result.checklist)
    # Less the room the note of the cut takes (capped.result_bytes, a review reason).
    while items and size > max_bytes - 512:
        size -= json_bytes(items.pop().model_dump(mode="json")) + 1
    cut = len(result.checklist) - len(items)
    capped = (quality.capped or Capped()).model_copy(update={"result_bytes": cut})
    duplicates = [g for g in quality.duplicates if all(i < len(items) for i in g)]
    quality = quality.model_copy(update={"capped": capped, "duplicates": duplicates})
    reason = (
        f"{cut} of {len(result.checklist)} checklist items were cut to keep the result within "
        f"{max_bytes:,} bytes (submit the guideline in parts to get them all)"
    )
    review = result.review.model_copy(update={"reasons": [*result.review.reasons, reason]})
    return result.model_copy(
        update={"checklist": items, "quality": quality, "review": review, "needs_review": True}
    )
