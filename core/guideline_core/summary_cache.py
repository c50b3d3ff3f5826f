"""The content-addressed cache of per-chunk summaries (table `chunk_summaries`): a chunk
of a guideline summarized once by a model with one version of the prompt is not sent to
the LLM again for a job of the same tenant. Entries are keyed by tenant: a tenant is never
served a summary stored for another (a hit would tell it that someone else submitted the
same text, and a planted row would reach its results). Used by the runner, over a
connection of a role that may only SELECT and INSERT this table; the operator purges rows
older than `chunk_cache_retention_days` (docs/contracts.md, "Database")."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection  # noqa: N812


def grant_cache_role(conn: PgConnection, role: str) -> None:
    """Make `role` (created if missing: LOGIN, no password, set one with ALTER ROLE) the
    runner's cache role: it may connect, and SELECT and INSERT `chunk_summaries`, and is
    given nothing else (no other table, no UPDATE or DELETE: the operator purges)."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        cur.execute("SELECT current_database()")
        (database,) = cur.fetchone() or ("",)
        for statement in (
            "GRANT CONNECT ON DATABASE {db} TO {role}",
            "GRANT USAGE ON SCHEMA public TO {role}",
            "GRANT SELECT, INSERT ON chunk_summaries TO {role}",
        ):
            cur.execute(
                sql.SQL(statement).format(db=sql.Identifier(database), role=sql.Identifier(role))
            )


def chunk_hash(chunk: str) -> str:
    """The cache address of a chunk: SHA-256 of its exact text (UTF-8), in hex."""
    return hashlib.sha256(chunk.encode("utf-8", "surrogatepass")).hexdigest()


def connect(url: str, connect_timeout: int = 3) -> PgConnection:
    """A single autocommit connection (each lookup and store stands alone)."""
    conn = psycopg2.connect(
        url, connect_timeout=connect_timeout, application_name="guideline-runner"
    )
    conn.autocommit = True
    return conn


def cached_summaries(
    conn: PgConnection, tenant: str, hashes: Iterable[str], model: str, prompt_version: str
) -> dict[str, str]:
    """The summaries the cache holds for `tenant` and `hashes` (by hash) for this model and
    prompt."""
    wanted = sorted(set(hashes))
    if not wanted:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT chunk_hash, summary FROM chunk_summaries WHERE tenant = %s "
            "AND chunk_hash = ANY(%s) AND model = %s AND prompt_version = %s",
            (tenant, wanted, model, prompt_version),
        )
        return dict(cur.fetchall())


def store_summary(
    conn: PgConnection, tenant: str, chunk: str, model: str, prompt_version: str, summary: str
) -> bool:
    """Keep the summary of `chunk` for `tenant`; False if the cache already had one (the
    first stays: rows are never updated)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO chunk_summaries "
            "(tenant, chunk_hash, model, prompt_version, summary, chunk_chars) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (tenant, chunk_hash(chunk), model, prompt_version, summary, len(chunk)),
        )
        return cur.rowcount == 1


def purge_older_than(conn: PgConnection, days: int) -> int:
    """Delete the summaries written more than `days` days ago, and any dated in the
    future (only a row written by hand can be: it would otherwise never expire); returns
    how many. Run by the operator's housekeeping: the runner's role may not delete."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM chunk_summaries WHERE created_at < now() - make_interval(days => %s) "
            "OR created_at > now() + interval '1 hour'",
            (days,),
        )
        return cur.rowcount
