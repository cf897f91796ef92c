"""Transactional outbox for events a service publishes (table `<schema>.outbox`).

Writers insert rows in the same transaction as their state change (`add`). The consumer's commit
path (`nervewatch.kafka.consumer`, step 3) calls `drain_queued` after the transaction committed;
the background `relay` drains leftovers. `drain` publishes
pending rows in id order and deletes them once the broker acknowledged; rows are locked with
SKIP LOCKED so concurrent drainers never publish the same row at once. A crash after publishing
and before deleting republishes the row: consumers of these topics are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaProducer

from nervewatch import metrics
from nervewatch.kafka import produce_many

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, schema: str, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
        if not schema.isidentifier():
            raise ValueError("schema must be an identifier")
        self.table = f"{schema}.outbox"
        self.label = schema
        self.pool = pool
        self.producer = producer
        self._lock = asyncio.Lock()
        self._queued = False

    async def add(self, conn: asyncpg.Connection, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Queue (topic, key, value) records inside the caller's transaction (one statement)."""
        if records:
            self._queued = True
            topics, keys, values = zip(*records, strict=True)
            await conn.execute(
                f"INSERT INTO {self.table} (topic, key, value) "
                "SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[])",
                list(topics),
                list(keys),
                list(values),
            )

    async def drain_queued(self) -> int:
        """Drain when `add` queued records since the last drain started (else return 0 at once).

        Raises on broker or database errors; the records stay queued for the next call."""
        if not self._queued:
            return 0
        return await self.drain()

    async def drain(self, limit: int = 5000) -> int:
        """Publish and delete pending rows; returns how many were published. Raises on broker errors."""
        async with self._lock:
            self._queued = False
            try:
                return await self._drain(limit)
            except BaseException:
                self._queued = True  # the next `drain_queued` tries again
                raise

    async def _drain(self, limit: int) -> int:
        total = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    f"SELECT id, topic, key, value FROM {self.table} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                    limit,
                )
                if not rows:
                    break
                await produce_many(self.producer, [(r["topic"], r["key"], r["value"]) for r in rows])
                await conn.execute(f"DELETE FROM {self.table} WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
            total += len(rows)
            if len(rows) < limit:
                break
        return total

    async def observe(self) -> None:
        row = await self.pool.fetchrow(f"SELECT count(*) AS n, min(created_at) AS oldest FROM {self.table}")
        n = int(row["n"]) if row else 0
        metrics.OUTBOX_BACKLOG.labels(self.label).set(n)
        oldest = row["oldest"] if row else None
        metrics.OUTBOX_OLDEST_AGE.labels(self.label).set(time.time() - oldest.timestamp() if oldest else 0.0)

    async def relay(self, interval_s: float = 1.0) -> None:
        """Background loop: drain leftovers (e.g. after a crash) and export backlog metrics."""
        while True:
            try:
                await self.drain()
                await self.observe()
            except Exception as exc:  # broker or database down: try again next tick
                log.warning("outbox relay failed", extra={"outbox": self.label, "error": type(exc).__name__})
            await asyncio.sleep(interval_s)
