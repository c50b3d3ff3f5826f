"""Bearer API keys, stored only as SHA-256 hashes.

Keys come from `api_keys_file` (a mounted Secret, re-read when it changes, so rotating a
key is a Secret update) and from `api_key_hashes`; both hold
`key_id:sha256hex[:tenant[:role]]` entries. A request's key id becomes the job's
`submitted_by` (the audit trail), its tenant the job's tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored for an API key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


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


_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class KeyEntry:
    """One accepted key: its id, the SHA-256 of the key, its tenant and role."""

    key_id: str
    digest: str
    tenant: str
    role: Role


def parse_entries(text: str, source: str) -> list[KeyEntry]:
    """`key_id:sha256hex[:tenant[:role]]` entries from lines or comma-separated text (a
    bare `key_id:sha256hex` is a member of tenant `key_id`); bad entries are logged and
    skipped, `#` starts a comment."""
    entries = []
    for raw in re.split(r"[,\n]", text):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        parts = [p.strip() for p in item.split(":")]
        key_id, digest = parts[0], parts[1].lower() if len(parts) > 1 else ""
        tenant = parts[2] if len(parts) > 2 and parts[2] else key_id
        role = parts[3] if len(parts) > 3 and parts[3] else Role.MEMBER.value
        if (
            len(parts) > 4
            or not KEY_ID_PATTERN.match(key_id)
            or not _HEX64.match(digest)
            or not _TENANT.match(tenant)
            or role not in {r.value for r in Role}
        ):
            log.warning("ignoring malformed API key entry", extra={"source": source})
            continue
        entries.append(KeyEntry(key_id, digest, tenant, Role(role)))
    return entries


class KeyStore:
    """The accepted API key hashes; verifies a presented key in constant time."""

    def __init__(self, hashes: str = "", keys_file: str | None = None):
        self._static = parse_entries(hashes, "api_key_hashes")
        self._file = keys_file
        self._file_entries: list[KeyEntry] = []
        self._file_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _entries(self) -> list[KeyEntry]:
        if self._file:
            try:
                st = os.stat(self._file)
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            with self._lock:
                if stamp != self._file_stamp:
                    self._file_entries = self._read_file() if stamp else []
                    self._file_stamp = stamp
                    log.info("API keys loaded", extra={"count": len(self._file_entries)})
            return self._static + self._file_entries
        return self._static

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
        if found is None:
            return None
        return Principal(found.key_id, tenant=found.tenant, role=found.role)
