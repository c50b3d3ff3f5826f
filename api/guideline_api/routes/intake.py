"""How the `/jobs` routes read a submission from a request: a JSON body or a multipart upload
(one file, or a batch of files) into the service's `Submission`s, each an ApiError instead
when it is refused (the service charges a refused submission against the tenant's rate).

The multipart form spools its files to disk and stays open while the service stores them:
`submission` and `batch` are context managers, closed after the service call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request
from guideline_core.settings import ApiSettings
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from guideline_api.http.errors import ApiError, Reason
from guideline_api.schemas.submission import SubmitJob
from guideline_api.service import uploads
from guideline_api.service.accept import Submission
from guideline_api.service.submission import (
    check_idempotency_key,
    decode_json_object,
    estimate_input,
    is_multipart,
    item_key,
    parse_submission,
    parse_upload,
    parse_upload_batch,
    upload_item,
    validate_submission,
)


@asynccontextmanager
async def _form(request: Request, max_files: int) -> AsyncIterator[FormData | ApiError]:
    """The multipart form of an upload (files spooled to disk past 1 MiB), closed after; a
    body the parser refuses is a 422 for the caller to charge and raise."""
    try:
        form = await request.form(
            max_files=max_files,
            max_fields=uploads.MAX_FIELDS,
            max_part_size=uploads.MAX_FIELD_BYTES,
        )
    except StarletteHTTPException as exc:
        yield ApiError(422, Reason.VALIDATION, f"malformed multipart body: {exc.detail}")
        return
    try:
        yield form
    finally:
        await form.close()


@asynccontextmanager
async def submission(
    request: Request, settings: ApiSettings, idempotency_key: str | None
) -> AsyncIterator[Submission | ApiError]:
    """The one submission of `POST /jobs`, or why it is refused."""
    item: Submission | ApiError
    if is_multipart(request.headers.get("content-type")):
        async with _form(request, max_files=1) as form:
            try:
                if isinstance(form, ApiError):
                    raise form
                # In a thread: hashing and sniffing read the spooled file.
                job, upload = await run_in_threadpool(parse_upload, form, settings)
                item = Submission(job, check_idempotency_key(idempotency_key), upload=upload)
            except ApiError as err:
                item = err
            yield item
        return
    body = await request.body()
    try:
        # In a thread: cleaning a long text full of defects takes a while (ftfy).
        job = await run_in_threadpool(parse_submission, body, request.headers.get("content-type"))
        item = Submission(job, check_idempotency_key(idempotency_key))
    except ApiError as err:
        item = err  # refused, and charged against the tenant's rate all the same
    yield item


async def estimate(request: Request, settings: ApiSettings) -> SubmitJob:
    """The submission `POST /jobs/estimate` estimates (a refused one raises)."""
    if is_multipart(request.headers.get("content-type")):
        async with _form(request, max_files=1) as form:
            if isinstance(form, ApiError):
                raise form
            return await run_in_threadpool(estimate_input, form, settings)
    return parse_submission(await request.body(), request.headers.get("content-type"))


@asynccontextmanager
async def batch(
    request: Request, settings: ApiSettings, idempotency_key: str | None
) -> AsyncIterator[list[Submission | ApiError] | ApiError]:
    """The items of `POST /jobs/batch`, each a submission or its error; an ApiError instead
    when the batch is refused as a whole."""
    items: list[Submission | ApiError] | ApiError
    if is_multipart(request.headers.get("content-type")):
        async with _form(request, max_files=settings.max_batch_files) as form:
            try:
                if isinstance(form, ApiError):
                    raise form
                batch_key = check_idempotency_key(idempotency_key)
                items = await run_in_threadpool(_upload_items, form, settings, batch_key)
            except ApiError as err:
                items = err
            yield items
        return
    body = await request.body()
    try:
        data = decode_json_object(body, request.headers.get("content-type"))
        batch_key = check_idempotency_key(idempotency_key)
        items = await run_in_threadpool(_batch_items, data, settings.max_batch_size, batch_key)
    except ApiError as err:
        items = err
    yield items


def _batch_items(
    data: dict[str, Any], max_items: int, batch_key: str | None
) -> list[Submission | ApiError]:
    extra = set(data) - {"items"}
    if extra:
        raise ApiError(
            422, Reason.VALIDATION, f"unknown field(s) {sorted(extra)}; expected only `items`"
        )
    items = data.get("items")
    if not isinstance(items, list) or not items:
        raise ApiError(
            422,
            Reason.VALIDATION,
            "`items` must be a non-empty list of submissions",
            details=[{"field": "items", "message": "expected a non-empty list", "type": "list"}],
        )
    if len(items) > max_items:
        raise ApiError(
            413,
            Reason.BATCH_TOO_LARGE,
            f"a batch holds at most {max_items} items, not {len(items)}",
        )
    parsed: list[Submission | ApiError] = []
    for index, item in enumerate(items):
        try:
            own_key = item.pop("idempotency_key", None) if isinstance(item, dict) else None
            if own_key is not None and not isinstance(own_key, str):
                raise ApiError(
                    422, Reason.INVALID_IDEMPOTENCY_KEY, "idempotency_key must be a string"
                )
            key = own_key if own_key is not None else (batch_key and item_key(batch_key, index))
            job = validate_submission(item, field_prefix=f"items.{index}.")
            parsed.append(Submission(job, check_idempotency_key(key)))
        except ApiError as err:
            parsed.append(err)
    return parsed


def _upload_items(
    form: FormData, settings: ApiSettings, batch_key: str | None
) -> list[Submission | ApiError]:
    """The submissions of a multipart batch: each file with its fields, or its error."""
    files, fields = parse_upload_batch(form, settings.max_batch_files)
    parsed: list[Submission | ApiError] = []
    for index, (file, own) in enumerate(zip(files, fields, strict=True)):
        try:
            job, upload, own_key = upload_item(file, own, settings, index)
            if own_key is not None and not isinstance(own_key, str):
                raise ApiError(
                    422, Reason.INVALID_IDEMPOTENCY_KEY, "idempotency_key must be a string"
                )
            key = own_key if own_key is not None else (batch_key and item_key(batch_key, index))
            parsed.append(Submission(job, check_idempotency_key(key), upload=upload))
        except ApiError as err:
            parsed.append(err)
    return parsed
