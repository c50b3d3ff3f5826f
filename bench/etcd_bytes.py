"""`python -m bench.etcd_bytes`: what one job costs etcd. The API submits 1 K, 100 K and
2 M-character guidelines (JSON `guideline_text`) and a PDF upload; each becomes a
GuidelineJob carrying a reference to the document in PostgreSQL, not its text. The figure
is the GuidelineJob's size as kube-apiserver returns it (JSON, managedFields included: what
etcd stores for a custom resource), next to the same text inline in `spec.guidelineText`
as a kubectl user would write it (the only path before documents moved out of etcd).

The operator is not started, so the objects stay as the API's dispatcher made them.
Figures only, nothing asserted.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import REPO_ROOT

SIZES = (1_000, 100_000, 2_000_000)
PDF = REPO_ROOT / "tests" / "data" / "guidelines" / "nist-sp800-63b-authentication.pdf"
SAMPLE = REPO_ROOT / "tests" / "data" / "guidelines" / "nist-sp800-63b-authentication.md"


def text_of(chars: int) -> str:
    """`chars` characters of real guideline text, repeated as needed."""
    source = SAMPLE.read_text(encoding="utf-8")
    return (source * (chars // len(source) + 1))[:chars]


def stored_bytes(obj: dict[str, Any]) -> int:
    """The object's JSON size as the apiserver keeps it (compact JSON, as etcd stores CRs)."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def _wait_for_cr(env: Any, event_id: str, timeout: float = 60) -> dict[str, Any]:
    from guideline_core import resource as gj

    deadline = time.monotonic() + timeout
    while True:
        found = env.kube.list_namespaced_custom_object(
            gj.GROUP,
            gj.VERSION,
            env.ops.namespace,
            gj.PLURAL,
            label_selector=f"{gj.LABEL_EVENT_ID}={event_id}",
        )["items"]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no GuidelineJob for {event_id}")
        time.sleep(0.2)


def inline_bytes(env: Any, text: str) -> int | str:
    """The size of a GuidelineJob holding `text` inline (kubectl), or why it is refused."""
    from guideline_core import resource as gj
    from kubernetes.client.exceptions import ApiException

    body = {
        "apiVersion": gj.API_VERSION,
        "kind": gj.KIND,
        "metadata": {"name": f"inline-{uuid.uuid4().hex[:12]}"},
        "spec": {"guidelineText": text},
    }
    try:
        created = env.kube.create_namespaced_custom_object(
            gj.GROUP, gj.VERSION, env.ops.namespace, gj.PLURAL, body
        )
    except ApiException as exc:
        return f"refused ({exc.status})"
    return stored_bytes(created)


def run(env: Any, log: Any = print) -> dict[str, Any]:
    """Submit each size and the PDF through the API; sizes of what lands in etcd."""
    results: dict[str, Any] = {"jobs": []}
    auth = {"Authorization": f"Bearer {env.api_key}"}
    with httpx.Client(base_url=env.api_url, headers=auth, timeout=120) as client:
        for chars in SIZES:
            text = text_of(chars)
            answer = client.post("/v1/jobs", json={"guideline_text": text, "title": "etcd"})
            answer.raise_for_status()
            cr = _wait_for_cr(env, answer.json()["event_id"])
            row = {
                "input": f"JSON text, {chars:,} characters",
                "text_bytes": len(text.encode()),
                "guidelinejob_bytes": stored_bytes(cr),
                "inline_guidelinejob_bytes": inline_bytes(env, text),
            }
            results["jobs"].append(row)
            log(f"  {row}")
        with PDF.open("rb") as handle:
            answer = client.post(
                "/v1/jobs",
                files={"file": (PDF.name, handle, "application/octet-stream")},
                data={"title": "etcd pdf"},
            )
        answer.raise_for_status()
        cr = _wait_for_cr(env, answer.json()["event_id"])
        row = {
            "input": f"PDF upload, {PDF.stat().st_size:,} bytes",
            "text_bytes": PDF.stat().st_size,
            "guidelinejob_bytes": stored_bytes(cr),
            "inline_guidelinejob_bytes": "n/a",
        }
        results["jobs"].append(row)
        log(f"  {row}")
    return results


def main() -> None:
    """Start the stack (no operator) on a private control plane, measure, print a table."""
    import os

    from bench.env import Environment

    os.environ.setdefault("GUIDELINE_LOCAL_DIR", str(REPO_ROOT / ".local" / "bench-etcd"))
    with (
        tempfile.TemporaryDirectory(prefix="bench-etcd-") as work,
        Environment(Path(work), private_cluster=True) as env,
    ):
        results = run(env)
    print(f"{'input':<34} {'GuidelineJob bytes':>19} {'inline (kubectl)':>18}")
    for row in results["jobs"]:
        inline = row["inline_guidelinejob_bytes"]
        inline_text = f"{inline:,}" if isinstance(inline, int) else inline
        print(f"{row['input']:<34} {row['guidelinejob_bytes']:>19,} {inline_text:>18}")


if __name__ == "__main__":
    main()
