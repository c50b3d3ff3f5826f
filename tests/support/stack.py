"""The operator side of the stack for end-to-end tests: a fresh namespace on the local
control plane with the runner's ServiceAccount and RBAC, the OpenAI Secret and the runner
ConfigMap pointing at a fake LLM server process (listening where the runner pods reach
it: `LocalCluster.pod_host`), and `guideline-operator --standalone` running as a
subprocess against the test database.

    with Stack(cluster, postgres_url, tmp_path, operator={"max_concurrent_jobs": 2}) as stack:
        job = stack.submit("Staff must wash hands.")           # as the API does
        done = stack.wait_for_phase(job["metadata"]["name"], "COMPLETED")

`operator` settings are `OperatorSettings` field names (lower case, without the
GUIDELINE_ prefix; on the real node the runner image defaults to `make image`'s, never
pulled); `operator_args` replace `--standalone` on its command line;
`runner` entries become keys of the runner ConfigMap (env names); `env` entries are added
as they are to the operator's environment (e.g. OTEL_*); `script` is the fake LLM's
initial script (see support.fake_llm).
Leaving the block deletes the GuidelineJobs while the operator still runs (it holds a
finalizer on them), stops the operator and the fake, and deletes the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guideline_core import db
from guideline_core import resource as gj
from support.cluster import REPO_ROOT, LocalCluster, wait_for
from support.fake_llm import FakeLLMProcess
from support.net import free_port

RUNNER_RBAC = REPO_ROOT / "hack" / "manifests" / "runner-rbac.yaml"
OPERATOR_BIN = str(Path(sys.executable).parent / "guideline-operator")
# Put in the Secret the runner pods get: tests check it never shows up anywhere else.
OPENAI_TEST_KEY = "sk-test-e2e-OPERATOR-NOTAREALKEY-7f3a91"
FAKE_SUMMARY = "Fake summary: staff must wash hands before and after every patient contact."
FAKE_CHECKLIST = [
    {
        "item": "Wash hands before every patient contact",
        "priority": "high",
        "category": "hygiene",
        "quote": "Staff must wash hands",
    },
    {
        "item": "Audit hand hygiene monthly",
        "priority": "medium",
        "category": "monitoring",
        "quote": "audit hand hygiene every month",
    },
]
DEFAULT_SCRIPT: dict[str, Any] = {"summary": FAKE_SUMMARY, "checklist": FAKE_CHECKLIST}
DEFAULT_RUNNER_ENV = {
    "GUIDELINE_PROVIDER": "openai",
    "GUIDELINE_MODEL": "fake-model",
    "GUIDELINE_SDK_MAX_RETRIES": "1",
    "GUIDELINE_REQUEST_TIMEOUT_SECONDS": "20",
    "GUIDELINE_SOFT_TIMEOUT_SECONDS": "60",
}
DEFAULT_OPERATOR = {
    "resync_interval_seconds": 3,
    "heartbeat_interval_seconds": 2,
    "log_level": "INFO",
}


@dataclass
class OperatorProcess:
    """One `guideline-operator` subprocess and its JSON log file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int
    liveness_port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (kopf's graceful stop), then SIGKILL after `timeout`; the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all (a crash)."""
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)

    def log_text(self) -> str:
        """Everything the operator wrote (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines, decoded (other lines skipped)."""
        records = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def metrics(self) -> str:
        """The Prometheus text exposition of the operator."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def healthy(self) -> bool:
        """True once kopf's liveness endpoint answers 200."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2
            ) as response:
                return response.status == 200
        except OSError:
            return False


