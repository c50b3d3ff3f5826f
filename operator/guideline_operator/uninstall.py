"""`guideline-uninstall`: the chart's pre-delete hook, so that `helm uninstall` followed by
deleting the CRDs or the namespace never hangs on the operator's finalizer.

1. Deletes every GuidelineJob of the namespace while the operator still runs: its delete
   handler records unfinished jobs as CANCELLED (reason Deleted) in PostgreSQL, which keeps
   every job's history, and releases its finalizer.
2. Waits up to `--timeout` seconds for them to go.
3. Removes the operator's finalizer from any still there (no operator running, or one too
   slow): those rows keep their last state.

It always exits 0 once it has done what it can (a failing hook would block the uninstall);
what it did is in its log."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, cast

from guideline_core import logs
from guideline_core import resource as gj
from guideline_core.kube import MERGE_PATCH, new_api_client
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from guideline_operator.handlers import FINALIZER

log = logging.getLogger("guideline_operator.uninstall")


def _names(api: client.CustomObjectsApi, namespace: str) -> dict[str, dict[str, Any]]:
    listed = cast(
        dict[str, Any],
        api.list_namespaced_custom_object(gj.GROUP, gj.VERSION, namespace, gj.PLURAL),
    )
    return {o["metadata"]["name"]: o for o in listed["items"]}


def _wait_gone(api: client.CustomObjectsApi, namespace: str, deadline: float) -> dict[str, Any]:
    left = _names(api, namespace)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = _names(api, namespace)
    return left


def release(api: client.CustomObjectsApi, namespace: str, timeout: float) -> dict[str, int]:
    """Delete the namespace's GuidelineJobs, wait, then drop our finalizer from the rest."""
    found = _names(api, namespace)
    for name, obj in found.items():
        if obj["metadata"].get("deletionTimestamp"):
            continue
        try:
            api.delete_namespaced_custom_object(gj.GROUP, gj.VERSION, namespace, gj.PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    left = _wait_gone(api, namespace, time.monotonic() + timeout)
    released = 0
    for name, obj in left.items():
        finalizers = obj["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            continue
        # The resourceVersion makes this a compare-and-swap: another finalizer added
        # meanwhile is never dropped with ours.
        body = {
            "metadata": {
                "finalizers": [f for f in finalizers if f != FINALIZER],
                "resourceVersion": obj["metadata"]["resourceVersion"],
            }
        }
        try:
            api.patch_namespaced_custom_object(
                gj.GROUP, gj.VERSION, namespace, gj.PLURAL, name, body, _content_type=MERGE_PATCH
            )
            released += 1
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
            log.warning("finalizer not removed", extra={"guidelinejob": name, "status": exc.status})
    remaining = _wait_gone(api, namespace, time.monotonic() + 10)
    summary = {"found": len(found), "released": released, "remaining": len(remaining)}
    log.info("guidelinejobs released", extra=summary)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the pre-delete hook Job."""
    parser = argparse.ArgumentParser(prog="guideline-uninstall", description=__doc__)
    parser.add_argument("--namespace", default=os.environ.get("GUIDELINE_NAMESPACE", "default"))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    args = parser.parse_args(argv)
    logs.configure(os.environ.get("GUIDELINE_LOG_LEVEL", "INFO"), component="uninstall")
    api = client.CustomObjectsApi(new_api_client())
    try:
        summary = release(api, args.namespace, args.timeout)
    except ApiException as exc:
        log.error("could not release guidelinejobs", extra={"status": exc.status})
        return
    print(json.dumps(summary))
