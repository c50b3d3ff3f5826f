"""Session fixtures: a throw-away PostgreSQL (pytest-postgresql, from the installed server
binaries) and the local Kubernetes control plane (hack/cluster.sh), both started by the
suite and stopped at its end. Then the fixtures many test modules share: a namespace per
module, helm, a PostgreSQL server of the module's own to restart, and API settings and
clients with or without the cluster (a module that needs them otherwise defines its own of
the same name, which pytest prefers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from guideline_core import db

if TYPE_CHECKING:
    from fastapi.testclient import TestClient
    from guideline_core.settings import ApiSettings
    from support.api import SettingsFor
    from support.cluster import LocalCluster
    from support.helm import Helm
    from support.pg import PgServer
from pytest_postgresql import factories

REPO_ROOT = Path(__file__).resolve().parent.parent
# pg_ctl refuses to run as root (as CI does); the wrapper runs it as the postgres user.
PG_CTL = str(REPO_ROOT / "hack" / "pg_ctl.sh")


postgresql_proc = factories.postgresql_proc(
    executable=PG_CTL, port=None, user="guideline", dbname="guideline_tests"
)


@pytest.fixture(scope="session")
def postgres_url(postgresql_proc) -> Iterator[str]:
    """A migrated database on the session's PostgreSQL server."""
    from pytest_postgresql.janitor import DatabaseJanitor

    proc = postgresql_proc
    with DatabaseJanitor(
        user=proc.user,
        host=proc.host,
        port=proc.port,
        dbname="guideline",
        version=proc.version,
        password=proc.password,
    ):
        url = f"postgresql://{proc.user}@{proc.host}:{proc.port}/guideline"
        db.migrate(url)
        yield url


@pytest.fixture
def database(postgres_url: str) -> Iterator[db.Database]:
    """A connection pool on the session database, emptied before each test."""
    database = db.Database(postgres_url)
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "TRUNCATE jobs, documents, job_events, operator_heartbeat, audit_log, tenant_rate, "
            "webhook_secrets CASCADE"
        )
    yield database
    database.close()


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """The local control plane and node agent (started if not already running)."""
    from support.cluster import LocalCluster

    local = LocalCluster.ensure_started()
    os.environ["KUBECONFIG"] = str(local.kubeconfig)
    yield local
    local.stop_if_started_here()


@pytest.fixture
def make_stack(cluster: LocalCluster, postgres_url: str, tmp_path: Path) -> Iterator[Any]:
    """A factory of operator stacks (`support.stack.Stack`), closed at the end of the test."""
    from support.stack import Stack

    stacks: list[Stack] = []

    def make(**options: Any) -> Stack:
        stack = Stack(cluster, postgres_url, tmp_path / f"stack{len(stacks)}", **options)
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in reversed(stacks):
        stack.close()


@pytest.fixture(scope="module")
def helm(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The cached helm binary on the local cluster, its state in a home of the module's."""
    from support.helm import Helm

    return Helm(cluster, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def restartable_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """The module's own PostgreSQL server, for tests that stop or restart it (their
    databases: `PgServer.fresh_database`)."""
    from support.pg import PgServer

    with PgServer(tmp_path_factory.mktemp("restartable-pg")) as server:
        yield server


@pytest.fixture(scope="module")
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for the module's tests, named after the module (`t-crd-…` for
    test_crd.py), deleted after the last of them."""
    name = cluster.create_namespace(
        "t-" + request.path.stem.removeprefix("test_").replace("_", "-")
    )
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def settings(database: db.Database, cluster: LocalCluster, namespace: str) -> ApiSettings:
    """API settings on the test database and the local cluster, in the module's `namespace`
    (emptied of the GuidelineJobs the module's earlier tests left)."""
    from support.api import make_settings

    cluster.kubectl("delete", "guidelinejobs", "--all", "-n", namespace, "--wait=false")
    return make_settings(database.url, cluster.kubeconfig, namespace=namespace)


@pytest.fixture
def settings_for(database: db.Database, tmp_path: Path) -> SettingsFor:
    """A factory of API settings (`make_settings` overrides) on the test database with
    Kubernetes unreachable (a dead kubeconfig): for tests where the row is the acceptance."""
    from support.api import dead_kubeconfig, make_settings

    kubeconfig = dead_kubeconfig(tmp_path)
    return lambda **overrides: make_settings(database.url, kubeconfig, **overrides)


@pytest.fixture
def client(settings_for: SettingsFor) -> Iterator[TestClient]:
    """An in-process client of the API with `settings_for()`: no cluster."""
    from support.api import api_client

    with api_client(settings_for()) as c:
        yield c
