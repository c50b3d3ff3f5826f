"""The `guideline-client` command line against the `guideline-api` console script: a real
uvicorn server (migrations applied at its start-up) on a free port, the real control plane
and PostgreSQL. The test plays the operator by writing job outcomes into the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from guideline_core import db
from guideline_core.resource import Phase
from support.api import ALICE_KEY, ApiProcess
from support.cluster import LocalCluster
from support.net import free_port
from support.rows import set_state

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent
GUIDELINE = """Hand hygiene

Staff must wash their hands before and after every patient contact.
Gloves should be changed between patients. Alcohol rub shall be available at each bed.
"""


@dataclass
class Server:
    url: str
    log: Path
    workdir: Path

    def log_lines(self) -> list[dict[str, Any]]:
        """The server's log: every line must be a JSON object."""
        return [json.loads(raw) for raw in self.log.read_text().splitlines() if raw.strip()]


@pytest.fixture
def server(
    postgres_url: str, database: db.Database, cluster: LocalCluster, tmp_path: Path
) -> Iterator[Server]:
    namespace = cluster.create_namespace("api-cli")
    api = ApiProcess(
        postgres_url,
        tmp_path,
        GUIDELINE_NAMESPACE=namespace,
        GUIDELINE_KUBECONFIG=str(cluster.kubeconfig),
        GUIDELINE_DISPATCHER_ENABLED="true",
    )
    try:
        api.start()
        workdir = tmp_path / "work"
        (workdir / ".local").mkdir(parents=True)
        (workdir / ".local" / "api-key").write_text(ALICE_KEY + "\n")
        yield Server(url=api.url, log=api.log, workdir=workdir)
    finally:
        api.stop()
        cluster.delete_namespace(namespace)


