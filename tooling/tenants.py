"""`nervewatch tenants create|list|disable`: operator commands on identity tenants.

`create NAME` makes the tenant (id = NAME slugged) and an admin key with every scope, printed once
(only its hash is stored). `disable NAME|ID` revokes every active key of the tenant (the tenant row and its
data stay; services drop cached keys through the identity store's change notifications). Each call opens
and closes its own small pool; blocking only on PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from nervewatch.identity.store import SCOPES, IdentityStore

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def tenant_id_for(name: str) -> str:
    """The tenant id for an operator-given name: runs of other characters become '-', at most 64 chars."""
    slug = _SLUG.sub("-", name.strip()).strip("-")[:64]
    if not slug:
        raise ValueError("tenant name must contain a letter or digit")
    return slug


@dataclass(frozen=True, slots=True)
class TenantRow:
    tenant_id: str
    name: str
    created_at: datetime
    active_keys: int


async def create(dsn: str, name: str) -> tuple[str, str]:
    """Create tenant NAME with an all-scope admin key. Returns (tenant_id, raw key). ValueError if it exists."""
    tenant_id = tenant_id_for(name)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        if await pool.fetchval("SELECT 1 FROM identity.tenants WHERE tenant_id = $1", tenant_id):
            raise ValueError(f"tenant {tenant_id} already exists")
        store = IdentityStore(pool)
        await store.ensure_tenant(tenant_id, name.strip())
        _, raw = await store.create_key(tenant_id, SCOPES)
        return tenant_id, raw
    finally:
        await pool.close()


async def list_tenants(dsn: str) -> list[TenantRow]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        rows = await pool.fetch(
            """SELECT t.tenant_id, t.name, t.created_at,
                      count(k.key_id) FILTER (WHERE k.revoked_at IS NULL
                                              AND (k.expires_at IS NULL OR k.expires_at > now())) AS active
               FROM identity.tenants t LEFT JOIN identity.api_keys k USING (tenant_id)
               GROUP BY t.tenant_id ORDER BY t.tenant_id"""
        )
        return [TenantRow(r["tenant_id"], r["name"], r["created_at"], int(r["active"])) for r in rows]
    finally:
        await pool.close()


async def disable(dsn: str, name_or_id: str) -> tuple[str, int]:
    """Revoke every active key of the tenant with that id (or else that name). Returns (tenant_id, revoked).
    LookupError if there is no such tenant or the name is ambiguous."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        ids = [
            r["tenant_id"]
            for r in await pool.fetch(
                """SELECT tenant_id FROM identity.tenants WHERE tenant_id = $1
                   UNION SELECT tenant_id FROM identity.tenants WHERE name = $1
                         AND NOT EXISTS (SELECT 1 FROM identity.tenants WHERE tenant_id = $1)""",
                name_or_id,
            )
        ]
        if len(ids) != 1:
            raise LookupError("no such tenant" if not ids else "name matches several tenants; use the id")
        store = IdentityStore(pool)
        revoked = 0
        for key in await store.list_keys(ids[0]):
            if key.revoked_at is None and await store.revoke_key(ids[0], key.key_id):
                revoked += 1
        return ids[0], revoked
    finally:
        await pool.close()
