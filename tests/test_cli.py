"""`guideline-client` as its console script against a real `guideline-api` process on
PostgreSQL (no cluster: the test writes job states as the operator would): -o table|json|
yaml, shell completion (--version: tests/test_version.py), and `wait` / `submit --wait`
following the event stream through a killed and restarted API, a dropped connection and
503s, and Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from guideline_core import db
from guideline_core.resource import Phase
from support.api import ApiProcess, auth, submit
from support.cli import CliProcess, run_cli
from support.documents import guideline as guideline_document
from support.proxy import TcpProxy
from support.rows import mirror

SETTINGS = {"GUIDELINE_SSE_HEARTBEAT_SECONDS": "0.5"}
DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture(scope="module")
def api(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    server = ApiProcess(postgres_url, tmp_path_factory.mktemp("cli-api"), **SETTINGS).start()
    yield server
    server.stop()


@pytest.fixture
def guideline(tmp_path: Path) -> Path:
    path = tmp_path / "hand-hygiene.md"
    path.write_text("Staff must wash hands before each patient.\n")
    return path


def test_completion_scripts(tmp_path: Path) -> None:
    bash = run_cli("http://127.0.0.1:9", "completion", "bash")
    assert bash.returncode == 0
    script = tmp_path / "guideline-client.bash"
    script.write_text(bash.stdout)
    subprocess.run(["bash", "-n", str(script)], check=True)
    # Sourced, it registers a completion for the command, which offers the verbs.
    probe = subprocess.run(
        [
            "bash",
            "-c",
            f"source {script}; complete -p guideline-client; "
            "COMP_WORDS=(guideline-client wa); COMP_CWORD=1; COMP_LINE='guideline-client wa'; "
            'COMP_POINT=${#COMP_LINE}; _shtab_guideline_client; echo "${COMPREPLY[@]}"',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "guideline-client" in probe.stdout.splitlines()[0]
    assert probe.stdout.splitlines()[-1].split() == ["wait"]
    zsh = run_cli("http://127.0.0.1:9", "completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef guideline-client")
    assert run_cli("http://127.0.0.1:9", "completion", "fish").returncode == 2


def test_every_verb_that_prints_a_job_or_a_list_speaks_json_and_yaml(
    api: ApiProcess, database: db.Database, guideline: Path
) -> None:
    submitted = run_cli(api.url, "submit", str(guideline), "-o", "json")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    event_id = job["event_id"]
    assert job["status"] == "PENDING" and job["title"] == "hand-hygiene"

    served = httpx.get(f"{api.url}/jobs/{event_id}", headers=auth()).json()
    as_yaml = run_cli(api.url, "status", event_id, "-o", "yaml")
    assert yaml.safe_load(as_yaml.stdout) == served
    assert json.loads(run_cli(api.url, "-o", "json", "status", event_id).stdout) == served
    assert json.loads(run_cli(api.url, "status", event_id, "--json").stdout) == served
    assert f"Job {event_id}: PENDING" in run_cli(api.url, "status", event_id).stdout

    shown = yaml.safe_load(run_cli(api.url, "show", event_id, "-o", "yaml").stdout)
    assert shown["guideline_text"] == "Staff must wash hands before each patient.\n"
    refused = run_cli(api.url, "show", event_id, "-o", "xml")
    assert refused.returncode == 2 and "choose table, json or yaml" in refused.stderr

    page = yaml.safe_load(run_cli(api.url, "list", "-o", "yaml").stdout)
    assert [item["event_id"] for item in page["items"]] == [event_id]
    batch = json.loads(run_cli(api.url, "batch", str(guideline), "-o", "json").stdout)
    assert batch["items"][0]["status"] == "PENDING"

    cancelled = yaml.safe_load(run_cli(api.url, "cancel", event_id, "-o", "yaml").stdout)
    assert cancelled["status"] == "CANCELLED"
    retried = json.loads(run_cli(api.url, "retry", event_id, "-o", "json").stdout)
    assert retried["status"] == "PENDING"

    mirror(database, event_id, Phase.COMPLETED, 1, run=1, result={"summary": "Wash."})
    waited = run_cli(api.url, "wait", event_id, "-o", "yaml")
    assert waited.returncode == 0, waited.stderr
    # The result as the API shows it: with usage.cost (null: no model, no price) and the
    # submitted text's document (tests/test_api_hygiene.py).
    assert yaml.safe_load(waited.stdout)["result"] == {
        "summary": "Wash.",
        "usage": {"cost": None},
        "document": served["document"],
    }
    assert run_cli(api.url, "list", "-o", "csv").returncode == 2


def test_submit_wait_prints_the_event_id_then_progress_then_the_result(
    api: ApiProcess, database: db.Database, guideline: Path
) -> None:
    cli = CliProcess(api.url, "submit", str(guideline), "--wait", "-o", "json")
    try:
        first = cli.expect("submitted ")
        event_id = first.split()[1].rstrip(";")
        assert "Ctrl-C stops waiting, not the job" in first
        assert cli.expect("PENDING").startswith(f"{event_id}: PENDING | attempt 0 | queue position")
        mirror(database, event_id, Phase.PROCESSING, 1)
        cli.expect("PROCESSING | attempt 1")
        mirror(database, event_id, Phase.PROCESSING, 2)
        cli.expect("PROCESSING | attempt 2")
        mirror(
            database,
            event_id,
            Phase.FAILED,
            2,
            error={"reason": "LLMRejected", "message": "no"},
            reason="LLMRejected",
        )
        code, stdout = cli.finish()
    finally:
        cli.kill()
    assert code == 1  # FAILED
    job = json.loads(stdout)
    assert (job["event_id"], job["status"]) == (event_id, "FAILED")
    assert job["error"]["reason"] == "LLMRejected"


def test_wait_shows_the_runners_progress(api: ApiProcess, database: db.Database) -> None:
    event_id = submit(api.url)
    cli = CliProcess(api.url, "wait", event_id, "--timeout", "120")
    try:
        cli.expect("PENDING")
        mirror(database, event_id, Phase.PROCESSING, 1)
        cli.expect("PROCESSING | attempt 1")
        counts = {"sections_done": 1, "sections_total": 4, "calls_done": 5, "calls_total": 9}
        with database.connection() as conn:
            assert db.mirror_progress(conn, uuid.UUID(event_id), 0, counts)
        line = cli.expect("sections 1/4")
        assert "PROCESSING | attempt 1 | sections 1/4, calls 5/9 |" in line
        mirror(database, event_id, Phase.COMPLETED, 1, result={"summary": "Wash hands."})
        code, _ = cli.finish()
    finally:
        cli.kill()
    assert code == 0


def test_wait_survives_a_killed_and_restarted_api(
    postgres_url: str, database: db.Database, tmp_path: Path
) -> None:
    api = ApiProcess(postgres_url, tmp_path / "api", **SETTINGS).start()
    try:
        event_id = submit(api.url)
        cli = CliProcess(api.url, "wait", event_id, "--timeout", "120")
        try:
            assert cli.expect("waiting for ") == (
                f"waiting for {event_id} (Ctrl-C stops waiting, not the job)"
            )
            cli.expect("PENDING")
            api.kill()  # a crash mid-wait: the stream breaks, nothing says goodbye
            cli.expect("reconnecting")
            mirror(database, event_id, Phase.PROCESSING, 1)  # while no API runs
            api.start()  # the same port
            cli.expect("PROCESSING | attempt 1")
            mirror(database, event_id, Phase.COMPLETED, 1, result={"summary": "Wash hands."})
            code, stdout = cli.finish()
        finally:
            cli.kill()
    finally:
        api.stop()
    assert code == 0, cli.stderr_lines
    assert f"Job {event_id}: COMPLETED" in stdout and "Wash hands." in stdout


def test_wait_survives_dropped_connections_and_503s(api: ApiProcess, database: db.Database) -> None:
    proxy = TcpProxy(api.port)
    try:
        event_id = submit(api.url)
        cli = CliProcess(proxy.url, "wait", event_id, "--timeout", "120")
        try:
            cli.expect("PENDING")
            proxy.unavailable = True  # new requests get a 503 ...
            assert proxy.drop_connections() >= 2  # ... and the stream is cut
            cli.expect("reconnecting")
            cli.expect("(HTTP 503)")
            mirror(database, event_id, Phase.PROCESSING, 1)
            proxy.unavailable = False
            cli.expect("PROCESSING | attempt 1")
            proxy.drop_connections()
            mirror(database, event_id, Phase.CANCELLED, 1, reason="Cancelled")
            code, stdout = cli.finish()
        finally:
            cli.kill()
    finally:
        proxy.close()
    assert code == 1, cli.stderr_lines
    assert f"Job {event_id}: CANCELLED" in stdout
    # Each state was shown once: resuming with Last-Event-ID repeats nothing.
    progress = [line for line in cli.stderr_lines if line.startswith(event_id)]
    states = [line.split(": ", 1)[1].split(" | ")[0] for line in progress]
    assert [s for n, s in enumerate(states) if n == 0 or states[n - 1] != s] == [
        "PENDING",
        "PROCESSING",
        "CANCELLED",
    ]


def test_ctrl_c_stops_waiting_not_the_job(api: ApiProcess) -> None:
    event_id = submit(api.url)
    cli = CliProcess(api.url, "wait", event_id)
    try:
        cli.expect("PENDING")
        cli.interrupt()
        code, _ = cli.finish()
    finally:
        cli.kill()
    assert code == 130
    said = "\n".join(cli.stderr_lines)
    assert f"job {event_id} keeps running" in said
    assert f"guideline-client wait {event_id}" in said
    assert httpx.get(f"{api.url}/jobs/{event_id}", headers=auth()).json()["status"] == "PENDING"


def test_usr1_dumps_every_threads_stack_and_the_wait_goes_on(api: ApiProcess) -> None:
    # How a hung client is diagnosed (tests/support/cli.py does it on a timeout).
    cli = CliProcess(api.url, "wait", submit(api.url))
    try:
        cli.expect("PENDING")
        cli.proc.send_signal(signal.SIGUSR1)
        cli.expect("most recent call first")
        cli.expect("guideline_client/follow.py")  # a frame of the wait, in the dump
        assert cli.proc.poll() is None
    finally:
        cli.kill()


def test_wait_times_out_with_exit_3_and_a_missing_job_is_exit_2(api: ApiProcess) -> None:
    event_id = submit(api.url)
    timed_out = run_cli(api.url, "wait", event_id, "--timeout", "1")
    assert timed_out.returncode == 3
    assert "keeps running" in timed_out.stderr
    assert f"Job {event_id}: PENDING" in timed_out.stdout
    missing = run_cli(api.url, "wait", str(uuid.uuid4()))
    assert missing.returncode == 2 and "HTTP 404 not_found" in missing.stderr


def test_submit_passes_the_callback_url_and_shows_why_one_is_refused(
    api: ApiProcess, guideline: Path
) -> None:
    # This API does not allow private targets (GUIDELINE_WEBHOOK_ALLOW_PRIVATE unset).
    refused = run_cli(api.url, "submit", str(guideline), "--callback-url", "http://127.0.0.1:9/h")
    assert refused.returncode == 2, refused.stderr
    assert "callback_url_refused" in refused.stderr
    batch = run_cli(
        api.url, "batch", str(guideline), "--callback-url", "http://169.254.169.254/h", "-o", "json"
    )
    assert "callback_url_refused" in batch.stdout + batch.stderr, (batch.stdout, batch.stderr)


def test_submit_and_batch_upload_documents_of_any_type(api: ApiProcess, tmp_path: Path) -> None:
    """The file goes as it is (multipart); the API tells its type by content, whatever its
    name."""
    pdf = guideline_document("nist-sp800-63b-authentication", ".pdf")
    renamed = tmp_path / "proofing.bin"
    renamed.write_bytes(
        guideline_document("nist-sp800-63a-identity-proofing", ".docx").read_bytes()
    )
    submitted = run_cli(api.url, "submit", str(pdf), "-o", "json")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["title"] == "nist-sp800-63b-authentication"
    assert job["document"]["media_type"] == "application/pdf"
    assert job["document"]["sha256"] == hashlib.sha256(pdf.read_bytes()).hexdigest()

    batch = json.loads(run_cli(api.url, "batch", str(pdf), str(renamed), "-o", "json").stdout)
    media = [
        httpx.get(f"{api.url}/v1/jobs/{item['event_id']}", headers=auth()).json()["document"][
            "media_type"
        ]
        for item in batch["items"]
    ]
    assert media == ["application/pdf", DOCX_MEDIA_TYPE]

    png = tmp_path / "scan.pdf"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    refused = run_cli(api.url, "submit", str(png))
    assert refused.returncode == 2 and "unsupported_media_type" in refused.stderr
