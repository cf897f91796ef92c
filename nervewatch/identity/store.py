"""API-key authentication, key lifecycle and tenant records.

Keys are random 256-bit tokens, so a single SHA-256 is the right hash (no stretching needed):
lookups go by hash, and the stored hash is compared in constant time. Lookups are cached for
`CACHE_TTL_S` (bounded LRU). A key's `expires_at` is checked on every cache hit, so expiry
(including the end of a rotation overlap) is exact. Revocation reaches other processes through
a cheap poll: while requests arrive, each process asks at most every `CHANGES_POLL_S` which keys
changed (`updated_at`) and evicts them from its cache, so a revoked key stops working everywhere
within about `CHANGES_POLL_S`; `CACHE_TTL_S` remains the hard upper bound if the poll fails.

Webhook secrets rotate with an overlap: the previous secret stays valid for signing until
`previous_secret_expires_at`, and the dispatcher signs every webhook with both meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from nervewatch.identity.access_log import AccessLog

SCOPES = frozenset({"ingest", "care", "admin"})
CACHE_TTL_S = 30.0
CACHE_MAX = 10_000
LAST_USED_EVERY_S = 60.0
CHANGES_POLL_S = 2.0
# How far back each poll looks beyond the previous one (covers transactions that committed late).
CHANGES_MARGIN = timedelta(seconds=5)
KEY_COLUMNS = "key_id, prefix, scopes, created_at, expires_at, revoked_at, last_used_at, rotated_from"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never its hash, never the key itself."""

    key_id: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: str | None

    @classmethod
    def from_row(cls, row: Any) -> KeyInfo:
        return cls(
            key_id=row["key_id"],
            prefix=row["prefix"],
            scopes=tuple(sorted(row["scopes"])),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
            rotated_from=row["rotated_from"],
        )

    def to_json(self) -> dict[str, Any]:
        def iso(v: datetime | None) -> str | None:
            return None if v is None else v.isoformat()

        return {
            "key_id": self.key_id,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "last_used_at": iso(self.last_used_at),
            "rotated_from": self.rotated_from,
        }


class KeyNotFound(LookupError):
    """No such key in the caller's tenant."""


class KeyInactive(Exception):
    """The key exists but is revoked or expired."""