@dataclass
class Stack:
    """A namespace served by its own operator, with its own fake LLM (see module docs)."""

    cluster: LocalCluster
    database_url: str
    workdir: Path
    operator: dict[str, Any] = field(default_factory=dict)
    runner: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    script: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SCRIPT))
    prefix: str = "t-op"
    operator_args: tuple[str, ...] = ()
    namespace: str = ""
    fake: FakeLLMProcess | None = None
    op: OperatorProcess | None = None
    others: list[OperatorProcess] = field(default_factory=list)
    database: db.Database | None = None
    # The port of the API these pods fetch their job's text from (`api_server`): the
    # operator's `runner_api_url` points there unless `operator` says otherwise.
    api_port: int = field(default_factory=free_port)
    _generation: int = 0

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Stack:
        """Namespace, RBAC, Secret, fake LLM, ConfigMap and the operator."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database = db.Database(self.database_url)
        self.namespace = self.cluster.create_namespace(self.prefix)
        # Served by an operator: admission adds its finalizer at creation (one write less).
        self.cluster.kubectl("label", "namespace", self.namespace, f"{gj.GROUP}/operator=enabled")
        self.kubectl("apply", "-f", str(RUNNER_RBAC))
        self.kubectl(
            "create",
            "secret",
            "generic",
            "guideline-openai",
            f"--from-literal=api-key={OPENAI_TEST_KEY}",
        )
        # Where the runner pods reach it (on the real node a pod's loopback is its own).
        self.fake = FakeLLMProcess(self.script, host=self.cluster.pod_host)
        self.set_runner_config()
        self.start_operator(*self.operator_args)
        return self

    def close(self) -> None:
        """Delete the GuidelineJobs (while the operator can release them), stop
        everything, delete the namespace. Safe to call twice."""
        if self.namespace:
            with contextlib.suppress(Exception):
                self._delete_all_guidelinejobs()
            with contextlib.suppress(Exception):
                self.cluster.delete_namespace(self.namespace)
            self.namespace = ""
        for other in self.others:
            other.stop()
        self.others = []
        if self.op is not None:
            self.op.stop()
            self.op = None
        if self.fake is not None:
            self.fake.stop()
            self.fake = None
        if self.database is not None:
            self.database.close()
            self.database = None

    def _delete_all_guidelinejobs(self) -> None:
        if self.op is None or not self.op.alive():
            self.start_operator()
        self.kubectl("delete", gj.PLURAL, "--all", "--wait=false")
        try:
            wait_for(
                lambda: not self.cluster.get_json(gj.PLURAL, "-n", self.namespace)["items"],
                timeout=60,
                message="GuidelineJobs deleted",
            )
        except TimeoutError:  # the operator could not release them
            self.cluster.release_guidelinejobs(self.namespace)

    def operator_env(self, **overrides: Any) -> dict[str, str]:
        """The operator's environment: GUIDELINE_* settings from scratch (no inherited
        variables, no .env), KUBECONFIG, the test database and the stack's `env`."""
        node = {}
        if self.cluster.real_node:  # `make image`'s image, imported into the node, never pulled
            node = {"runner_image": self.cluster.pod_image(), "runner_image_pull_policy": "Never"}
        api = {"runner_api_url": self.runner_api_url}
        settings = {**DEFAULT_OPERATOR, **node, **api, **self.operator, **overrides}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "GUIDELINE_DATABASE_URL": self.database_url,
            "GUIDELINE_NAMESPACE": self.namespace,
            **self.env,
        }
        for key, value in settings.items():
            env[f"GUIDELINE_{key.upper()}"] = (
                json.dumps(value) if isinstance(value, list | dict) else str(value)
            )
        return env

    @property
    def runner_api_url(self) -> str:
        """Where this stack's runner pods reach `api_server` (pods have their own loopback
        on the real node: the host's `pod_host`)."""
        return f"http://{self.cluster.pod_host}:{self.api_port}"

    @contextlib.contextmanager
    def api_server(self, **overrides: Any) -> Iterator[str]:
        """The real API (uvicorn, in this process) in front of this stack, where its runner
        pods fetch their job's document: `make_settings` for the namespace plus
        `overrides`. Yields its base URL."""
        from support.api import make_settings, running_server

        settings = make_settings(
            self.database_url, self.cluster.kubeconfig, namespace=self.namespace, **overrides
        )
        with running_server(settings, host=self.cluster.pod_host, port=self.api_port) as url:
            yield url

    def start_operator(self, *args: str, keep: bool = False, **overrides: Any) -> OperatorProcess:
        """Start `guideline-operator --standalone` (or with `args` instead) and wait until
        kopf's liveness endpoint answers. It becomes `op`; with `keep`, the previous `op`
        keeps running (in `others`: replicas for peering tests)."""
        self._generation += 1
        metrics_port, liveness_port = free_port(), free_port()
        env = self.operator_env(**overrides)
        env.update(
            GUIDELINE_METRICS_PORT=str(metrics_port), GUIDELINE_LIVENESS_PORT=str(liveness_port)
        )
        log_path = self.workdir / f"operator-{self.namespace}-{self._generation}.log"
        log_file = log_path.open("ab")
        proc = subprocess.Popen(
            [OPERATOR_BIN, *(args or ("--standalone",))],
            env=env,
            cwd=self.workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        op = OperatorProcess(proc, log_path, metrics_port, liveness_port)
        if keep and self.op is not None:
            self.others.append(self.op)
        self.op = op
        try:
            wait_for(
                lambda: op.healthy() or not op.alive(), timeout=60, message="operator liveness"
            )
        except TimeoutError:
            op.kill()
            raise
        if not op.alive():
            raise RuntimeError(f"the operator exited at start-up:\n{op.log_text()[-4000:]}")
        return op

    def restart_operator(self, *, kill: bool = True, **overrides: Any) -> OperatorProcess:
        """SIGKILL (or SIGTERM) the operator and start a new one."""
        assert self.op is not None
        if kill:
            self.op.kill()
        else:
            self.op.stop()
        return self.start_operator(**overrides)

    # --- configuration ------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl in the stack's namespace."""
        return self.cluster.kubectl("-n", self.namespace, *args, input=input)

    def enable_chunk_cache(self, url: str | None = None) -> None:
        """Create the Secret whose `database-url` the runner pods get as
        GUIDELINE_CACHE_DATABASE_URL (default: the test database's URL)."""
        self.kubectl(
            "create",
            "secret",
            "generic",
            "guideline-runner-cache",
            f"--from-literal={gj.CACHE_SECRET_KEY}={url or self.database_url}",
        )

    def set_runner_config(self, **env: str) -> None:
        """(Re)write the runner ConfigMap: the fake's URL, DEFAULT_RUNNER_ENV, the stack's
        `runner` entries, then `env`. New pods see it; running ones keep theirs."""
        assert self.fake is not None
        data = {
            **DEFAULT_RUNNER_ENV,
            "OPENAI_BASE_URL": self.fake.base_url,
            **self.runner,
            **env,
        }
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "guideline-runner-config", "namespace": self.namespace},
            "data": {k: str(v) for k, v in data.items()},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    # --- submitting and reading jobs -------------------------------------------------------------

    def submit(
        self,
        text: str = "Staff must wash hands.",
        event_id: uuid.UUID | None = None,
        *,
        tenant: str = "e2e",
        record: bool = True,
        annotations: dict[str, str] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """Submit as the API and its dispatcher do: commit the row (PENDING), create the CR
        named `gj-<event_id>` (event-id and tenant labels), then record its uid in the row
        (unless not `record`: the dispatcher has not got that far). An existing row (a CR
        re-created after retention) is left as it is. Returns the CR."""
        event_id = event_id or gj.new_event_id()
        [created] = self.submit_many(
            [text], tenant=tenant, record=record, annotations=annotations, event_ids=[event_id],
            **spec,
        )  # fmt: skip
        return created

    def submit_many(
        self,
        texts: list[str],
        *,
        tenant: str = "e2e",
        record: bool = True,
        annotations: dict[str, str] | None = None,
        event_ids: list[uuid.UUID] | None = None,
        **spec: Any,
    ) -> list[dict[str, Any]]:
        """`submit` for many texts at once: one transaction, one `kubectl create`."""
        assert self.database is not None
        event_ids = event_ids or [gj.new_event_id() for _ in texts]
        manifests = []
        with self.database.connection() as conn:
            for event_id, text in zip(event_ids, texts, strict=True):
                name = gj.cr_name_for(event_id)
                db.insert_job(
                    conn,
                    db.NewJob(
                        event_id=event_id,
                        namespace=self.namespace,
                        guideline_text=text,
                        cr_name=name,
                        title=spec.get("title"),
                        model=spec.get("model"),
                        submitted_by="e2e",
                        tenant=tenant,
                        max_retries=spec.get("max_retries"),
                        dispatch_pending=True,
                    ),
                )
                manifests.append(
                    gj.guideline_job_manifest(
                        event_id=event_id,
                        guideline_text=text,
                        submitted_by="e2e",
                        tenant=tenant,
                        annotations=annotations,
                        **spec,
                    )
                )
        created = [
            item
            for doc in self.cluster.create(manifests, namespace=self.namespace)
            for item in doc.get("items", [doc])
        ]
        if record:
            for event_id, body in zip(event_ids, created, strict=True):
                self.record(event_id, body)
        return list(created)

    def record(self, event_id: uuid.UUID, created: dict[str, Any]) -> None:
        """Record a created CR in its row, as the dispatcher does."""
        assert self.database is not None
        with self.database.connection() as conn:
            row = db.get_job(conn, event_id)
            assert row is not None
            db.finish_dispatch(
                conn,
                event_id,
                row["dispatch_seq"],
                cr_name=created["metadata"]["name"],
                cr_uid=created["metadata"]["uid"],
            )

    def create_unrecorded(
        self, name: str, text: str = "Staff must wash hands.", **spec: Any
    ) -> dict[str, Any]:
        """Create a GuidelineJob as `kubectl create` would: a fixed name, no label, no row."""
        manifest = {
            "apiVersion": gj.API_VERSION,
            "kind": gj.KIND,
            "metadata": {"name": name},
            "spec": {"guidelineText": text, **spec},
        }
        return self.cluster.create(manifest, namespace=self.namespace)

    def get(self, name: str) -> dict[str, Any]:
        """A GuidelineJob."""
        return self.cluster.get_json(gj.PLURAL, name, "-n", self.namespace)

    def try_get(self, name: str) -> dict[str, Any] | None:
        """A GuidelineJob, or None if it does not exist."""
        return self.cluster.try_get_json(gj.PLURAL, name, "-n", self.namespace)

    def status(self, name: str) -> dict[str, Any]:
        """A GuidelineJob's status."""
        return self.get(name).get("status") or {}

    def wait_for_phase(self, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the GuidelineJob is in one of `phases`; returns it."""

        def reached() -> dict[str, Any] | None:
            body = self.try_get(name)
            if body and (body.get("status") or {}).get("phase") in phases:
                return body
            return None

        return wait_for(reached, timeout=timeout, interval=0.3, message=f"{name} in {phases}")

    def jobs_of(self, name: str) -> list[dict[str, Any]]:
        """The batch/v1 Jobs of a GuidelineJob."""
        selector = f"{gj.LABEL_JOB_NAME}={name}"
        return list(self.cluster.get_json("jobs", "-n", self.namespace, "-l", selector)["items"])

    def pods_of(self, name: str) -> list[dict[str, Any]]:
        """The runner pods of a GuidelineJob (all its Jobs)."""
        return self.cluster.pods(self.namespace, f"{gj.LABEL_JOB_NAME}={name}")

    def events_of(self, name: str) -> list[dict[str, Any]]:
        """Kubernetes Events about a GuidelineJob, oldest first."""
        items = self.cluster.get_json(
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name},involvedObject.kind={gj.KIND}",
        )["items"]
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def annotate(self, name: str, key: str, value: str) -> None:
        """Set an annotation on a GuidelineJob (as the API does for cancel / retry)."""
        self.kubectl("annotate", "--overwrite", gj.PLURAL, name, f"{key}={value}")

    def cancel(self, name: str) -> None:
        """Request cancellation, as `DELETE /jobs/{event_id}` does."""
        self.annotate(
            name, gj.ANNOTATION_CANCEL_REQUESTED, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        )

    def retry(self, name: str, n: int) -> None:
        """Request retry number `n`, as `POST /jobs/{event_id}/retry` does."""
        self.annotate(name, gj.ANNOTATION_RETRY_REQUESTED, str(n))

    def row(self, event_id: str) -> dict[str, Any] | None:
        """The job's database row."""
        assert self.database is not None
        with self.database.connection() as conn:
            return db.get_job(conn, uuid.UUID(event_id))

    def history(self, event_id: str) -> list[dict[str, Any]]:
        """The job's status history in the database."""
        assert self.database is not None
        with self.database.connection() as conn:
            return db.job_history(conn, uuid.UUID(event_id))


class PodWatch:
    """Watches the runner pods of a namespace (`kubectl get pods --watch`) and records how
    many ran at the same time, and in which order they started."""

    def __init__(self, cluster: LocalCluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace
        self.running: set[str] = set()
        self.max_running = 0
        self.started: list[str] = []  # pod names, in the order they were first seen running
        self.events = 0
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> PodWatch:
        cmd = [
            str(self.cluster.kubectl_path),
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            "-n",
            self.namespace,
            "get",
            "pods",
            "--watch",
            "-o",
            "json",
            "-l",
            f"{gj.LABEL_MANAGED_BY}={gj.MANAGED_BY_OPERATOR}",
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
        if self._thread is not None:
            self._thread.join(10)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                self._observe(obj)

    def _observe(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        statuses = pod.get("status", {}).get("containerStatuses") or []
        running = pod.get("status", {}).get("phase") == "Running" and any(
            "running" in (s.get("state") or {}) for s in statuses
        )
        with self._lock:
            self.events += 1
            if running:
                if name not in self.running and name not in self.started:
                    self.started.append(name)
                self.running.add(name)
            else:
                self.running.discard(name)
            self.max_running = max(self.max_running, len(self.running))


@contextlib.contextmanager
def running_stack(
    cluster: LocalCluster, database_url: str, workdir: Path, **options: Any
) -> Iterator[Stack]:
    """`Stack(...)` as a context manager function (options: operator, runner, script,
    prefix)."""
    with Stack(cluster, database_url, workdir, **options) as stack:
        yield stack
