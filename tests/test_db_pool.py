"""The connection pool of guideline_core.db against a real PostgreSQL that a test restarts:
connections are kept for reuse, and the ones a server restart left behind are replaced
instead of failing a request."""

from __future__ import annotations

import threading

import pytest
from guideline_core import db
from support.pg import PgServer


@pytest.fixture
def url(restartable_pg: PgServer) -> str:
    return restartable_pg.fresh_database(migrate=False)


def backend_pids_at_once(database: db.Database, count: int) -> set[int]:
    """The server processes of `count` connections held at the same time."""
    barrier = threading.Barrier(count)
    pids: set[int] = set()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with database.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pids.add(cur.fetchone()[0])
                barrier.wait(timeout=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    return pids


def test_connections_are_kept_for_reuse(url: str) -> None:
    database = db.Database(url, minconn=1, maxconn=4)
    try:
        first = backend_pids_at_once(database, 4)
        second = backend_pids_at_once(database, 4)
        assert len(first) == 4
        assert second == first  # no new server process: every connection was reused
    finally:
        database.close()


def test_connections_left_by_a_server_restart_are_replaced(
    restartable_pg: PgServer, url: str
) -> None:
    database = db.Database(url, minconn=1, maxconn=4)
    try:
        before = backend_pids_at_once(database, 4)
        restartable_pg.stop()
        restartable_pg.start()
        for _ in range(6):  # more than the pool holds: every dead one is met
            with database.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                assert cur.fetchone()[0] not in before
    finally:
        database.close()


def test_a_down_server_is_still_reported_as_unavailable(restartable_pg: PgServer, url: str) -> None:
    database = db.Database(url, minconn=1, maxconn=2)
    try:
        database.ping()
        restartable_pg.stop()
        with pytest.raises(db.DatabaseUnavailableError):
            database.ping()
        restartable_pg.start()
        database.ping()
    finally:
        database.close()
