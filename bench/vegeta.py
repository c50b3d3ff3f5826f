"""vegeta (github.com/tsenart/vegeta), the open-loop load generator of section `burst`.

It is Go, not Python: a generator in the bench's own interpreter would share the machine's
two cores *and* a GIL with its bookkeeping, and its send schedule slips under load. vegeta
is built once from the Go module proxy by hack/build-vegeta.sh into
~/.cache/guideline-ingest/vegeta-<version>/bin (next to the control plane's binaries).

Each attack writes vegeta's binary results, which `vegeta encode -to json` turns into one
JSON object per request (seq, code, timestamp of the send, latency in ns, body, error);
they become the same `Sample`s as the Python generator's, latency counted from the
*scheduled* send (vegeta's own latency plus how late its pacer sent the request).
"""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import datetime
from functools import cache
from pathlib import Path

from bench import REPO_ROOT
from bench.loadgen import Sample, StepResult


@cache
def binary() -> Path:
    """The cached vegeta binary (built on first use)."""
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-vegeta.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _timestamp(text: str) -> float:
    """RFC 3339 with nanoseconds (Go) -> epoch seconds."""
    head, _, rest = text.partition(".")
    if not rest:
        return datetime.fromisoformat(text).timestamp()
    digits = "".join(c for c in rest if c.isdigit())
    zone = rest[len(digits) :]
    return datetime.fromisoformat(f"{head}{zone}").timestamp() + float(f"0.{digits}")


def attack(
    url: str,
    headers: dict[str, str],
    bodies: list[bytes],
    count: int,
    seconds: float,
    workdir: Path,
    name: str,
    timeout: float = 60.0,
) -> tuple[StepResult, list[str]]:
    """POST `count` requests to `url` evenly over `seconds` (bodies in turn); returns the
    step's samples and the event_ids of the 202 answers (in send order)."""
    workdir.mkdir(parents=True, exist_ok=True)
    targets = workdir / f"{name}.targets.jsonl"
    header = {k: [v] for k, v in headers.items()}
    with targets.open("w") as f:
        for body in bodies:
            target = {
                "method": "POST",
                "url": url,
                "header": header,
                "body": base64.b64encode(body).decode(),
            }
            f.write(json.dumps(target) + "\n")
    results = workdir / f"{name}.results.bin"
    millis = max(1, round(seconds * 1000))
    subprocess.run(
        [
            str(binary()),
            "attack",
            "-format=json",
            f"-targets={targets}",
            f"-rate={count}/{millis}ms",
            f"-duration={millis}ms",
            f"-timeout={timeout:g}s",
            "-workers=50",  # more are started when all are busy (open loop)
            f"-name={name}",
            f"-output={results}",
        ],
        check=True,
        capture_output=True,
        timeout=seconds + timeout + 120,
    )
    encoded = subprocess.run(
        [str(binary()), "encode", "-to", "json", str(results)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    rows = sorted(
        (json.loads(line) for line in encoded.splitlines() if line), key=lambda r: r["seq"]
    )
    rate = count / seconds
    samples: list[Sample] = []
    event_ids: list[str] = []
    first = _timestamp(rows[0]["timestamp"]) if rows else 0.0
    for row in rows:
        sent = _timestamp(row["timestamp"])
        due = row["seq"] / rate
        lag = max(0.0, sent - first - due)
        latency = row["latency"] / 1e9
        status = int(row["code"]) if not row.get("error") or row["code"] else 0
        samples.append(Sample(due, lag + latency, status, lag, sent + latency))
        if status == 202 and row.get("body"):
            event_ids.append(json.loads(base64.b64decode(row["body"]))["event_id"])
    return StepResult(rate, seconds, samples), event_ids
