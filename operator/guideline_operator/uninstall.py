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
from typing import Any

from guideline_core import logs
from guideline_core.k8s import Client, ConflictError, KubeError, NotFoundError, paths
from guideline_core.k8s import pooled as k8s_pooled
from guideline_core.resource import FINALIZER

log = logging.getLogger("guideline_operator.uninstall")


def _names(api: Client, namespace: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in api.list_items(paths.guidelinejobs(namespace))}


def _wait_gone(api: Client, namespace: str, deadline: float) -> dict[str, Any]:
    left = _names(api, namespace)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = _names(api, namespace)
    return left


def release(api: Client, namespace: str, timeout: float) -> dict[str, int]:
    """Delete the namespace's GuidelineJobs, wait, then drop our finalizer from the rest."""
    found = _names(api, namespace)
    for name, obj in found.items():
        if obj["metadata"].get("deletionTimestamp"):
            continue
        api.delete(paths.guidelinejobs(namespace, name))
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
            api.merge_patch(paths.guidelinejobs(namespace, name), body)
            released += 1
        except (NotFoundError, ConflictError) as exc:
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
    api = k8s_pooled.connect()
    try:
        summary = release(api, args.namespace, args.timeout)
    except KubeError as exc:
        log.error("could not release guidelinejobs", extra={"status": exc.status})
        return
    print(json.dumps(summary))
