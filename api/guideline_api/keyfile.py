"""Editing the API keys file: add and revoke entries atomically.

Every change takes an exclusive `flock` on `<file>.lock` (so two `keys create` at once both
land), writes the whole new content to a temporary file in the same directory with mode
0600 and renames it over the old one: a reader (the running API) sees the old file or the
new one, never a half-written one. Comments and lines this release does not understand are
kept as they are.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from guideline_api.auth import (
    KEY_ID_PATTERN,
    TENANT_PATTERN,
    KeyEntry,
    Role,
    hash_key,
    new_key,
    parse_entries,
    parse_entry,
)


class KeyFileError(ValueError):
    """A request the keys file cannot honour (bad tenant, duplicate or unknown key id)."""


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _write_atomically(path: Path, lines: list[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _entry_of(line: str) -> KeyEntry | None:
    item = line.split("#", 1)[0].strip()
    return parse_entry(item) if item else None


def read_keys(path: Path) -> list[KeyEntry]:
    """The entries of the keys file (none if it does not exist)."""
    return parse_entries("\n".join(_read_lines(path)), str(path))


def create_key(
    path: Path, tenant: str, role: Role = Role.MEMBER, key_id: str | None = None
) -> tuple[KeyEntry, str]:
    """Append a new key of `tenant` to the file; returns its entry and the key itself
    (which is stored nowhere)."""
    if not TENANT_PATTERN.match(tenant):
        raise KeyFileError(f"tenant {tenant!r}: letters, digits, '.', '_' or '-' (max 63)")
    if key_id is not None and not KEY_ID_PATTERN.match(key_id):
        raise KeyFileError(f"key id {key_id!r}: letters, digits, '.', '_' or '-' (max 63)")
    key = new_key()
    with _locked(path):
        lines = _read_lines(path)
        taken = {e.key_id for e in map(_entry_of, lines) if e is not None}
        if key_id is None:
            key_id = f"{tenant[:54]}-{secrets.token_hex(4)}"
            while key_id in taken:
                key_id = f"{tenant[:54]}-{secrets.token_hex(4)}"
        elif key_id in taken:
            raise KeyFileError(f"key id {key_id!r} already exists (revoke it first)")
        entry = KeyEntry(key_id, hash_key(key), tenant, role)
        _write_atomically(path, [*lines, entry.line()])
    return entry, key


def revoke_key(path: Path, key_id: str) -> int:
    """Remove every entry with `key_id`; returns how many were removed (0: unknown id)."""
    with _locked(path):
        lines = _read_lines(path)
        kept = [line for line in lines if getattr(_entry_of(line), "key_id", None) != key_id]
        removed = len(lines) - len(kept)
        if removed:
            _write_atomically(path, kept)
    return removed
