"""Helpers for the API tests: settings, API keys, an in-process client, a real uvicorn
server on a free port and a client of it, reading a problem, and kubeconfigs of a live or a
dead Kubernetes API. The clients made here check every response against the served OpenAPI
document (support.contract)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi.testclient import TestClient
from guideline_api.app import create_app
from guideline_api.auth import hash_key
from guideline_api.main import uvicorn_config
from guideline_core import db
from guideline_core.settings import ApiSettings
from support.cluster import wait_for
from support.contract import checked
from support.net import free_port

ALICE_KEY = "alice-test-key-0123456789abcdef"
BOB_KEY = "bob-test-key-fedcba9876543210"
# A second member of alice's tenant, and an admin (of tenant `ops`, seeing every tenant).
ALICE2_KEY = "alice2-test-key-00112233445566"
ADMIN_KEY = "admin-test-key-99887766554433"
KEY_HASHES = ",".join(
    [
        f"alice:{hash_key(ALICE_KEY)}",
        f"bob:{hash_key(BOB_KEY)}",
        f"alice2:{hash_key(ALICE2_KEY)}:alice:member",
        f"root:{hash_key(ADMIN_KEY)}:ops:admin",
    ]
)

# The text of a job whose text does not matter.
SHORT_TEXT = "Staff must wash hands."


def auth(key: str = ALICE_KEY) -> dict[str, str]:
    """The Authorization header for `key`."""
    return {"Authorization": f"Bearer {key}"}


def post_job(
    api: httpx.Client | str,
    text: str = SHORT_TEXT,
    *,
    key: str = ALICE_KEY,
    path: str = "/jobs",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    """POST `text` (and `fields` of the body) to `path` as `key`, with `headers` besides the
    Authorization; `api` is a client (in-process or HTTP) or the base URL of a running API.
    The answer, whatever it is."""
    body = {"guideline_text": text, **fields}
    sent = {**auth(key), **(headers or {})}
    if isinstance(api, str):
        return httpx.post(f"{api}{path}", json=body, headers=sent)
    return api.post(path, json=body, headers=sent)


def submit(api: httpx.Client | str, text: str = SHORT_TEXT, **options: Any) -> str:
    """A job submitted with `post_job` (its `key`, `path`, `headers` and body fields), which
    must be accepted (202); its event_id."""
    response = post_job(api, text, **options)
    assert response.status_code == 202, response.text
    return response.json()["event_id"]


def keys_cli(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`guideline-api keys ...` run as the console script (a child process)."""
    script = Path(sys.executable).parent / "guideline-api"
    return subprocess.run(
        [str(script), "keys", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def dead_kubeconfig(directory: Path) -> Path:
    """A kubeconfig pointing at a port where no API server listens."""
    path = directory / "dead-kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster:
    server: https://127.0.0.1:{free_port()}
    insecure-skip-tls-verify: true
users:
- name: nobody
  user:
    token: not-a-token
contexts:
- name: dead
  context: {{cluster: dead, user: nobody}}
current-context: dead
"""
    )
    return path


def dead_database_url() -> str:
    """A libpq URL of a port where no PostgreSQL listens."""
    return f"postgresql://guideline@127.0.0.1:{free_port()}/guideline"


# A factory of test settings: `make_settings` overrides in, settings out.
SettingsFor = Callable[..., ApiSettings]


def make_settings(database_url: str, kubeconfig: Path | str, **overrides: Any) -> ApiSettings:
    """API settings for a test: auth on with the alice and bob keys, no rate limit."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "kubeconfig": str(kubeconfig),
        "namespace": "default",
        "auth_enabled": True,
        "api_key_hashes": KEY_HASHES,
        "rate_limit_per_minute": 0,
        "db_pool_max": 8,
        "kube_timeout_seconds": 5.0,
        "health_cache_seconds": 0.1,  # tests wait for fresh /health figures, not 2 s
    }
    values.update(overrides)
    return ApiSettings(_env_file=None, **values)


def health_when(
    client: TestClient | httpx.Client,
    check: Callable[[dict[str, Any]], bool],
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """The first /health body for which `check` holds (its figures are refreshed in the
    background, so a change shows up within `health_cache_seconds`)."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get("/health", headers=headers).json()
        if check(body):
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"/health did not reach the expected figures: {body}")
        time.sleep(0.05)


@contextmanager
def api_client(settings: ApiSettings) -> Iterator[TestClient]:
    """An in-process client of a fresh app (lifespan run, pools closed at the end)."""
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield checked(client, app.openapi())


@contextmanager
def api_http(base_url: str, **options: Any) -> Iterator[httpx.Client]:
    """An httpx client of a running API whose responses are checked against the document
    that API serves at /openapi.json."""
    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    with httpx.Client(base_url=base_url, **{"timeout": 30, **options}) as client:
        yield checked(client, document)


PROBLEM_TYPES = "https://guideline-ingest.dev/problems/"


def problem(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """The RFC 9457 body of an error answer, after checking what every problem must have:
    its media type, a `type` URI naming its `reason`, the HTTP status, the request path as
    `instance`, a title and a detail. `status`, when given, must be the answer's."""
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert body["type"] == PROBLEM_TYPES + body["reason"], body
    assert body["status"] == response.status_code, body
    assert body["instance"] == response.request.url.path, body
    assert body["title"] and body["detail"], body
    assert set(body) <= {"type", "title", "status", "detail", "instance", "reason", "details"}
    return body


@contextmanager
def running_server(
    settings: ApiSettings, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[str]:
    """A real uvicorn server with the app on `host` (runner pods on the real node reach
    `LocalCluster.pod_host`) and `port` (default: a free one), configured as `guideline-api`
    serves (its limits included); yields its base URL."""
    port = port or free_port()
    served = settings.model_copy(update={"host": host, "port": port})
    server = uvicorn.Server(uvicorn_config(create_app(served), served))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def dispatched_row(database: Any, event_id: str, timeout: float = 30) -> dict[str, Any]:
    """The job's row once the API's dispatcher has created its GuidelineJob (cr_uid set)."""

    def done() -> dict[str, Any] | None:
        with database.connection() as conn:
            row = db.get_job(conn, uuid.UUID(event_id))
        ready = row is not None and row["cr_uid"] is not None and not row["dispatch_pending"]
        return row if ready else None

    return wait_for(done, timeout, 0.05, f"dispatch of job {event_id}")


class ApiProcess:
    """`guideline-api` as a child process on one port, by default with a dead Kubernetes and
    no dispatcher (the test plays the cluster through the database; `settings`, environment
    entries, may say otherwise): it can be killed and started again on the same port, as a
    crashed or restarted replica is."""

    def __init__(self, database_url: str, directory: Path, **settings: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "api.log"
        self.directory = directory
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GUIDELINE_")}
        self.env.pop("KUBECONFIG", None)
        self.env.update(
            GUIDELINE_DATABASE_URL=database_url,
            GUIDELINE_HOST="127.0.0.1",
            GUIDELINE_PORT=str(self.port),
            GUIDELINE_API_KEY_HASHES=KEY_HASHES,
            GUIDELINE_KUBECONFIG=str(dead_kubeconfig(directory)),
            GUIDELINE_DISPATCHER_ENABLED="false",
            GUIDELINE_RATE_LIMIT_PER_MINUTE="0",
            GUIDELINE_GRACEFUL_SHUTDOWN_SECONDS="1",
        )
        self.env.update(settings)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ApiProcess:
        """Start it and wait until it serves."""
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "guideline-api")],
                env=self.env,
                cwd=self.directory,
                stdout=out,
                stderr=out,
            )
        proc = self.proc

        def live() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"guideline-api exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(live, timeout=60, interval=0.05, message="guideline-api serving")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: no graceful shutdown, open streams just break."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait (killed if it does not exit)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
