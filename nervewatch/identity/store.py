"""API-key authentication, key lifecycle and tenant records.

Keys are random 256-bit tokens, so a single SHA-256 is the right hash (no stretching needed):
lookups go by hash, and the stored hash is compared in constant time.

Key cache and revocation (the contract: a revoked key stops working in every process within
`REVOCATION_BOUND_S` = 1 s of the revoking transaction's commit). Lookups are cached (bounded
LRU, at most `CACHE_TTL_S`), and a key's `expires_at` is checked on every cache hit, so expiry
(including the end of a rotation overlap) is exact. Every change of a key that matters (revoke,
rotation, a new expiry, new scopes, a new or deleted key) notifies the PostgreSQL channel
`KEY_CHANNEL` with the key id, from a trigger (migration 005) in the changing transaction, so the
notification is sent exactly when the change commits, whoever makes it (admin API, CLI, SQL).
Every process holds one LISTEN connection (`start_listener`, a background task that reconnects
with backoff) and evicts the notified key from its cache at once.

A cached lookup is trusted only while the listener is known to be live: it pings its connection
every `LISTEN_PING_S` and a successful ping that started at t means every notification committed
before t has arrived (PostgreSQL sends them in order, before the ping's answer), so the cache is
trusted until t + `LISTEN_TRUST_S`. Otherwise (no listener, before it connects, while it
reconnects, while its connection stalls) every `authenticate` reads the database: slower, never
stale. A lookup is only stored when no notification, reconnect or eviction happened while it ran
(`_epoch`), so a lookup that raced a revocation cannot re-insert the revoked key. The bound is
thus `LISTEN_TRUST_S` + the ping time, well inside 1 s, even while the listener is down.

Blocking: `authenticate` awaits at most one indexed query (none on a trusted cache hit, plus
the `last_used_at` update at most every `LAST_USED_EVERY_S` per key). The listener runs on its own
connection, not the pool's. Shutdown: `stop_listener()` cancels the task and closes its
connection (bounded by a few seconds); the cache is untrusted from then on. The store stays
usable without a listener (CLI, tests): every lookup then reads the database.

Webhook secrets rotate with an overlap: the previous secret stays valid for signing until
`previous_secret_expires_at`, and the dispatcher signs every webhook with both meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from nervewatch.identity.access_log import AccessLog

log = logging.getLogger(__name__)

SCOPES = frozenset({"ingest", "care", "admin"})
CACHE_TTL_S = 30.0
CACHE_MAX = 10_000
LAST_USED_EVERY_S = 60.0
# The revocation contract: a revoked key is refused everywhere within this long of the commit.
REVOCATION_BOUND_S = 1.0
KEY_CHANNEL = "nervewatch_identity_keys"  # notified with the key id by the trigger of migration 005
LISTEN_PING_S = 0.2  # the listener pings its connection this often...
LISTEN_TRUST_S = 0.5  # ...and the cache is trusted for this long after a ping that started then
LISTEN_PING_TIMEOUT_S = 0.4
LISTEN_RETRY_MAX_S = 5.0
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


def listener_name() -> str:
    """The `application_name` of this process's listener connection (find it in `pg_stat_activity`)."""
    return f"nervewatch-key-listener-{os.getpid()}"


