"""Operator tenant administration (`nervewatch tenants create|list|disable`).

Keys are issued and revoked through `IdentityStore` (`issue_key`, `revoke_key`), so every change
notifies `KEY_CHANNEL` from the trigger of migration 005 and running services refuse a revoked key
within `REVOCATION_BOUND_S` of its commit. Nothing here logs key material, secrets or names.

Blocking: each function awaits a handful of indexed queries. Commit: `create_tenant` commits the
tenant, then its key (a failure in between leaves a tenant without keys: disable it and retry).
`disable_tenant` commits the disabled mark first, then each key's revocation; it is idempotent, so
re-running it after an interruption finishes the job.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from nervewatch.identity.store import IdentityStore

ADMIN_SCOPES = frozenset({"admin"})
# Serialises the duplicate-name check and the insert of concurrent `create_tenant` calls.
_CREATE_LOCK_KEY = 0x4E57_544E  # "NWTN"
MAX_NAME_LEN = 200


class TenantExists(Exception):
    """A tenant with that name (case-insensitive) already exists."""


class TenantNotFound(LookupError):
    """No tenant has that id or name."""


class TenantAmbiguous(LookupError):
    """Several tenants share that name; use the id."""


@dataclass(frozen=True, slots=True)
class TenantRow:
    """What `list` shows about a tenant: never keys, hashes or secrets."""

    tenant_id: str
    name: str
    created_at: datetime
    disabled_at: datetime | None
    keys: int  # all keys ever issued
    active_keys: int  # neither revoked nor expired

    def to_json(self) -> dict[str, str | int | None]:
        return {
            "tenant_id": self.tenant_id,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "disabled_at": None if self.disabled_at is None else self.disabled_at.isoformat(),
            "keys": self.keys,
            "active_keys": self.active_keys,
        }


@dataclass(frozen=True, slots=True)
class CreatedTenant:
    tenant_id: str
    key_id: str
    api_key: str  # shown once; only its hash is stored


def new_tenant_id() -> str:
    return "tn_" + secrets.token_hex(6)


async def create_tenant(store: IdentityStore, name: str) -> CreatedTenant:
    """Create a tenant named `name` and its first admin key. Raises TenantExists, ValueError (bad name).

    Needs two pool connections (one holds the creation lock meanwhile)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LEN or not name.isprintable():
        raise ValueError(f"tenant name must be 1-{MAX_NAME_LEN} printable characters")
    tenant_id = new_tenant_id()
    async with store.pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _CREATE_LOCK_KEY)
        try:
            taken = await conn.fetchval(
                "SELECT count(*) FROM identity.tenants WHERE lower(name) = lower($1) OR tenant_id = $1", name
            )
            if taken:
                raise TenantExists(name)
            await store.ensure_tenant(tenant_id, name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _CREATE_LOCK_KEY)
    info, raw = await store.issue_key(tenant_id, ADMIN_SCOPES)
    return CreatedTenant(tenant_id, info.key_id, raw)


async def list_tenants(pool: asyncpg.Pool) -> list[TenantRow]:
    rows = await pool.fetch(
        """SELECT t.tenant_id, t.name, t.created_at, t.disabled_at,
                  count(k.key_id) AS keys,
                  count(k.key_id) FILTER (WHERE k.revoked_at IS NULL
                                            AND (k.expires_at IS NULL OR k.expires_at > now())) AS active_keys
           FROM identity.tenants t LEFT JOIN identity.api_keys k ON k.tenant_id = t.tenant_id
           GROUP BY t.tenant_id ORDER BY t.created_at, t.tenant_id"""
    )
    return [
        TenantRow(r["tenant_id"], r["name"], r["created_at"], r["disabled_at"], r["keys"], r["active_keys"])
        for r in rows
    ]


async def resolve_tenant(pool: asyncpg.Pool, name_or_id: str) -> str:
    """The tenant id for an id or (case-insensitive) name. Raises TenantNotFound, TenantAmbiguous."""
    if await pool.fetchval("SELECT 1 FROM identity.tenants WHERE tenant_id = $1", name_or_id):
        return name_or_id
    ids = await pool.fetch("SELECT tenant_id FROM identity.tenants WHERE lower(name) = lower($1)", name_or_id)
    if not ids:
        raise TenantNotFound(name_or_id)
    if len(ids) > 1:
        raise TenantAmbiguous(name_or_id)
    return str(ids[0]["tenant_id"])


async def disable_tenant(store: IdentityStore, name_or_id: str) -> tuple[str, int]:
    """Mark the tenant disabled and revoke every active key. Returns (tenant id, keys revoked now)."""
    tenant_id = await resolve_tenant(store.pool, name_or_id)
    await store.pool.execute(
        "UPDATE identity.tenants SET disabled_at = coalesce(disabled_at, now()) WHERE tenant_id = $1", tenant_id
    )
    revoked = 0
    for key in await store.list_keys(tenant_id):
        if key.revoked_at is None and await store.revoke_key(tenant_id, key.key_id):
            revoked += 1
    return tenant_id, revoked
