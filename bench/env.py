"""Everything the benchmarks run against, started by them and stopped at the end: the
local control plane (hack/cluster.sh, by default a private one in .local/bench), a
throw-away PostgreSQL (hack/pg_ctl.sh), a namespace with the runner's RBAC, the fake LLM
and the operator (the test suite's `support.stack.Stack`), and the API as a real uvicorn
server (`guideline-api`, a separate process)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from support.net import free_port

BIN = Path(sys.executable).parent
# Production-like operator periods (the test suite's Stack shortens them for speed).
OPERATOR_SETTINGS: dict[str, Any] = {
    "resync_interval_seconds": 30,
    "heartbeat_interval_seconds": 10,
    "log_level": "INFO",
}


def wait_http(url: str, timeout: float = 60.0, alive: Any = None) -> None:
    """Wait until `url` answers 200 (fail early if `alive()` turns false)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if alive is not None and not alive():
            raise RuntimeError(f"the process behind {url} exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.1)


class Process:
    """A server subprocess in its own session, its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], workdir: Path, cwd: Path
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL after `timeout`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever it left in its group


def base_env() -> dict[str, str]:
    """A minimal environment for child processes (no inherited GUIDELINE_* settings)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }


def start_detached_api(
    database_url: str, workdir: Path, key_hashes: str, **settings: str
) -> tuple[Process, str]:
    """`guideline-api` alone on a free port: its own database, no Kubernetes (a kubeconfig
    that answers nothing, the dispatcher off), no rate limit, `key_hashes` as its keys and
    `settings` (more GUIDELINE_* variables) on top. Returns the process and its base URL
    once it serves."""
    from support.api import dead_kubeconfig

    port = free_port()
    env = base_env() | {
        "GUIDELINE_DATABASE_URL": database_url,
        "GUIDELINE_HOST": "127.0.0.1",
        "GUIDELINE_PORT": str(port),
        "GUIDELINE_KUBECONFIG": str(dead_kubeconfig(workdir)),
        "GUIDELINE_DISPATCHER_ENABLED": "false",
        "GUIDELINE_API_KEY_HASHES": key_hashes,
        "GUIDELINE_RATE_LIMIT_PER_MINUTE": "0",
        "GUIDELINE_LOG_LEVEL": "WARNING",
        **settings,
    }
    api = Process("api", [str(BIN / "guideline-api")], env, workdir, workdir)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/health/live", alive=api.alive)
    return api, base


