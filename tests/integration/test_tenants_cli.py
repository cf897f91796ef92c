"""`nervewatch tenants create|list|disable` as an operator runs it (a subprocess with DATABASE_URL)
against the real PostgreSQL; keys are checked with `IdentityStore.authenticate`, as services do."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from nervewatch.identity.store import REVOCATION_BOUND_S, IdentityStore
from tests.support import run_cli

pytestmark = pytest.mark.integration


def parse_created(out: str) -> tuple[str, str]:
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines())
    return fields["tenant_id"], fields["api_key"]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[IdentityStore]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    s = IdentityStore(pool)
    s.start_listener(database_url)  # as a running service: cached lookups, evicted by NOTIFY
    end = time.monotonic() + 10
    while not s.cache_trusted():
        assert time.monotonic() < end, "listener never became live"
        await asyncio.sleep(0.02)
    try:
        yield s
    finally:
        await s.stop_listener()
        await pool.close()


async def test_create_list_disable(database_url: str, store: IdentityStore) -> None:
    name = f"Clinic {secrets.token_hex(3)}"
    code, out, err = await run_cli(database_url, "tenants", "create", name)
    assert code == 0, err
    tenant_id, key = parse_created(out)
    assert key not in err
    principal = await store.authenticate(key)
    assert principal is not None and principal.tenant_id == tenant_id and principal.scopes == {"admin"}

    code, out, _ = await run_cli(database_url, "tenants", "list", "--json")
    assert code == 0
    assert key not in out and key[:8] not in out
    (row,) = [r for r in json.loads(out) if r["tenant_id"] == tenant_id]
    assert row["name"] == name and row["disabled_at"] is None and row["keys"] == 1 and row["active_keys"] == 1
    code, out, _ = await run_cli(database_url, "tenants", "list")
    assert code == 0 and tenant_id in out and name in out and key not in out

    assert await store.authenticate(key) is not None  # now served from the cache
    code, out, err = await run_cli(database_url, "tenants", "disable", name)
    committed = time.monotonic()
    assert code == 0, err
    assert tenant_id in out and "1 key(s) revoked" in out
    while await store.authenticate(key) is not None:
        assert time.monotonic() - committed < REVOCATION_BOUND_S, "revoked key still accepted"
        await asyncio.sleep(0.02)

    code, out, _ = await run_cli(database_url, "tenants", "list", "--json")
    (row,) = [r for r in json.loads(out) if r["tenant_id"] == tenant_id]
    assert row["disabled_at"] is not None and row["keys"] == 1 and row["active_keys"] == 0
    code, out, _ = await run_cli(database_url, "tenants", "list")
    (line,) = [ln for ln in out.splitlines() if ln.startswith(tenant_id)]
    assert line.split("\t")[-2:] == ["1", "0"]
    code, out, err = await run_cli(database_url, "tenants", "disable", tenant_id)  # idempotent, by id
    assert code == 0 and "0 key(s) revoked" in out, err


async def test_duplicate_name_and_unknown_tenant_exit_1(database_url: str) -> None:
    name = f"Dup {secrets.token_hex(3)}"
    assert (await run_cli(database_url, "tenants", "create", name))[0] == 0
    code, out, err = await run_cli(database_url, "tenants", "create", name.upper())
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "already exists" in err
    code, out, err = await run_cli(database_url, "tenants", "disable", f"nobody-{secrets.token_hex(3)}")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no tenant" in err