def hash_key(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


def generate_key() -> str:
    return "nw_" + secrets.token_urlsafe(32)


class IdentityStore:
    """Reads and writes the `identity` schema. Safe for concurrent use from one event loop."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # digest -> (fetched at (monotonic), principal or None, expires_at as unix time or None)
        self._cache: OrderedDict[bytes, tuple[float, Principal | None, float | None]] = OrderedDict()
        self._last_used: dict[str, float] = {}
        self._changes_since: datetime | None = None
        self._next_poll = 0.0
        self._polling = False
        self._poll_task: asyncio.Task[None] | None = None
        self.access_log = AccessLog(pool)

    async def authenticate(self, raw_key: str) -> Principal | None:
        """The key's principal, or None for an unknown, revoked or expired key."""
        if not raw_key or len(raw_key) > 256:
            return None
        digest = hash_key(raw_key)
        now = time.monotonic()
        if now >= self._next_poll and not self._polling:
            # In the background: a request never waits for (or fails because of) the change poll.
            self._polling = True
            self._next_poll = now + CHANGES_POLL_S
            self._poll_task = asyncio.create_task(self._poll_changes())
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            self._cache.move_to_end(digest)
            principal, expires = hit[1], hit[2]
        else:
            principal, expires = await self._lookup(digest)
            self._cache[digest] = (now, principal, expires)
            self._cache.move_to_end(digest)
            while len(self._cache) > CACHE_MAX:
                self._cache.popitem(last=False)
        if principal is None or (expires is not None and time.time() >= expires):
            return None
        if now - self._last_used.get(principal.key_id, 0.0) > LAST_USED_EVERY_S:
            self._last_used[principal.key_id] = now
            if len(self._last_used) > CACHE_MAX:
                self._last_used.clear()
            await self.pool.execute(
                "UPDATE identity.api_keys SET last_used_at = now() WHERE key_id = $1", principal.key_id
            )
        return principal

    async def _lookup(self, digest: bytes) -> tuple[Principal | None, float | None]:
        row = await self.pool.fetchrow(
            """SELECT key_id, tenant_id, key_hash, scopes, expires_at FROM identity.api_keys
               WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
            digest,
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            return None, None
        expires = row["expires_at"].timestamp() if row["expires_at"] is not None else None
        return Principal(row["tenant_id"], row["key_id"], frozenset(row["scopes"])), expires

    async def _poll_changes(self) -> None:
        """Evict cached lookups of keys changed (revoked, rotated, re-enabled) since the last poll."""
        try:
            row = await asyncio.wait_for(
                self.pool.fetchrow(
                    """SELECT now() AS now, coalesce(array_agg(key_hash), '{}') AS hashes FROM identity.api_keys
                       WHERE updated_at >= coalesce($1, now() - make_interval(secs => $2))""",
                    self._changes_since,
                    CACHE_TTL_S,
                ),
                timeout=CHANGES_POLL_S,
            )
        except Exception:
            return  # the cache TTL still bounds staleness; try again at the next interval
        finally:
            self._polling = False
        assert row is not None
        for digest in row["hashes"]:
            self._cache.pop(bytes(digest), None)
        self._changes_since = row["now"] - CHANGES_MARGIN

    def forget_cached(self) -> None:
        """Drop every cached lookup of this process (after a local revoke or rotation)."""
        self._cache.clear()

    async def ensure_tenant(
        self, tenant_id: str, name: str, webhook_secret: str | None = None, allow_private_webhooks: bool = False
    ) -> str:
        """Create the tenant if missing; a given `webhook_secret` replaces the stored one. Returns the secret."""
        secret = webhook_secret or secrets.token_urlsafe(32)
        row = await self.pool.fetchrow(
            """INSERT INTO identity.tenants (tenant_id, name, webhook_secret, allow_private_webhooks)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (tenant_id) DO UPDATE SET
                 webhook_secret = CASE WHEN $5 THEN EXCLUDED.webhook_secret ELSE identity.tenants.webhook_secret END,
                 allow_private_webhooks = EXCLUDED.allow_private_webhooks
               RETURNING webhook_secret""",
            tenant_id,
            name,
            secret,
            allow_private_webhooks,
            webhook_secret is not None,
        )
        assert row is not None
        return str(row["webhook_secret"])

    async def create_key(
        self,
        tenant_id: str,
        scopes: frozenset[str],
        raw_key: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, str]:
        """Store a key (generated unless given); returns (key_id, raw key). Idempotent for a given raw key."""
        if not scopes <= SCOPES:
            raise ValueError(f"unknown scopes: {sorted(scopes - SCOPES)}")
        raw = raw_key or generate_key()
        key_id = "key_" + secrets.token_hex(8)
        row = await self.pool.fetchrow(
            """INSERT INTO identity.api_keys (key_id, tenant_id, key_hash, prefix, scopes, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (key_hash) DO UPDATE SET scopes = EXCLUDED.scopes, revoked_at = NULL, updated_at = now()
               RETURNING key_id, tenant_id""",
            key_id,
            tenant_id,
            hash_key(raw),
            raw[:8],
            sorted(scopes),
            expires_at,
        )
        assert row is not None
        if row["tenant_id"] != tenant_id:
            raise ValueError("that key already belongs to another tenant")
        return str(row["key_id"]), raw

    async def issue_key(
        self, tenant_id: str, scopes: frozenset[str], expires_at: datetime | None = None
    ) -> tuple[KeyInfo, str]:
        """A new random key for the tenant; returns its description and the raw key (shown once)."""
        if not scopes or not scopes <= SCOPES:
            raise ValueError("unknown or empty scopes")
        async with self.pool.acquire() as conn:
            return await self._insert_key(conn, tenant_id, scopes, expires_at, None)

    async def _insert_key(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        scopes: frozenset[str],
        expires_at: datetime | None,
        rotated_from: str | None,
    ) -> tuple[KeyInfo, str]:
        raw = generate_key()
        row = await conn.fetchrow(
            f"""INSERT INTO identity.api_keys (key_id, tenant_id, key_hash, prefix, scopes, expires_at, rotated_from)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}""",
            "key_" + secrets.token_hex(8),
            tenant_id,
            hash_key(raw),
            raw[:8],
            sorted(scopes),
            expires_at,
            rotated_from,
        )
        assert row is not None
        return KeyInfo.from_row(row), raw

    async def list_keys(self, tenant_id: str) -> list[KeyInfo]:
        rows = await self.pool.fetch(
            f"SELECT {KEY_COLUMNS} FROM identity.api_keys WHERE tenant_id = $1 ORDER BY created_at, key_id",
            tenant_id,
        )
        return [KeyInfo.from_row(r) for r in rows]

    async def rotate_key(
        self, tenant_id: str, key_id: str, overlap: timedelta, expires_at: datetime | None = None
    ) -> tuple[KeyInfo, str, KeyInfo]:
        """Issue a successor with the same scopes; the old key expires after `overlap` (never later
        than it already would). The successor expires at `expires_at` if given, else it keeps the
        old key's lifetime (none if the old key had none). Returns (new key, raw new key, old key).
        Raises KeyNotFound (not the tenant's key) or KeyInactive (revoked or expired)."""
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow(
                """SELECT scopes, created_at, expires_at, revoked_at, expires_at <= now() AS expired
                   FROM identity.api_keys WHERE tenant_id = $1 AND key_id = $2 FOR UPDATE""",
                tenant_id,
                key_id,
            )
            if old is None:
                raise KeyNotFound(key_id)
            if old["revoked_at"] is not None or old["expired"]:
                raise KeyInactive(key_id)
            if expires_at is None and old["expires_at"] is not None:
                expires_at = datetime.now(UTC) + (old["expires_at"] - old["created_at"])
            new, raw = await self._insert_key(conn, tenant_id, frozenset(old["scopes"]), expires_at, key_id)
            updated = await conn.fetchrow(
                f"""UPDATE identity.api_keys
                    SET expires_at = LEAST(coalesce(expires_at, 'infinity'::timestamptz), now() + $3),
                        updated_at = now()
                    WHERE tenant_id = $1 AND key_id = $2 RETURNING {KEY_COLUMNS}""",
                tenant_id,
                key_id,
                overlap,
            )
            assert updated is not None
        self.forget_cached()
        return new, raw, KeyInfo.from_row(updated)

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        """Revoke a key of the tenant. True if it is the tenant's key (revoked now or before)."""
        row = await self.pool.fetchrow(
            """UPDATE identity.api_keys SET revoked_at = coalesce(revoked_at, $3), updated_at = now()
               WHERE tenant_id = $1 AND key_id = $2 RETURNING key_id""",
            tenant_id,
            key_id,
            datetime.now(UTC),
        )
        self.forget_cached()
        return row is not None

    async def rotate_webhook_secret(self, tenant_id: str, overlap: timedelta) -> tuple[str, datetime | None] | None:
        """Replace the tenant's webhook secret. The old one keeps signing (alongside) for `overlap`.
        Returns (new secret, end of the overlap or None) or None for an unknown tenant."""
        new = secrets.token_urlsafe(32)
        keep = overlap > timedelta(0)
        row = await self.pool.fetchrow(
            """UPDATE identity.tenants SET
                 previous_webhook_secret = CASE WHEN $3 THEN webhook_secret END,
                 previous_secret_expires_at = CASE WHEN $3 THEN now() + $4 END,
                 webhook_secret = $2,
                 webhook_secret_rotated_at = now()
               WHERE tenant_id = $1 RETURNING previous_secret_expires_at""",
            tenant_id,
            new,
            keep,
            overlap,
        )
        return None if row is None else (new, row["previous_secret_expires_at"])

    async def signing_secrets(self, tenant_id: str) -> tuple[tuple[str, ...], bool] | None:
        """((current secret, previous secret while its overlap lasts), allow_private_webhooks)."""
        row = await self.pool.fetchrow(
            """SELECT webhook_secret, allow_private_webhooks,
                      CASE WHEN previous_secret_expires_at > now() THEN previous_webhook_secret END AS previous
               FROM identity.tenants WHERE tenant_id = $1""",
            tenant_id,
        )
        if row is None:
            return None
        current = str(row["webhook_secret"])
        previous = row["previous"]
        keys = (current,) if previous is None or previous == current else (current, str(previous))
        return keys, bool(row["allow_private_webhooks"])

    async def read_access_log(
        self,
        tenant_id: str,
        *,
        since: datetime | None,
        after_id: int,
        limit: int,
        patient_id: str | None = None,
        key_id: str | None = None,
    ) -> list[asyncpg.Record]:
        """The tenant's access-audit rows with id > `after_id` (and at >= `since`), oldest first."""
        rows: list[asyncpg.Record] = await self.pool.fetch(
            """SELECT id, at, key_id, method, route, patient_id, alert_id, status FROM identity.access_log
               WHERE tenant_id = $1 AND id > $2 AND ($3::timestamptz IS NULL OR at >= $3)
                 AND ($4::text IS NULL OR patient_id = $4) AND ($5::text IS NULL OR key_id = $5)
               ORDER BY id LIMIT $6""",
            tenant_id,
            after_id,
            since,
            patient_id,
            key_id,
            limit,
        )
        return rows

    async def webhook_secret(self, tenant_id: str) -> tuple[str, bool] | None:
        """(secret, allow_private_webhooks) of a tenant."""
        row = await self.pool.fetchrow(
            "SELECT webhook_secret, allow_private_webhooks FROM identity.tenants WHERE tenant_id = $1", tenant_id
        )
        return None if row is None else (str(row["webhook_secret"]), bool(row["allow_private_webhooks"]))


DEV_TENANT = "dev"


async def seed_dev_tenant(store: IdentityStore, api_key: str | None, webhook_secret: str | None) -> tuple[str, str]:
    """Create the development tenant and its all-scopes key. Returns (api key, webhook secret)."""
    secret = await store.ensure_tenant(DEV_TENANT, "Development tenant", webhook_secret, allow_private_webhooks=True)
    _, raw = await store.create_key(DEV_TENANT, SCOPES, api_key)
    return raw, secret