class Environment:
    """The stack under test. Use as a context manager; `close()` stops what it started."""

    def __init__(self, workdir: Path, private_cluster: bool, log: Any = print) -> None:
        self.workdir = workdir
        self.private_cluster = private_cluster
        self.log = log
        self.api_key = f"bench-{secrets.token_hex(16)}"
        self._exit = contextlib.ExitStack()
        self.cluster: Any = None
        self.pg: Any = None
        self.database_url = ""
        self.ops: Any = None  # support.stack.Stack
        self.api: Process | None = None
        # One port for every API process of the run: the runner pods fetch their documents
        # from it (the operator's runner_api_url), restarts included.
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self._kube: Any = None

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Environment:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        from support.cluster import LocalCluster
        from support.pg import PgServer
        from support.stack import DEFAULT_SCRIPT, Stack

        t0 = time.monotonic()
        self.log("starting the local control plane (hack/cluster.sh up) ...")
        self.cluster = LocalCluster.ensure_started()
        self._exit.callback(self._stop_cluster)
        self.log(
            f"  control plane ready in {time.monotonic() - t0:.0f} s "
            f"({'started' if self.cluster.started_here else 'already running'})"
        )
        self.pg = PgServer(self.workdir / "postgres")
        self.pg.start()
        self._exit.callback(self.pg.stop)
        self.database_url = self.pg.create_database("guideline")
        self.log(f"  PostgreSQL on port {self.pg.port}")
        self.ops = Stack(
            self.cluster,
            self.database_url,
            self.workdir / "operator",
            operator={**OPERATOR_SETTINGS, "runner_api_url": self.api_url},
            script=dict(DEFAULT_SCRIPT),
            prefix="bench",
        )
        self.ops.start()
        self._exit.callback(self._close_ops)
        self.stop_operator()
        self.log(f"  namespace {self.ops.namespace}, fake LLM at {self.ops.fake.base_url}")
        self.start_api()
        self.log(f"  API (uvicorn, pid {self.api.pid}) at {self.api_url}")

    def close(self) -> None:
        """Stop everything started here (in reverse order)."""
        if self._kube is not None:
            self._kube.api_client.close()
            self._kube = None
        self._exit.close()

    def _stop_cluster(self) -> None:
        if not self.cluster.started_here:
            return
        self.log("stopping the local control plane ...")
        if self.private_cluster:
            self.cluster.cluster_sh("down", "--purge", timeout=180)
        else:
            self.cluster.stop_if_started_here()

    def _close_ops(self) -> None:
        if self.private_cluster and self.cluster.started_here:
            # The whole control plane goes away: no need to delete objects one by one.
            for part in (self.ops.op, self.ops.fake):
                if part is not None:
                    part.stop()
            self.ops.op = self.ops.fake = None
            if self.ops.database is not None:
                self.ops.database.close()
            return
        self.ops.close()

    # --- the API server -------------------------------------------------------------------------

    def start_api(self, **overrides: str) -> None:
        """Start `guideline-api` on a free port with the bench's key and no limits
        (`overrides`: more GUIDELINE_* variables, e.g. GUIDELINE_DB_POOL_MIN="20")."""
        from guideline_api.auth import hash_key

        port = self.api_port
        env = base_env() | {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "GUIDELINE_DATABASE_URL": self.database_url,
            "GUIDELINE_NAMESPACE": self.ops.namespace,
            "GUIDELINE_HOST": "127.0.0.1",
            "GUIDELINE_PORT": str(port),
            "GUIDELINE_API_KEY_HASHES": f"bench:{hash_key(self.api_key)}",
            "GUIDELINE_RATE_LIMIT_PER_MINUTE": "0",
            "GUIDELINE_MAX_PENDING_JOBS": "10000000",
            "GUIDELINE_TENANT_MAX_PENDING_JOBS": "10000000",
            "GUIDELINE_LOG_LEVEL": "INFO",
            **overrides,
        }
        self.api = Process("api", [str(BIN / "guideline-api")], env, self.workdir, self.workdir)
        self._exit.callback(self.api.stop)  # a restarted API's earlier process is stopped already
        wait_http(f"{self.api_url}/health/live", alive=self.api.alive)

    def restart_api(self, **overrides: str) -> None:
        """Stop the API server and start a new one (other settings)."""
        if self.api is not None:
            self.api.stop()
        self.start_api(**overrides)

    @property
    def headers(self) -> dict[str, str]:
        """Authorization and content type of the bench's requests."""
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    # --- the operator and the fake LLM ----------------------------------------------------------

    def start_operator(self, **overrides: Any) -> None:
        """(Re)start the operator with these settings over OPERATOR_SETTINGS."""
        self.stop_operator()
        self.ops.start_operator(**overrides)

    def stop_operator(self) -> None:
        """Stop the operator (SIGTERM) if it runs."""
        if self.ops.op is not None:
            self.ops.op.stop()
            self.ops.op = None

    @property
    def operator_pid(self) -> int | None:
        return self.ops.op.pid if self.ops.op is not None else None

    def set_llm(self, latency: float) -> None:
        """The fake LLM answers every call after `latency` seconds."""
        from support.stack import DEFAULT_SCRIPT

        self.ops.fake.set_script({**DEFAULT_SCRIPT, "latency": latency})

    # --- Kubernetes and database housekeeping ---------------------------------------------------

    @property
    def kube(self) -> Any:
        """A CustomObjectsApi on the cluster (admin)."""
        if self._kube is None:
            from kubernetes import client, config

            cfg = client.Configuration()
            config.load_kube_config(
                config_file=str(self.cluster.kubeconfig), client_configuration=cfg
            )
            cfg.connection_pool_maxsize = 40
            self._kube = client.CustomObjectsApi(client.ApiClient(cfg))
        return self._kube

    def count_guidelinejobs(self) -> int:
        """GuidelineJobs in the namespace."""
        from guideline_core import resource as gj

        total, token = 0, None
        while True:
            page = self.kube.list_namespaced_custom_object(
                gj.GROUP, gj.VERSION, self.ops.namespace, gj.PLURAL, limit=500, _continue=token
            )
            total += len(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return total

    def wait_for_dispatch(self, timeout: float = 300) -> None:
        """Wait until the API's dispatcher has created the GuidelineJob of every row it
        accepted (a GuidelineJob created after a reset's delete would outlive it)."""
        from guideline_core import db

        database = db.Database(self.database_url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                with database.connection() as conn, conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM jobs WHERE dispatch_pending")
                    pending = int(cur.fetchone()[0])
                if not pending:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{pending} rows not dispatched within {timeout:g} s")
                time.sleep(0.5)
        finally:
            database.close()

    def reset(self) -> None:
        """Delete every GuidelineJob (and so its Jobs and pods) and empty the tables, once
        the dispatcher has created every GuidelineJob it owes."""
        from guideline_core import resource as gj

        self.wait_for_dispatch()
        ns = self.ops.namespace
        finalized = any(
            item["metadata"].get("finalizers")
            for item in self.kube.list_namespaced_custom_object(
                gj.GROUP, gj.VERSION, ns, gj.PLURAL, limit=50
            )["items"]
        )
        self.kube.delete_collection_namespaced_custom_object(
            gj.GROUP, gj.VERSION, ns, gj.PLURAL, _request_timeout=600
        )
        helper = finalized and self.ops.op is None
        if helper:
            # An earlier operator's finalizers: only an operator releases them (every
            # object is being deleted now, so it starts no work).
            self.ops.start_operator()
        deadline = time.monotonic() + 600
        while self.count_guidelinejobs():
            if time.monotonic() > deadline:
                raise TimeoutError("GuidelineJobs not deleted within 600 s")
            time.sleep(0.5)
        if helper:
            self.stop_operator()
        self.ops.kubectl("delete", "jobs", "--all", "--wait=false")
        self.ops.kubectl("delete", "pods", "--all", "--wait=false", "--grace-period=0")
        from guideline_core import db

        database = db.Database(self.database_url)
        try:
            with database.connection() as conn, conn.cursor() as cur:
                cur.execute("TRUNCATE jobs, job_events CASCADE")
                cur.execute("ANALYZE jobs")
        finally:
            database.close()

    def db_counts(self) -> dict[str, int]:
        """Rows per status."""
        from guideline_core import db

        database = db.Database(self.database_url)
        try:
            with database.connection() as conn:
                return db.count_by_status(conn)
        finally:
            database.close()

    def write_json(self, name: str, data: Any) -> Path:
        """Keep a raw data file in the work directory."""
        path = self.workdir / name
        path.write_text(json.dumps(data, default=str, indent=1))
        return path
