"""The document store: submitted documents in PostgreSQL (migration 0013), in 1 MiB chunks.

A write reads a binary file object chunk by chunk (hashing as it goes) and a read yields
the chunks one at a time, so neither holds a whole document in memory. A document belongs
to one job and is deleted with the job's row (`delete_for_jobs`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from psycopg2.extensions import connection as PgConnection  # noqa: N812

CHUNK_BYTES = 1024 * 1024


class DocumentTooLargeError(ValueError):
    """The file object held more than the limit the write was given."""

    def __init__(self, limit: int):
        super().__init__(f"the document is larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class StoredDocument:
    """A document as stored: its id, and what was counted while writing it."""

    id: uuid.UUID
    tenant: str
    media_type: str
    sha256: str
    bytes: int


def write(
    conn: PgConnection,
    source: BinaryIO,
    *,
    tenant: str,
    media_type: str,
    max_bytes: int | None = None,
) -> StoredDocument:
    """Store what `source` holds from its current position to its end, in the caller's
    transaction; `DocumentTooLargeError` past `max_bytes` (the transaction must then be
    rolled back)."""
    doc_id = uuid.uuid4()
    digest = hashlib.sha256()
    size = 0
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO documents (id, tenant, sha256, media_type, bytes) "
            "VALUES (%s, %s, '', %s, 0)",
            (doc_id, tenant, media_type),
        )
        seq = 0
        while chunk := source.read(CHUNK_BYTES):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise DocumentTooLargeError(max_bytes)
            digest.update(chunk)
            cur.execute(
                "INSERT INTO document_chunks (document_id, seq, data) VALUES (%s, %s, %s)",
                (doc_id, seq, chunk),
            )
            seq += 1
        sha256 = digest.hexdigest()
        cur.execute(
            "UPDATE documents SET sha256 = %s, bytes = %s WHERE id = %s", (sha256, size, doc_id)
        )
    return StoredDocument(doc_id, tenant, media_type, sha256, size)


def get(conn: PgConnection, doc_id: uuid.UUID) -> StoredDocument | None:
    """A document's metadata, or None."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, tenant, media_type, sha256, bytes FROM documents WHERE id = %s",
            (doc_id,),
        )
        row = cur.fetchone()
    return None if row is None else StoredDocument(row[0], row[1], row[2], row[3], int(row[4]))


def read_chunks(
    connect: Callable[[], AbstractContextManager[PgConnection]], doc_id: uuid.UUID
) -> Iterator[bytes]:
    """The document's bytes, one chunk at a time, each read on a connection of its own
    from `connect` (a document is never changed once written): a slow reader holds no
    connection between chunks."""
    seq = 0
    while True:
        with connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT data FROM document_chunks WHERE document_id = %s AND seq = %s",
                (doc_id, seq),
            )
            row = cur.fetchone()
        if row is None:
            return
        yield bytes(row[0])
        seq += 1


def delete_for_jobs(conn: PgConnection, document_ids: list[uuid.UUID]) -> int:
    """Delete the documents of job rows just deleted (their chunks cascade); returns how
    many."""
    ids = [d for d in document_ids if d is not None]
    if not ids:
        return 0
    with conn.cursor() as cur:
        cur.execute("DELETE FROM documents WHERE id = ANY(%s::uuid[])", ([str(i) for i in ids],))
        return cur.rowcount
