"""API-key authentication and tenant records.

Keys are random 256-bit tokens, so a single SHA-256 is the right hash (no stretching needed):
lookups go by hash, and the stored hash is compared in constant time. Successful lookups are
cached for `CACHE_TTL_S` (bounded LRU) so revocation takes effect within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

SCOPES = frozenset({"ingest", "care", "admin"})
CACHE_TTL_S = 30.0
CACHE_MAX = 10_000
LAST_USED_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]


def hash_key(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


def generate_key() -> str:
    return "nw_" + secrets.token_urlsafe(32)


class IdentityStore:
    """Reads and writes the `identity` schema. Safe for concurrent use from one event loop."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._cache: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()
        self._last_used: dict[str, float] = {}

    async def authenticate(self, raw_key: str) -> Principal | None:
        """The key's principal, or None for an unknown, revoked or expired key."""
        if not raw_key or len(raw_key) > 256:
            return None
        digest = hash_key(raw_key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            self._cache.move_to_end(digest)
            principal = hit[1]
        else:
            principal = await self._lookup(digest)
            self._cache[digest] = (now, principal)
            self._cache.move_to_end(digest)
            while len(self._cache) > CACHE_MAX:
                self._cache.popitem(last=False)
        if principal is not None and now - self._last_used.get(principal.key_id, 0.0) > LAST_USED_EVERY_S:
            self._last_used[principal.key_id] = now
            await self.pool.execute(
                "UPDATE identity.api_keys SET last_used_at = now() WHERE key_id = $1", principal.key_id
            )
        return principal

    async def _lookup(self, digest: bytes) -> Principal | None:
        row = await self.pool.fetchrow(
            """SELECT key_id, tenant_id, key_hash, scopes FROM identity.api_keys
               WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
            digest,
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            return None
        return Principal(row["tenant_id"], row["key_id"], frozenset(row["scopes"]))

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
               ON CONFLICT (key_hash) DO UPDATE SET scopes = EXCLUDED.scopes, revoked_at = NULL
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

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        status: str = await self.pool.execute(
            "UPDATE identity.api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND key_id = $2 AND revoked_at IS NULL",
            tenant_id,
            key_id,
            datetime.now(UTC),
        )
        self._cache.clear()
        return status.endswith(" 1")

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
