"""Bearer API keys, stored only as SHA-256 hashes, each belonging to a tenant with a role.

Keys come from `api_keys_file` (a mounted Secret or a file kept by `guideline-api keys`,
re-read when it changes, so rotating or revoking a key needs no restart) and from
`api_key_hashes`. An entry is `key_id:sha256hex[:tenant[:role]]`; the short form of
earlier releases, `key_id:sha256hex`, is a member of the tenant named like the key. A
request's key id becomes the job's `submitted_by` (the audit trail), its tenant the job's
tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# Key ids and tenant names: no ':' or ',' (the entry separators), no spaces.
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
TENANT_PATTERN = KEY_ID_PATTERN
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
KEY_PREFIX = "gi_"


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored for an API key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits, URL-safe, recognisable by its `gi_` prefix)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class Role(StrEnum):
    """What a key may do: a member works within its tenant, an admin across all tenants."""

    MEMBER = "member"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who made a request: the id of the API key (or `anonymous` with auth off), the tenant
    it belongs to and its role."""

    key_id: str
    tenant: str = ""
    role: Role = Role.MEMBER

    def __post_init__(self) -> None:
        if not self.tenant:  # a key without a tenant is a tenant of its own
            object.__setattr__(self, "tenant", self.key_id)

    @property
    def is_admin(self) -> bool:
        """True for a key that sees every tenant."""
        return self.role == Role.ADMIN


@dataclass(frozen=True)
class KeyEntry:
    """One accepted key: its id, the SHA-256 of the key, its tenant and role."""

    key_id: str
    digest: str
    tenant: str
    role: Role

    def line(self) -> str:
        """The entry as a keys-file line (the long form)."""
        return f"{self.key_id}:{self.digest}:{self.tenant}:{self.role}"

    def principal(self) -> Principal:
        """The principal a request with this key acts as."""
        return Principal(self.key_id, self.tenant, self.role)


def parse_entry(item: str) -> KeyEntry | None:
    """A `key_id:sha256hex[:tenant[:role]]` entry (comment already removed), or None if
    malformed."""
    fields = [f.strip() for f in item.split(":")]
    if not 2 <= len(fields) <= 4:
        return None
    key_id, digest = fields[0], fields[1].lower()
    tenant = fields[2] if len(fields) > 2 and fields[2] else key_id
    try:
        role = Role(fields[3].lower()) if len(fields) > 3 and fields[3] else Role.MEMBER
    except ValueError:
        return None
    if not (KEY_ID_PATTERN.match(key_id) and _HEX64.match(digest) and TENANT_PATTERN.match(tenant)):
        return None
    return KeyEntry(key_id, digest, tenant, role)


def parse_entries(text: str, source: str) -> list[KeyEntry]:
    """Entries from lines or comma-separated text; bad entries are logged and skipped, `#`
    starts a comment."""
    entries = []
    for raw in re.split(r"[,\n]", text):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        entry = parse_entry(item)
        if entry is None:
            log.warning("ignoring malformed API key entry", extra={"source": source})
            continue
        entries.append(entry)
    return entries


class KeyStore:
    """The accepted API keys; verifies a presented key in constant time.

    The keys file is looked at (one `stat`) at most once per `reload_seconds`, not on
    every request, and read again only when its inode, size or mtime changed; a key added
    or revoked in the file is honoured within `reload_seconds`."""

    def __init__(
        self,
        hashes: str = "",
        keys_file: str | None = None,
        reload_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._static = parse_entries(hashes, "api_key_hashes")
        self._file = keys_file
        self._reload_seconds = reload_seconds
        self._clock = clock
        self._entries_now: list[KeyEntry] = list(self._static)
        self._file_stamp: tuple[int, int, int] | None = None
        self._checked_at: float | None = None
        self._lock = threading.Lock()

    def _entries(self) -> list[KeyEntry]:
        if not self._file:
            return self._static
        now = self._clock()
        checked = self._checked_at
        if checked is not None and now - checked < self._reload_seconds:
            return self._entries_now
        with self._lock:
            self._checked_at = now
            try:
                st = os.stat(self._file)
                stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            if stamp != self._file_stamp:
                from_file = self._read_file() if stamp else []
                self._entries_now = self._static + from_file
                self._file_stamp = stamp
                log.info("API keys loaded", extra={"count": len(from_file)})
            return self._entries_now

    def _read_file(self) -> list[KeyEntry]:
        assert self._file is not None
        try:
            with open(self._file, encoding="utf-8") as f:
                return parse_entries(f.read(), self._file)
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read API keys file", extra={"error": str(exc)})
            return []

    def count(self) -> int:
        """How many keys are currently accepted."""
        return len(self._entries())

    def verify(self, key: str) -> Principal | None:
        """The principal owning `key`, or None. Every stored hash is compared (no early
        exit) with `hmac.compare_digest`, so timing does not reveal which one matched."""
        digest = hash_key(key)
        found: KeyEntry | None = None
        for entry in self._entries():
            if hmac.compare_digest(digest, entry.digest) and found is None:
                found = entry
        return found.principal() if found is not None else None
