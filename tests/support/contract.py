"""Every response the suite sees, checked against the OpenAPI document the API serves.

The checks are schemathesis's own response checks (already the suite's fuzzer, so the
document is read by one OpenAPI implementation, not a second home-made one): the status is
one the operation declares, the content type is one it declares for that status, the body
validates against that response's schema, and its required headers are there. A response of
no documented operation (an unknown path, a method a path does not serve) must still be a
problem. A mismatch raises, failing the test that made the request.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, TypeVar

import httpx
import jsonschema_rs
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PROBLEM_MEDIA_TYPE = "application/problem+json"
ClientT = TypeVar("ClientT", bound=httpx.Client)


class Contract:
    """The served document, and the check of one response against it."""

    def __init__(self, document: dict[str, Any]):
        self.schema = schemathesis.openapi.from_dict(document)
        problem = {"$ref": "#/components/schemas/Problem", "components": document["components"]}
        self.problem = jsonschema_rs.validator_for(problem)
        self.checked = 0

    def check(self, response: httpx.Response) -> None:
        """Raise if `response` is not what the document says its request may answer."""
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return  # a stream may never end: its events are checked by the tests reading it
        response.read()
        request = response.request
        operation = self.schema.find_operation_by_path(request.method, request.url.path)
        self.checked += 1
        if operation is None:
            if response.status_code >= 400:
                media = response.headers.get("content-type", "")
                assert media == PROBLEM_MEDIA_TYPE, f"{request.url.path}: {media}"
                self.problem.validate(response.json())
            return
        case = operation.Case(
            method=request.method, path_parameters=_path_parameters(operation.path, request)
        )
        case.validate_response(response, checks=CHECKS)


def _path_parameters(template: str, request: httpx.Request) -> dict[str, str]:
    """The values of a path template's `{name}` segments in the request's path."""
    pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
    match = re.fullmatch(pattern, request.url.path)
    assert match is not None, (template, request.url.path)
    return match.groupdict()


@lru_cache(maxsize=8)
def _contract(document: str) -> Contract:
    return Contract(json.loads(document))


def contract_for(document: dict[str, Any]) -> Contract:
    """The Contract of a document (parsed once per distinct document)."""
    return _contract(json.dumps(document, sort_keys=True))


def checked(client: ClientT, document: dict[str, Any]) -> ClientT:
    """`client` with every response it receives checked against `document`."""
    contract = contract_for(document)
    hooks = client.event_hooks
    client.event_hooks = {**hooks, "response": [*hooks.get("response", []), contract.check]}
    return client
