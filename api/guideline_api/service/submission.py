"""Decoding and validating what a client submits: one guideline, a batch of them, and the
Idempotency-Key header."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from guideline_core.settings import ApiSettings
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from guideline_api.http.errors import ApiError, Reason, summarize, validation_details
from guideline_api.schemas.submission import SubmitDocument, SubmitJob
from guideline_api.service import uploads
from guideline_api.service.uploads import Upload

IDEMPOTENCY_KEY_MAX = 255
M = TypeVar("M", SubmitJob, SubmitDocument)


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
    return _validate(SubmitJob, data, field_prefix)


def _validate(model: type[M], data: Any, field_prefix: str) -> M:
    try:
        return model.model_validate(data)
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


# Form fields whose value is not a string: numbers, and JSON objects sent as a string.
_INT_FIELDS = frozenset({"max_retries"})
_JSON_FIELDS = frozenset({"review"})


def form_fields(form: Mapping[str, str], field_prefix: str = "") -> dict[str, Any]:
    """The submission fields of a multipart upload's form (strings) as JSON would give
    them: `max_retries` an integer, `review` a JSON object sent as a string; empty fields
    are absent."""
    data: dict[str, Any] = {}
    for name, value in form.items():
        if value == "":
            continue
        if name in _INT_FIELDS:
            try:
                data[name] = int(value)
            except ValueError:
                raise _form_error(field_prefix + name, "must be an integer") from None
        elif name in _JSON_FIELDS:
            try:
                data[name] = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                raise _form_error(field_prefix + name, "must be a JSON object") from None
        else:
            data[name] = value
    return data


def _form_error(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        Reason.VALIDATION,
        f"{field}: {message}",
        details=[{"field": field, "message": message, "type": "form_field"}],
    )


def validate_document_fields(data: Any, field_prefix: str = "") -> SubmitDocument:
    """Validate the fields of an upload (as `validate_submission`, without the text)."""
    return _validate(SubmitDocument, data, field_prefix)


def request_hash(req: SubmitJob | SubmitDocument, document_sha256: str | None = None) -> str:
    """SHA-256 of the canonical body (fields given, sorted keys, compact separators), with
    guideline_text as submitted: a body that differs only in what cleaning repairs is
    another body. An upload's hash covers its fields and its file's SHA-256."""
    given: dict[str, Any]
    if document_sha256 is not None:  # an upload: the file as it came
        given = {"document_sha256": document_sha256}
    else:
        assert isinstance(req, SubmitJob)
        given = {"guideline_text": req.submitted_text}
    canonical = json.dumps(
        req.model_dump(exclude_none=True) | given,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def upload_info(req: SubmitJob | SubmitDocument, upload: Upload) -> dict[str, Any]:
    """What is known of an uploaded document when it is accepted (`DocumentInfo`): its
    type, size and hash, and for a text upload (read by the API) its text's figures; the
    runner adds what its extraction finds."""
    info = {
        "media_type": str(upload.media_type),
        "bytes": upload.bytes,
        "sha256": upload.sha256,
        "warnings": [],
    }
    if isinstance(req, SubmitJob):
        info |= {
            "extractor": "text",
            "characters": len(req.guideline_text),
            "warnings": [w.as_dict() for w in req.text_warnings],
        }
    return info


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


def is_multipart(content_type: str | None) -> bool:
    """True for a `multipart/form-data` body (an upload)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "multipart/form-data"


