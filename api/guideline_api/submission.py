"""Decoding and validating what a client submits: one guideline, a batch of them, and the
Idempotency-Key header."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ValidationError

from guideline_api.errors import ApiError, Reason, summarize, validation_details
from guideline_api.schemas import SubmitJob

IDEMPOTENCY_KEY_MAX = 255


def decode_json_object(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode a request body that must be one JSON object (already size-capped by the
    middleware)."""
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(
                415,
                Reason.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be application/json, not {media!r}",
            )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            422, Reason.INVALID_UTF8, f"request body is not valid UTF-8 (byte {exc.start})"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise ApiError(422, Reason.MALFORMED_JSON, "request body is empty; expected a JSON object")
    try:
        # strict=False admits raw tabs/newlines inside strings; the control-character
        # rule below then applies the same way whether a character was escaped or not.
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise ApiError(
            422,
            Reason.MALFORMED_JSON,
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, Reason.MALFORMED_JSON, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(
            422,
            Reason.VALIDATION,
            f"body must be a JSON object, not {type(data).__name__}",
            details=[{"field": "body", "message": "expected a JSON object", "type": "type"}],
        )
    return data


def parse_submission(raw: bytes, content_type: str | None) -> SubmitJob:
    """Decode and validate a POST /jobs body."""
    return validate_submission(decode_json_object(raw, content_type))


def validate_submission(data: Any, field_prefix: str = "") -> SubmitJob:
    """Validate one submission (an item of a batch names its index in `field_prefix`)."""
    if not isinstance(data, dict):
        raise ApiError(
            422,
            Reason.VALIDATION,
            f"{field_prefix}a submission must be a JSON object, not {type(data).__name__}",
            details=[
                {
                    "field": field_prefix.rstrip(".") or "body",
                    "message": "expected a JSON object",
                    "type": "type",
                }
            ],
        )
    try:
        return SubmitJob.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        details = validation_details(errors)
        for detail in details:
            detail["field"] = field_prefix + detail["field"]
        control = any(e["type"] == "control_characters" for e in errors)
        raise ApiError(
            422,
            Reason.CONTROL_CHARACTERS if control else Reason.VALIDATION,
            summarize(details),
            details=details,
        ) from None


def request_hash(req: SubmitJob) -> str:
    """SHA-256 of the canonical body (fields given, sorted keys, compact separators), with
    guideline_text as submitted: a body that differs only in what cleaning repairs is
    another body."""
    canonical = json.dumps(
        req.model_dump(exclude_none=True) | {"guideline_text": req.submitted_text},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def document_info(req: SubmitJob) -> dict[str, Any]:
    """What is known of a JSON submission's text when it is accepted (`DocumentInfo`)."""
    data = req.guideline_text.encode("utf-8")
    return {
        "media_type": "text/plain",
        "extractor": "json",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "characters": len(req.guideline_text),
        "warnings": [w.as_dict() for w in req.text_warnings],
    }


def item_key(batch_key: str, index: int) -> str:
    """The Idempotency-Key a batch's header gives its item `index`: `<key>:<index>`, or,
    when that would be longer than a key may be, `sha256:<hex of the key>:<index>`."""
    key = f"{batch_key}:{index}"
    if len(key) <= IDEMPOTENCY_KEY_MAX:
        return key
    return f"sha256:{hashlib.sha256(batch_key.encode()).hexdigest()}:{index}"


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX) or not all(" " < c <= "~" for c in key):
        raise ApiError(
            422,
            Reason.INVALID_IDEMPOTENCY_KEY,
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters "
            "without spaces (a UUID is a good choice)",
        )
    return key
