"""`IdentityStore`'s key cache against the real PostgreSQL: LISTEN/NOTIFY eviction, and no trust in
the cache while the listener is not live (never started, stopped, or its connection killed).

Key changes are made with plain SQL on another connection, as another process (or an operator)
would, so only the trigger of migration 005 and the listener can tell this store. The 1 s deadlines
are the contract's bound (`REVOCATION_BOUND_S`), measured from the change's commit."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from nervewatch.identity.store import (
    KEY_CHANNEL,
    REVOCATION_BOUND_S,
    SCOPES,
    IdentityStore,
    Principal,
    hash_key,
    listener_name,
)

pytestmark = pytest.mark.integration


async def within(deadline_s: float, started: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Seconds from `started` (monotonic) until `check()` holds; fails past `deadline_s`."""
    while True:
        if await check():
            return time.monotonic() - started
        assert time.monotonic() - started < deadline_s, f"not within {deadline_s} s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def store(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[IdentityStore]:
    s = IdentityStore(pool)
    s.start_listener(database_url)
    await within(10, time.monotonic(), _trusted(s))
    try:
        yield s
    finally:
        await s.stop_listener()


def _trusted(s: IdentityStore) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return s.cache_trusted()

    return check


def _refused(s: IdentityStore, key: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await s.authenticate(key) is None

    return check


async def new_key(pool: asyncpg.Pool) -> tuple[str, str]:
    s = IdentityStore(pool)
    tenant = f"rev-{secrets.token_hex(3)}"
    await s.ensure_tenant(tenant, tenant)
    return await s.create_key(tenant, SCOPES)


async def revoke_by_sql(pool: asyncpg.Pool, key_id: str) -> float:
    """Revoke as another process would; returns the monotonic time of the commit's answer."""
    await pool.execute("UPDATE identity.api_keys SET revoked_at = now() WHERE key_id = $1", key_id)
    return time.monotonic()


async def test_a_revocation_elsewhere_evicts_the_cached_key(store: IdentityStore, pool: asyncpg.Pool) -> None:
    key_id, key = await new_key(pool)
    assert isinstance(await store.authenticate(key), Principal)
    assert hash_key(key) in store._cache  # served from the cache from now on
    elapsed = await within(REVOCATION_BOUND_S, await revoke_by_sql(pool, key_id), _refused(store, key))
    assert hash_key(key) not in store._cache, elapsed


async def test_a_lookup_by_key_id_shares_the_cache_and_its_eviction(store: IdentityStore, pool: asyncpg.Pool) -> None:
    """`authenticate_key_id` (stream tickets, stream re-checks): cached like `authenticate`, and a
    revocation elsewhere evicts it within the same bound."""
    key_id, key = await new_key(pool)
    found = await store.authenticate_key_id(key_id)
    assert found is not None and found.key_id == key_id
    assert hash_key(key) in store._cache  # cached under the key's digest, so both lookups share it
    assert await store.authenticate(key) == found
    assert await store.authenticate_key_id("key_" + "0" * 16) is None

    async def refused_by_id() -> bool:
        return await store.authenticate_key_id(key_id) is None

    await within(REVOCATION_BOUND_S, await revoke_by_sql(pool, key_id), refused_by_id)
    assert await store.authenticate(key) is None


async def test_a_shortened_expiry_elsewhere_applies(store: IdentityStore, pool: asyncpg.Pool) -> None:
    key_id, key = await new_key(pool)
    assert await store.authenticate(key) is not None
    await pool.execute("UPDATE identity.api_keys SET expires_at = now() WHERE key_id = $1", key_id)
    await within(REVOCATION_BOUND_S, time.monotonic(), _refused(store, key))


async def test_a_new_key_is_not_hidden_by_a_cached_miss(store: IdentityStore, pool: asyncpg.Pool) -> None:
    key_id, key = await new_key(pool)
    await revoke_by_sql(pool, key_id)
    await within(REVOCATION_BOUND_S, time.monotonic(), _refused(store, key))
    assert await store.authenticate(key) is None  # now a cached miss
    await pool.execute("UPDATE identity.api_keys SET revoked_at = NULL WHERE key_id = $1", key_id)
    started = time.monotonic()

    async def accepted() -> bool:
        return await store.authenticate(key) is not None

    await within(REVOCATION_BOUND_S, started, accepted)


async def test_last_used_updates_do_not_notify(pool: asyncpg.Pool, database_url: str) -> None:
    key_id, _ = await new_key(pool)
    conn = await asyncpg.connect(database_url)
    got: list[str] = []
    try:
        await conn.add_listener(KEY_CHANNEL, lambda *a: got.append(a[3]))
        await pool.execute("UPDATE identity.api_keys SET last_used_at = now() WHERE key_id = $1", key_id)
        await pool.execute("UPDATE identity.api_keys SET revoked_at = now() WHERE key_id = $1", key_id)
        await within(5, time.monotonic(), _has(got))
        await conn.execute("SELECT 1")
        assert got == [key_id]
    finally:
        await conn.close()


def _has(items: list[Any]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(items)

    return check


async def test_a_lookup_that_raced_a_notification_is_not_cached(
    store: IdentityStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, key = await new_key(pool)
    real = store._lookup

    async def racing(digest: bytes) -> Any:
        result = await real(digest)
        store.key_changed(key_id)  # the revocation's notification arrives while the lookup is in flight
        return result

    monkeypatch.setattr(store, "_lookup", racing)
    assert await store.authenticate(key) is not None
    assert hash_key(key) not in store._cache


async def test_without_a_listener_every_lookup_reads_the_database(pool: asyncpg.Pool) -> None:
    store = IdentityStore(pool)  # never started: the CLI, the tests' helpers
    key_id, key = await new_key(pool)
    assert await store.authenticate(key) is not None
    assert not store.cache_trusted() and not store._cache
    await revoke_by_sql(pool, key_id)
    assert await store.authenticate(key) is None  # at once


async def test_a_lost_listener_is_not_trusted_and_reconnects(
    store: IdentityStore, pool: asyncpg.Pool, database_url: str
) -> None:
    key_id, key = await new_key(pool)
    assert await store.authenticate(key) is not None
    killed = await pool.fetchval(
        """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE application_name = $1 AND datname = current_database()""",
        listener_name(),
    )
    assert killed == 1
    # Revoked while nobody listens: no notification reaches this store, and still the bound holds.
    await within(REVOCATION_BOUND_S, await revoke_by_sql(pool, key_id), _refused(store, key))
    await within(15, time.monotonic(), _trusted(store))  # reconnected (with backoff)
    other_id, other = await new_key(pool)
    assert await store.authenticate(other) is not None
    await within(REVOCATION_BOUND_S, await revoke_by_sql(pool, other_id), _refused(store, other))


async def test_stopping_the_listener_ends_trust(store: IdentityStore, pool: asyncpg.Pool) -> None:
    key_id, key = await new_key(pool)
    assert await store.authenticate(key) is not None
    await store.stop_listener()
    assert not store.cache_trusted()
    await revoke_by_sql(pool, key_id)
    assert await store.authenticate(key) is None
