"""Retention of the access audit against a real, migrated PostgreSQL: `purge_access_log` deletes
exactly the rows older than the retention, in bounded batches, counts them, is safe when several
replicas run it at once, and `retention_loop` survives a failed round."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from nervewatch.identity.access_log import PURGE_LOCK_KEY, purge_access_log, retention_loop

pytestmark = pytest.mark.integration

RETENTION = timedelta(days=2190)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def insert(pool: asyncpg.Pool, tenant: str, ages: list[timedelta]) -> None:
    """One audit row per age (relative to the database clock), with a patient id as real rows have."""
    await pool.executemany(
        """INSERT INTO identity.access_log (at, tenant_id, key_id, method, route, patient_id, alert_id, status)
           VALUES (now() - $1::interval, $2, 'key_0000000000000000', 'GET',
                   '/v1/patients/{patient_id}/trajectory', 'pt-retention', NULL, 200)""",
        [(age, tenant) for age in ages],
    )


async def ages_left(pool: asyncpg.Pool, tenant: str) -> list[timedelta]:
    rows = await pool.fetch(
        "SELECT now() - at AS age FROM identity.access_log WHERE tenant_id = $1 ORDER BY at", tenant
    )
    return [r["age"] for r in rows]


def purged_total() -> float:
    return REGISTRY.get_sample_value("nervewatch_access_log_purged_total") or 0.0


async def test_purge_deletes_only_rows_older_than_the_retention(pool: asyncpg.Pool) -> None:
    tenant = f"ret-{secrets.token_hex(3)}"
    old = [RETENTION + timedelta(minutes=1), RETENTION + timedelta(days=1), timedelta(days=4000)] + [
        RETENTION + timedelta(hours=h) for h in range(1, 23)
    ]
    kept = [timedelta(0), timedelta(days=30), RETENTION - timedelta(minutes=5)]
    await insert(pool, tenant, old + kept)
    before = purged_total()

    # Another replica holding the purge lock: this one backs off and deletes nothing.
    async with pool.acquire() as other, other.transaction():
        await other.execute("SELECT pg_advisory_xact_lock($1)", PURGE_LOCK_KEY)
        assert await purge_access_log(pool, RETENTION, batch=7) == 0
    assert len(await ages_left(pool, tenant)) == len(old) + len(kept)

    # 25 old rows in batches of 7: four statements, the last one short.
    deleted = await purge_access_log(pool, RETENTION, batch=7, pause_s=0)
    assert deleted == len(old)
    assert purged_total() - before == len(old)
    left = await ages_left(pool, tenant)
    assert len(left) == len(kept) and all(age < RETENTION for age in left)

    # Idempotent: nothing more to delete.
    assert await purge_access_log(pool, RETENTION, batch=7) == 0
    assert len(await ages_left(pool, tenant)) == len(kept)


async def test_concurrent_purges_delete_every_old_row_once(pool: asyncpg.Pool, database_url: str) -> None:
    """Three "replicas" (separate pools) purge at once: together they delete each old row exactly once."""
    tenant = f"ret-{secrets.token_hex(3)}"
    old = [RETENTION + timedelta(seconds=s) for s in range(1, 301)]
    await insert(pool, tenant, [*old, timedelta(hours=1)])
    replicas = [await asyncpg.create_pool(database_url, min_size=1, max_size=1) for _ in range(3)]
    try:
        counts = await asyncio.gather(*(purge_access_log(p, RETENTION, batch=20, pause_s=0.01) for p in replicas))
    finally:
        for p in replicas:
            await p.close()
    assert sum(counts) == len(old), counts
    assert len(await ages_left(pool, tenant)) == 1


async def test_retention_loop_purges_at_start_and_survives_a_failed_round(
    pool: asyncpg.Pool, database_url: str
) -> None:
    tenant = f"ret-{secrets.token_hex(3)}"
    await insert(pool, tenant, [RETENTION + timedelta(days=2), timedelta(minutes=1)])
    task = asyncio.create_task(retention_loop(pool, RETENTION, first_delay_s=0.05, interval_s=0.2))
    try:
        for _ in range(100):
            if len(await ages_left(pool, tenant)) == 1:
                break
            await asyncio.sleep(0.05)
        assert len(await ages_left(pool, tenant)) == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # A round that fails (here: the pool is closed) is logged and retried; the loop keeps running.
    broken = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await broken.close()
    task = asyncio.create_task(retention_loop(broken, RETENTION, first_delay_s=0, interval_s=0.05))
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_purge_has_an_index_on_the_timestamp(pool: asyncpg.Pool) -> None:
    """Each batch finds the oldest rows through an index leading with `at` (migration 004)."""
    defs = await pool.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'identity' AND tablename = 'access_log'"
    )
    assert any("(at)" in r["indexdef"] for r in defs), [r["indexdef"] for r in defs]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(
            "EXPLAIN SELECT id FROM identity.access_log WHERE at < now() - interval '6 years' ORDER BY at LIMIT 10000"
        )
    plan = "\n".join(r[0] for r in rows)
    assert "access_log_at" in plan, plan
