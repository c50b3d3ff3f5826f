"""The document store: submitted documents in PostgreSQL (migration 0013), in 1 MiB chunks.

A write reads a binary file object chunk by chunk (hashing as it goes) and a read yields
the chunks one at a time, so neither holds a whole document in memory. A document belongs
to one job and is deleted with the job's row (`delete_for_jobs`).
"""

from __future__ import annotations

import binascii
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
    rolled back).

    The chunks go in with one COPY whose rows are produced while PostgreSQL reads them
    (`_ChunkRows`): a writer holds one chunk and 64 KiB of its encoding, where an INSERT
    per chunk would hold the chunk, its escaped form and the query built around it."""
    doc_id = uuid.uuid4()
    rows = _ChunkRows(doc_id, source, max_bytes)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO documents (id, tenant, sha256, media_type, bytes) "
            "VALUES (%s, %s, '', %s, 0)",
            (doc_id, tenant, media_type),
        )
        cur.copy_expert(  # COPY FROM calls read() only; the stubs also ask for readline()
            "COPY document_chunks (document_id, seq, data) FROM STDIN",
            rows,  # type: ignore[arg-type]
            size=_COPY_PIECE,
        )
        if rows.error is not None:
            raise rows.error
        sha256 = rows.digest.hexdigest()
        cur.execute(
            "UPDATE documents SET sha256 = %s, bytes = %s WHERE id = %s",
            (sha256, rows.size, doc_id),
        )
    return StoredDocument(doc_id, tenant, media_type, sha256, rows.size)


_COPY_PIECE = 64 * 1024
_HEX_PIECE = _COPY_PIECE // 2


class _ChunkRows:
    """The COPY text-format rows `<id>\t<seq>\t\\x<hex>` of `source`'s chunks, as a
    file object for `copy_expert`: each chunk is read when its row starts and hex-encoded
    64 KiB at a time, hashed and counted on the way."""

    def __init__(self, doc_id: uuid.UUID, source: BinaryIO, max_bytes: int | None):
        self._prefix = f"{doc_id}\t".encode()
        self._source = source
        self._max = max_bytes
        self._seq = 0
        self._chunk = b""
        self._at = 0  # how much of the chunk is encoded
        self._pending = b""
        self.digest = hashlib.sha256()
        self.size = 0
        self.error: DocumentTooLargeError | None = None

    def read(self, size: int = _COPY_PIECE) -> bytes:
        while len(self._pending) < size:
            more = self._next()
            if not more:
                break
            self._pending += more
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def _next(self) -> bytes:
        if self._at < len(self._chunk):
            piece = self._chunk[self._at : self._at + _HEX_PIECE]
            self._at += len(piece)
            tail = b"\n" if self._at == len(self._chunk) else b""
            return binascii.hexlify(piece) + tail
        if self.error is not None:
            return b""
        self._chunk = self._source.read(CHUNK_BYTES)
        self._at = 0
        if not self._chunk:
            return b""
        self.size += len(self._chunk)
        if self._max is not None and self.size > self._max:
            # Ending the COPY early would store a truncated document: the caller raises
            # this after the COPY, and its transaction rolls back.
            self.error = DocumentTooLargeError(self._max)
            self._chunk = b""
            return b""
        self.digest.update(self._chunk)
        row = self._prefix + f"{self._seq}\t\\\\x".encode()
        self._seq += 1
        return row


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
