"""Generic retention: batched, advisory-locked deletes of expired rows and the periodic loop that runs them.

`purge_expired` deletes rows older than `retention` (database clock) `batch` at a time, each batch in its own
transaction holding the transaction-level advisory lock `lock_key` taken without waiting: with several
replicas one purges and the others skip the round (return 0). `delete_sql` takes $1 = cutoff, $2 = batch
and returns the number of rows it deleted. `retention_loop` runs a purge after `first_delay_s`, then every
`interval_s`, until cancelled; a failed round is logged (error class only) and retried next interval.
Nothing identifying is read, logged or returned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

import asyncpg

log = logging.getLogger(__name__)


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


async def purge_expired(
    pool: asyncpg.Pool,
    *,
    lock_key: int,
    delete_sql: str,
    retention: timedelta,
    batch: int,
    pause_s: float,
    purged: _Counter | None = None,
) -> int:
    """Delete expired rows batch by batch; returns how many this call deleted (0 if another holds the lock)."""
    cutoff = await pool.fetchval("SELECT now() - $1::interval", retention)
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock_key):
                break  # another replica is purging; the next round will see what it left
            deleted: int = await conn.fetchval(delete_sql, cutoff, batch)
        total += deleted
        if purged is not None:
            purged.inc(deleted)
        if deleted < batch:
            break
        await asyncio.sleep(pause_s)
    return total


async def retention_loop(
    what: str,
    purge: Callable[[], Awaitable[int]],
    retention: timedelta,
    *,
    first_delay_s: float,
    interval_s: float,
) -> None:
    """Run `purge` after `first_delay_s`, then every `interval_s`, until cancelled. `what` names it in logs."""
    await asyncio.sleep(first_delay_s)
    while True:
        try:
            deleted = await purge()
        except Exception as exc:
            log.warning("retention purge failed", extra={"what": what, "error": type(exc).__name__})
        else:
            if deleted:
                log.info("retention purged", extra={"what": what, "count": deleted, "retention_days": retention.days})
        await asyncio.sleep(interval_s)
