"""Session fixtures: a throw-away PostgreSQL (pytest-postgresql, from the installed server
binaries) and the local Kubernetes control plane (hack/cluster.sh), both started by the
suite and stopped at its end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from guideline_core import db

if TYPE_CHECKING:
    from support.cluster import LocalCluster
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
