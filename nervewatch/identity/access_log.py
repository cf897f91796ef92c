"""Audit of data access by care-team keys, written asynchronously in batches.

`AccessLog.record` never blocks and never raises: rows go to a bounded in-process queue that a
background task flushes to `identity.access_log` every `interval_s` or as soon as `batch` rows
are waiting (one COPY per batch). A full queue drops the new row; a failed write puts its rows
back (as far as the queue bound allows) and is retried on the next tick, at most
`MAX_ATTEMPTS` times (so one bad row cannot hold the queue forever). Every dropped row is
counted in `nervewatch_access_log_dropped_total{reason}`; nothing identifying goes to the logs.

Retention: `purge_access_log` deletes rows older than the retention (`NERVEWATCH_ACCESS_LOG_RETENTION_DAYS`)
in batches of `PURGE_BATCH` rows, one short transaction per batch, so it never holds locks for long;
`retention_loop` runs it shortly after start and then every `PURGE_INTERVAL_S` (the ingest service
runs it). Each batch first takes a transaction-level advisory lock without waiting: when several
replicas purge at once, one deletes and the others stop for this round. The DELETEs are idempotent
anyway (rows older than a cutoff; `SKIP LOCKED`). Purged rows are counted in
`nervewatch_access_log_purged_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta

import asyncpg

from nervewatch.metrics import ACCESS_LOG_DROPPED, ACCESS_LOG_PURGED, ACCESS_LOG_WRITTEN
from nervewatch.retention import purge_expired
from nervewatch.retention import retention_loop as generic_retention_loop

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 3
PURGE_BATCH = 10_000  # rows per DELETE statement (and transaction)
PURGE_INTERVAL_S = 3600.0
PURGE_FIRST_DELAY_S = 60.0  # after start: let the process settle (and not purge on every crash-loop restart at once)
PURGE_PAUSE_S = 0.1  # between two batches, so a long purge leaves room for other queries
PURGE_LOCK_KEY = 0x4E57_414C  # "NWAL": advisory lock of the purge (transaction level)
COLUMNS = ("at", "tenant_id", "key_id", "method", "route", "patient_id", "alert_id", "status")


@dataclass(frozen=True, slots=True)
class AccessRecord:
    at: datetime
    tenant_id: str
    key_id: str
    method: str
    route: str
    patient_id: str | None
    alert_id: str | None
    status: int


class AccessLog:
    """A bounded queue of access records and the task that flushes it. One per process."""

    def __init__(
        self, pool: asyncpg.Pool, *, max_queue: int = 20_000, batch: int = 500, interval_s: float = 1.0
    ) -> None:
        self.pool = pool
        self.max_queue = max_queue
        self.batch = batch
        self.interval_s = interval_s
        self._rows: deque[AccessRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._failures = 0  # consecutive failed writes of the batch at the head of the queue

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, row: AccessRecord) -> None:
        """Queue one row. Never blocks, never raises."""
        if len(self._rows) >= self.max_queue:
            ACCESS_LOG_DROPPED.labels("queue_full").inc()
            return
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="access-log")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the flusher and write what is queued (bounded by `timeout_s`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        try:
            await asyncio.wait_for(self.flush(final=True), timeout=timeout_s)
        except Exception as exc:
            log.warning("access log final flush failed", extra={"error": type(exc).__name__})
        if self._rows:
            ACCESS_LOG_DROPPED.labels("write_failed").inc(len(self._rows))
            self._rows.clear()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self, final: bool = False) -> int:
        """Write queued rows in batches; returns how many were written. Stops at the first failure."""
        written = 0
        async with self._flush_lock:
            while self._rows:
                batch = [self._rows.popleft() for _ in range(min(self.batch, len(self._rows)))]
                try:
                    await self.pool.copy_records_to_table(
                        "access_log",
                        schema_name="identity",
                        columns=COLUMNS,
                        records=[astuple(r) for r in batch],
                    )
                except Exception as exc:
                    log.warning("access log write failed", extra={"error": type(exc).__name__, "count": len(batch)})
                    self._failures += 1
                    if final or self._failures >= MAX_ATTEMPTS:
                        self._failures = 0
                        ACCESS_LOG_DROPPED.labels("write_failed").inc(len(batch))
                        if final:
                            continue
                        break
                    self._requeue(batch)
                    break
                self._failures = 0
                written += len(batch)
                ACCESS_LOG_WRITTEN.inc(len(batch))
        return written

    def _requeue(self, batch: list[AccessRecord]) -> None:
        """Put a failed batch back at the front; the newest rows beyond the bound are dropped."""
        self._rows.extendleft(reversed(batch))
        dropped = 0
        while len(self._rows) > self.max_queue:
            self._rows.pop()
            dropped += 1
        if dropped:
            ACCESS_LOG_DROPPED.labels("write_failed").inc(dropped)


async def purge_access_log(
    pool: asyncpg.Pool, retention: timedelta, *, batch: int = PURGE_BATCH, pause_s: float = PURGE_PAUSE_S
) -> int:
    """Delete the rows older than `retention` (by the database clock), `batch` rows per transaction.

    Returns how many rows this call deleted; 0 also when another process holds the purge lock (it
    is purging right now). Only timestamps are read: nothing identifying is logged or returned."""
    return await purge_expired(
        pool,
        lock_key=PURGE_LOCK_KEY,
        delete_sql="""WITH doomed AS (
                   SELECT id FROM identity.access_log WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED
               ), gone AS (
                   DELETE FROM identity.access_log a USING doomed WHERE a.id = doomed.id RETURNING 1
               )
               SELECT count(*) FROM gone""",
        retention=retention,
        batch=batch,
        pause_s=pause_s,
        purged=ACCESS_LOG_PURGED,
    )


async def retention_loop(
    pool: asyncpg.Pool,
    retention: timedelta,
    *,
    first_delay_s: float = PURGE_FIRST_DELAY_S,
    interval_s: float = PURGE_INTERVAL_S,
) -> None:
    """`nervewatch.retention.retention_loop` over `purge_access_log`, until cancelled."""
    await generic_retention_loop(
        "access_log",
        lambda: purge_access_log(pool, retention),
        retention,
        first_delay_s=first_delay_s,
        interval_s=interval_s,
    )
