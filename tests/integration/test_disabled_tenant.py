"""A disabled tenant's keys are refused at key lookup, even a key that was never revoked.

`tenants disable` marks the tenant first and revokes its keys after; a failure in between, or a
key created for the tenant later, must still not authenticate: the lookup itself requires the
tenant not to be disabled.
"""

from __future__ import annotations

import secrets

import asyncpg
import pytest

from nervewatch.identity.store import SCOPES, IdentityStore
from tests.support import create_tenant

pytestmark = pytest.mark.integration


async def test_an_unrevoked_key_of_a_disabled_tenant_is_refused(database_url: str) -> None:
    tenant = await create_tenant(database_url, f"disabled-{secrets.token_hex(3)}")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        store = IdentityStore(pool)  # no listener: every lookup reads the database
        assert await store.authenticate(tenant.key) is not None
        await pool.execute("UPDATE identity.tenants SET disabled_at = now() WHERE tenant_id = $1", tenant.tenant_id)
        assert await store.authenticate(tenant.key) is None  # the key itself is still unrevoked
        _, later = await store.create_key(tenant.tenant_id, SCOPES)
        assert await store.authenticate(later) is None
        await pool.execute("UPDATE identity.tenants SET disabled_at = NULL WHERE tenant_id = $1", tenant.tenant_id)
        assert await store.authenticate(tenant.key) is not None  # only the mark refused it
    finally:
        await pool.close()