class IdentityStore:
    """Reads and writes the `identity` schema. Safe for concurrent use from one event loop."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # digest -> (fetched at (monotonic), principal, expires_at as unix time or None)
        self._cache: OrderedDict[bytes, tuple[float, Principal, float | None]] = OrderedDict()
        self._digests: dict[str, bytes] = {}  # key id -> digest of its cached lookup
        # digest -> fetched at, for unknown (or revoked, expired) keys: bounded on their own, so a
        # spray of random keys cannot push the valid ones out of the cache
        self._misses: OrderedDict[bytes, float] = OrderedDict()
        self._last_used: dict[str, float] = {}
        self._epoch = 0  # bumped by every notification, eviction and listener (re)connect or loss
        self._trusted_until = 0.0  # monotonic; the cache may be read before this instant
        self._listener: asyncio.Task[None] | None = None
        self.access_log = AccessLog(pool)

    def cache_trusted(self) -> bool:
        """Whether cached lookups may be used now (the listener is live; see the module doc)."""
        return time.monotonic() < self._trusted_until

    async def authenticate(self, raw_key: str) -> Principal | None:
        """The key's principal, or None for an unknown, revoked or expired key, or a disabled tenant's."""
        if not raw_key or len(raw_key) > 256:
            return None
        digest = hash_key(raw_key)
        now = time.monotonic()
        principal: Principal | None
        hit = None
        if now < self._trusted_until:
            missed = self._misses.get(digest)
            if missed is not None and now - missed < CACHE_TTL_S:
                return None
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            self._cache.move_to_end(digest)
            principal, expires = hit[1], hit[2]
        else:
            epoch = self._epoch
            principal, expires = await self._lookup(digest)
            if epoch == self._epoch and self.cache_trusted():
                self._store(digest, now, principal, expires)
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

    async def authenticate_key_id(self, key_id: str) -> Principal | None:
        """The principal of the key with this id, or None for an unknown, revoked or expired key:
        for credentials that stand for a key without carrying it (a stream ticket), and to re-check
        a long-lived response. As fresh as `authenticate` (the same cache, trusted under the same
        condition); no `last_used_at` update. Blocking: at most one indexed query."""
        if not key_id or len(key_id) > 64:
            return None
        now = time.monotonic()
        if now < self._trusted_until:
            digest = self._digests.get(key_id)
            hit = self._cache.get(digest) if digest is not None else None
            if hit is not None and now - hit[0] < CACHE_TTL_S:
                principal, expires = hit[1], hit[2]
                return None if expires is not None and time.time() >= expires else principal
        epoch = self._epoch
        row = await self.pool.fetchrow(
            """SELECT key_id, tenant_id, key_hash, scopes, expires_at FROM identity.api_keys
               WHERE key_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
            key_id,
        )
        if row is None:
            return None
        found = Principal(row["tenant_id"], row["key_id"], frozenset(row["scopes"]))
        expires_at = row["expires_at"].timestamp() if row["expires_at"] is not None else None
        if epoch == self._epoch and self.cache_trusted():
            self._store(bytes(row["key_hash"]), now, found, expires_at)
        if expires_at is not None and time.time() >= expires_at:
            return None
        return found

    def _store(self, digest: bytes, at: float, principal: Principal | None, expires: float | None) -> None:
        self._evict_digest(digest)
        self._misses.pop(digest, None)
        if principal is None:
            self._misses[digest] = at
            while len(self._misses) > CACHE_MAX:
                self._misses.popitem(last=False)
            return
        self._cache[digest] = (at, principal, expires)
        self._digests[principal.key_id] = digest
        while len(self._cache) > CACHE_MAX:
            self._evict_digest(next(iter(self._cache)))

    def _evict_digest(self, digest: bytes) -> None:
        entry = self._cache.pop(digest, None)
        if entry is not None:
            self._digests.pop(entry[1].key_id, None)

    async def _lookup(self, digest: bytes) -> tuple[Principal | None, float | None]:
        row = await self.pool.fetchrow(
            # A disabled tenant's keys are refused here even if one escaped revocation (`tenants disable`
            # marks the tenant before revoking its keys; a key may be created later).
            """SELECT k.key_id, k.tenant_id, k.key_hash, k.scopes, k.expires_at
               FROM identity.api_keys k JOIN identity.tenants t ON t.tenant_id = k.tenant_id
               WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
                 AND t.disabled_at IS NULL""",
            digest,
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            return None, None
        expires = row["expires_at"].timestamp() if row["expires_at"] is not None else None
        return Principal(row["tenant_id"], row["key_id"], frozenset(row["scopes"])), expires

    def key_changed(self, key_id: str) -> None:
        """Evict the cached lookup of `key_id` and every cached miss (a new key may match one).

        Called for each notification on `KEY_CHANNEL`; O(1) amortised."""
        self._epoch += 1
        digest = self._digests.get(key_id)
        if digest is not None:
            self._evict_digest(digest)
        self._misses.clear()

    def forget_cached(self) -> None:
        """Drop every cached lookup of this process (after a local revoke or rotation)."""
        self._epoch += 1
        self._cache.clear()
        self._digests.clear()
        self._misses.clear()

    def start_listener(self, dsn: str) -> None:
        """Start the key-change listener on its own connection to `dsn` (idempotent, non-blocking).

        Until it has connected and pinged, cached lookups are not trusted."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(dsn), name="identity-key-listener")

    async def stop_listener(self) -> None:
        """Cancel the listener and close its connection; from then on the cache is not trusted."""
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._untrust()

    def _untrust(self) -> None:
        self._trusted_until = 0.0
        self.forget_cached()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.key_changed(payload)

    async def _listen(self, dsn: str) -> None:
        """LISTEN on `KEY_CHANNEL` and ping, forever; reconnect with backoff after any failure."""
        delay = LISTEN_PING_S
        connected_once = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10, server_settings={"application_name": listener_name()})
                await conn.add_listener(KEY_CHANNEL, self._on_notify)
                # Changes made while nobody listened were missed: start from an empty cache.
                self.forget_cached()
                if connected_once:
                    log.info("key change listener reconnected")
                connected_once = True
                delay = LISTEN_PING_S
                while True:
                    started = time.monotonic()
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=LISTEN_PING_TIMEOUT_S)
                    self._trusted_until = started + LISTEN_TRUST_S
                    await asyncio.sleep(LISTEN_PING_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "key change listener lost; key lookups read the database", extra={"error": type(exc).__name__}
                )
            finally:
                self._untrust()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_MAX_S)

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