def client_env(server: Server, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUIDELINE_")}
    env["GUIDELINE_API_URL"] = server.url
    env.update(extra)
    return env


def run(
    server: Server, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`guideline-client ARGS` in a directory whose .local/api-key holds alice's key."""
    return subprocess.run(
        [str(BIN / "guideline-client"), *args],
        input=stdin,
        env=client_env(server, **env),
        cwd=server.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_is_enough_to_use_it() -> None:
    out = subprocess.run(
        [str(BIN / "guideline-client"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for word in ("submit", "status", "wait", "list", "cancel", "retry", "--url", "--api-key"):
        assert word in out
    assert "GUIDELINE_API_URL" in out and "GUIDELINE_API_KEY" in out and ".local/api-key" in out
    assert "exit status" in out


def test_submit_status_list_cancel_retry_through_the_cli(
    server: Server, database: db.Database, tmp_path: Path
) -> None:
    path = tmp_path / "hand-hygiene.txt"
    path.write_text(GUIDELINE)

    submitted = run(server, "submit", str(path), "--provider", "extractive")
    assert submitted.returncode == 0, submitted.stderr
    event_id, status = submitted.stdout.split()
    assert status == "PENDING"

    shown = run(server, "status", event_id)
    assert shown.returncode == 0
    assert f"Job {event_id}: PENDING" in shown.stdout
    assert "Title:     hand-hygiene" in shown.stdout
    assert "position 1" in shown.stdout

    result = {
        "summary": "Clean hands before and after each patient; fresh gloves per patient.",
        "checklist": [
            {"item": "Wash hands before patient contact", "priority": "high"},
            "Change gloves between patients",
        ],
        "provider": "extractive",
        "model": "extractive",
    }
    set_state(database, event_id, Phase.COMPLETED, 1, result=result)
    done = run(server, "status", event_id)
    assert f"Job {event_id}: COMPLETED" in done.stdout
    assert "Clean hands before and after each patient" in done.stdout
    assert " 1. [ ] Wash hands before patient contact  (priority: high)" in done.stdout
    assert " 2. [ ] Change gloves between patients" in done.stdout
    raw = json.loads(run(server, "--json", "status", event_id).stdout)
    assert raw["result"]["usage"].pop("cost")["amount"] == 0  # extractive: free
    assert raw["result"] == {**result, "usage": {}, "document": raw["document"]}

    # submit --wait follows a job to its end; exit status 1 when it FAILED.
    waiting = subprocess.Popen(
        [
            str(BIN / "guideline-client"),
            "submit",
            str(path),
            "--wait",
            "--interval",
            "0.2",
            "--timeout",
            "120",
        ],
        env=client_env(server),
        cwd=server.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stderr is not None
    first_line = waiting.stderr.readline()
    assert first_line.startswith("submitted "), first_line
    second_id = first_line.split()[1].rstrip(";")
    set_state(
        database,
        second_id,
        Phase.FAILED,
        1,
        error={"reason": "LLMRejected", "message": "the LLM refused the API key"},
        reason="LLMRejected",
    )
    stdout, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 1
    assert f"Job {second_id}: FAILED" in stdout
    assert "Error:     LLMRejected: the LLM refused the API key" in stdout

    listed = run(server, "list", "--status", "failed")
    assert listed.returncode == 0
    assert second_id in listed.stdout and event_id not in listed.stdout
    assert "LLMRejected" in listed.stdout
    page = json.loads(run(server, "list", "--json").stdout)
    assert [i["event_id"] for i in page["items"]] == [second_id, event_id]

    retried = run(server, "retry", second_id)
    assert retried.returncode == 0, retried.stderr
    assert f"retry requested for {second_id}" in retried.stdout

    third = run(
        server, "submit", "-", "--title", "stdin", "--idempotency-key", "k-1", stdin=GUIDELINE
    ).stdout
    third_again = run(server, "submit", str(path), "--idempotency-key", "k-1")
    assert third_again.returncode == 2  # same key, different body
    assert "idempotency_key_reused" in third_again.stderr
    third_id = third.split()[0]
    cancelled = run(server, "cancel", third_id)
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout
    finished = run(server, "cancel", event_id)
    assert finished.returncode == 2
    assert "HTTP 409 job_finished" in finished.stderr

    # Every submission is logged as JSON with its event_id.
    accepted = {
        line["event_id"] for line in server.log_lines() if line.get("msg") == "job accepted"
    }
    assert {event_id, second_id, third_id} <= accepted
    posts = [
        line
        for line in server.log_lines()
        if line.get("msg") == "request"
        and line.get("route") == "/jobs"
        and line.get("method") == "POST"
        and line.get("status") == 202
    ]
    assert {line["event_id"] for line in posts} == {event_id, second_id, third_id}


def test_key_from_env_and_flag_and_errors(server: Server) -> None:
    wrong = run(server, "list", GUIDELINE_API_KEY="wrong-key")
    assert wrong.returncode == 2
    assert "HTTP 401 invalid_api_key" in wrong.stderr
    flag_beats_env = run(server, "list", "--api-key", ALICE_KEY, GUIDELINE_API_KEY="wrong-key")
    assert flag_beats_env.returncode == 0, flag_beats_env.stderr
    missing = run(server, "status", str(uuid.uuid4()))
    assert missing.returncode == 2 and "HTTP 404 not_found" in missing.stderr
    unreachable = run(server, "--url", f"http://127.0.0.1:{free_port()}", "list")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr


def test_batch_submits_a_corpus_and_is_safe_to_rerun(
    server: Server, database: db.Database, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(5):
        (corpus / f"g{n}.md").write_text(f"{GUIDELINE}\nSection {n}.")
    (corpus / "blank.md").write_text("   \n")
    files = sorted(str(p) for p in corpus.iterdir())
    first = run(server, "batch", *files, "--batch-size", "2", "--idempotency-key", "corpus-1")
    assert first.returncode == 2, first.stderr  # one file refused
    assert "blank.md: validation_error" in first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 5 and all(line.split()[1] == "PENDING" for line in lines)
    assert {Path(line.split()[2]).name for line in lines} == {f"g{n}.md" for n in range(5)}
    again = run(server, "batch", *files, "--batch-size", "2", "--idempotency-key", "corpus-1")
    assert again.stdout == first.stdout  # the same jobs: nothing submitted twice
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT title FROM jobs ORDER BY title")
        assert [r[0] for r in cur.fetchall()] == [f"g{n}" for n in range(5)]
