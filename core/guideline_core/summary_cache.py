"""The content-addressed cache of per-chunk summaries (table `chunk_summaries`): a chunk
of a guideline summarized once by a model with one version of the prompt is not sent to
the LLM again, whichever job it is part of. Used by the runner, over a connection of a
role that may only SELECT and INSERT this table (docs/contracts.md, "Database")."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import psycopg2
from psycopg2.extensions import connection as PgConnection  # noqa: N812


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
    conn: PgConnection, hashes: Iterable[str], model: str, prompt_version: str
) -> dict[str, str]:
    """The summaries the cache holds for `hashes` (by hash) for this model and prompt."""
    wanted = sorted(set(hashes))
    if not wanted:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT chunk_hash, summary FROM chunk_summaries "
            "WHERE chunk_hash = ANY(%s) AND model = %s AND prompt_version = %s",
            (wanted, model, prompt_version),
        )
        return dict(cur.fetchall())


def store_summary(
    conn: PgConnection, chunk: str, model: str, prompt_version: str, summary: str
) -> bool:
    """Keep the summary of `chunk`; False if the cache already had one (the first stays:
    rows are never updated)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO chunk_summaries (chunk_hash, model, prompt_version, summary, chunk_chars) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (chunk_hash(chunk), model, prompt_version, summary, len(chunk)),
        )
        return cur.rowcount == 1
