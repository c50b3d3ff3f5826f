"""One error hierarchy for every Kubernetes call, whichever transport made it.

Modelled on kopf's client layer (`kopf._cogs.clients.errors`): the HTTP status of
kube-apiserver's answer picks the class, so callers catch what they mean (a missing
object, a lost compare-and-swap) rather than compare numbers. `status` is None when there
was no answer at all.
"""

from __future__ import annotations

import json


class KubeError(Exception):
    """A Kubernetes call that did not succeed. `status` is the HTTP status (None: no
    answer), `reason` the Status object's reason (e.g. `AlreadyExists`, `NotFound`; else the
    HTTP reason phrase, e.g. `Not Found`) and `message` the Status object's message."""

    def __init__(
        self,
        text: str,
        *,
        status: int | None = None,
        reason: str = "",
        message: str | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.reason = reason
        self.message = text if message is None else message


class NotFoundError(KubeError):
    """404: no such object (reason `NotFound`), or no such resource type (the CRD is not
    installed: no Status reason)."""


class ConflictError(KubeError):
    """409: an optimistic-concurrency precondition (resourceVersion) failed."""


class AlreadyExistsError(ConflictError):
    """409 AlreadyExists: a create found an object of that name."""


class RejectedError(KubeError):
    """400 or 422: kube-apiserver refused the object itself (schema, CEL validation)."""


class ForbiddenError(KubeError):
    """401 or 403: the credentials are not accepted, or not allowed to do this."""


class UnavailableError(KubeError):
    """No answer (refused, reset, timed out, no credentials) or a server-side failure
    (429, 5xx and anything else unexpected): worth retrying later."""


def error_for(status: int, body: bytes | str, phrase: str = "") -> KubeError:
    """The error for an answer with HTTP `status` and `body` (a Status object, usually);
    `phrase` is the HTTP reason phrase, the reason when the body names none."""
    reason, message = _status_fields(body)
    head = f"{status} {reason or phrase}".strip()
    text = f"{head}: {message}" if message else head
    cls: type[KubeError]
    if status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = AlreadyExistsError if reason == "AlreadyExists" else ConflictError
    elif status in (400, 422):
        cls = RejectedError
    elif status in (401, 403):
        cls = ForbiddenError
    else:
        cls = UnavailableError
    return cls(text, status=status, reason=reason or phrase, message=message)


def _status_fields(body: bytes | str) -> tuple[str, str]:
    """The reason and message of a Kubernetes Status object, else ("", the body's start)."""
    try:
        status = json.loads(body or b"{}")
    except ValueError:
        raw = body if isinstance(body, str) else body.decode(errors="replace")
        return "", raw[:200].strip()
    if not isinstance(status, dict):
        return "", ""
    return str(status.get("reason") or ""), str(status.get("message") or "")