def parse_upload(
    form: FormData, settings: ApiSettings
) -> tuple[SubmitJob | SubmitDocument, Upload]:
    """The one file (`file`) and the submission fields of a multipart POST /jobs (see
    `_upload_job`)."""
    files = [v for v in form.getlist("file") if isinstance(v, UploadFile)]
    if len(files) != 1 or any(not isinstance(v, UploadFile) for v in form.getlist("file")):
        raise _form_error(
            "file", f"expected one file part named `file`, got {len(form.getlist('file'))}"
        )
    fields = {k: v for k, v in form.multi_items() if k != "file"}
    if any(not isinstance(v, str) for v in fields.values()):
        raise _form_error("file", "only the part named `file` may be a file")
    upload = uploads.inspect(files[0].file, files[0].filename, settings.max_document_bytes)
    strings = {k: v for k, v in fields.items() if isinstance(v, str)}  # all, checked above
    return _upload_job(form_fields(strings), upload, settings, ""), upload


def _upload_job(
    fields: dict[str, Any], upload: Upload, settings: ApiSettings, prefix: str
) -> SubmitJob | SubmitDocument:
    """An upload's submission: a plain-text or Markdown file is read as its
    `guideline_text` (cleaned as JSON text is: the text is the job's at once, and
    estimated); any other type goes with its fields only (its text is the runner's)."""
    if not upload.is_text:
        return validate_document_fields(fields, prefix)
    if "guideline_text" in fields:
        validate_document_fields(fields, prefix)  # the 422 naming the extra field
    text = uploads.read_text(upload, settings.max_guideline_chars)
    return _validate(SubmitJob, fields | {"guideline_text": text}, prefix)


def parse_upload_batch(form: FormData, max_files: int) -> tuple[list[UploadFile], list[Any]]:
    """The files of a multipart batch (repeated `file` parts) and the fields of each (the
    optional `items` field: a JSON array of objects, in the files' order)."""
    files = form.getlist("file")
    unknown = sorted(set(form.keys()) - {"file", "items"})
    if unknown:
        raise _form_error(
            unknown[0], "a multipart batch has only `file` parts and an `items` field"
        )
    if not files or any(not isinstance(f, UploadFile) for f in files):
        raise _form_error("file", "expected one or more file parts named `file`")
    if len(files) > max_files:
        raise ApiError(
            413,
            Reason.BATCH_TOO_LARGE,
            f"a multipart batch holds at most {max_files} files, not {len(files)}",
        )
    raw = form.get("items")
    items: Any = [{} for _ in files]
    if isinstance(raw, str) and raw.strip():
        try:
            items = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            raise _form_error("items", "must be a JSON array of objects") from None
        if not isinstance(items, list) or len(items) != len(files):
            raise _form_error(
                "items", f"must be a JSON array of one object per file ({len(files)})"
            )
    return [f for f in files if isinstance(f, UploadFile)], items


def upload_item(
    file: UploadFile, fields: Any, settings: ApiSettings, index: int
) -> tuple[SubmitJob | SubmitDocument, Upload, Any]:
    """One file of a multipart batch with its fields (from `items`, as JSON gives them;
    `idempotency_key` returned apart, unchecked)."""
    prefix = f"items.{index}."
    if not isinstance(fields, dict):
        raise _form_error(prefix.rstrip("."), "expected a JSON object")
    fields = dict(fields)
    key = fields.pop("idempotency_key", None)
    upload = uploads.inspect(file.file, file.filename, settings.max_document_bytes)
    return _upload_job(fields, upload, settings, prefix), upload, key


def estimate_input(form: FormData, settings: ApiSettings) -> SubmitJob:
    """The submission an upload to POST /jobs/estimate stands for: a plain-text or Markdown
    file read as its `guideline_text`; any other type is 415 `estimate_needs_text` (the API
    never parses documents; the runner pod does)."""
    job, upload = parse_upload(form, settings)
    if not isinstance(job, SubmitJob):
        raise ApiError(
            415,
            Reason.ESTIMATE_NEEDS_TEXT,
            f"a {upload.media_type} document cannot be estimated before it is read: the API "
            "does not parse documents (the runner pod extracts their text, in isolation). "
            "Estimate its text instead (JSON guideline_text, or a plain-text or Markdown "
            "upload), or submit it and read the job's `document.characters` and cost",
        )
    return job
