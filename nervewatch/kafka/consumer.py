"""`BatchConsumer`: the one at-least-once commit path every consumer uses.

Each fetched batch goes through these steps, in this order, and only this code runs them:

1. **decode** every record (`decode`); one that cannot be decoded is dead-lettered with its
   reason, partition and offset, and the batch goes on;
2. **handle** the decoded batch in one database transaction (`handle`), which the handler
   **commits** before returning. A failure caused by an unreachable dependency is retried with
   backoff forever (the partition waits, nothing is skipped); any other failure is retried, then
   the batch is split and the record that still fails on its own is dead-lettered with reason
   `processing_error`;
3. **drain the outbox** (`outbox.drain_queued()`), when one is given: the events the transaction
   queued are published. A failing drain is retried on its own, with backoff, until it succeeds;
   the transaction is never re-run for it (its rows are durable; the outbox relay would publish
   them too);
4. **commit the offsets** of the whole batch. A crash before this redelivers the batch, so handlers
   are idempotent by event id.

The dead-letter limit (`nervewatch/deadletter_limit.py`) bounds both kinds of dead letter: when
one more would exceed it, the consumer **halts** instead: it commits nothing further, leaves the
group, reports unready (`ready()` False, `nervewatch_consumer_halted` 1) and logs the reason once
at error level; the records wait, uncommitted, for a fixed deploy (a restart).

`stop()` finishes the batch in flight, commits it and leaves the group (a drain still failing at
stop leaves that batch uncommitted: it is redelivered). A watchdog recreates the Kafka client when
the consumer has held lag without committing for twice `consumer_stall_seconds` (a wedged client,
a broker that lost its state): the batch in flight is abandoned uncommitted, missing topics are
re-created, and a new client re-reads from the last committed offset, so nothing is skipped.

Injection points (for tests and tools): `client_factory` builds the Kafka client, `ensure_topics`
re-creates topics on restart, `retry_delay_s` is the first retry delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from nervewatch import metrics
from nervewatch.deadletter_limit import DeadLetterLimit
from nervewatch.kafka import admin
from nervewatch.kafka.deadletters import DeadLetters
from nervewatch.kafka.decoding import Decoded, DecodeError
from nervewatch.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RETRY_DELAY_S = 5.0

# Errors that mean "a dependency is unreachable", as opposed to "this data is bad".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    KafkaError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.AdminShutdownError,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean a dependency is unreachable (retry), false for bad data."""
    return isinstance(exc, TRANSIENT_ERRORS)


class ConsumerHalted(Exception):
    """Raised inside the consumer loop when the dead-letter limit is reached."""


class ConsumerClient(Protocol):
    """The part of `AIOKafkaConsumer` the consumer uses (what a test double implements)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    def assignment(self) -> set[TopicPartition]: ...
    def highwater(self, tp: TopicPartition) -> int | None: ...
    async def position(self, tp: TopicPartition) -> int: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> Any: ...


class Drainable(Protocol):
    """An outbox: `drain_queued` publishes what transactions queued since the last drain; raises on failure."""

    async def drain_queued(self) -> int: ...


class BatchConsumer(Generic[T]):
    """Consume `topics` in group `group_id` through the commit path of this module."""

    def __init__(
        self,
        *,
        settings: Settings,
        group_id: str,
        topics: Sequence[str],
        decode: Callable[[ConsumerRecord], T],
        handle: Callable[[list[Decoded[T]]], Awaitable[None]],
        dead_letters: DeadLetters,
        outbox: Drainable | None = None,
        client_factory: Callable[[], ConsumerClient] | None = None,
        ensure_topics: Callable[[Sequence[str]], Awaitable[object]] | None = None,
        retry_delay_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.topics = list(topics)
        self.decode = decode
        self.handle = handle
        self.dead_letters = dead_letters
        self.outbox = outbox
        self._client_factory = client_factory or self._new_client
        self._ensure_topics = ensure_topics or (lambda topics: admin.ensure_topics(settings, topics))
        self.retry_delay_s = retry_delay_s
        self._consumer: ConsumerClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.last_progress = time.monotonic()
        self.lag = 0
        self._last_lag_check = 0.0
        self._lag_labels: set[tuple[str, str]] = set()
        self.batches = 0
        self.restarts = 0
        self._watchdog: asyncio.Task[None] | None = None
        self.limit = DeadLetterLimit(
            max_consecutive=settings.dead_letter_max_consecutive,
            max_ratio=settings.dead_letter_max_ratio,
            window=settings.dead_letter_window,
        )
        self.halted: str | None = None

    def _new_client(self) -> ConsumerClient:
        client: ConsumerClient = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=admin.bootstrap(self.settings),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.consumer_max_batch,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            request_timeout_ms=max(self.settings.kafka_request_timeout_ms, 40_000),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=300_000,
            # Notice re-created topics (a broker that lost its state) within seconds, not minutes.
            metadata_max_age_ms=5_000,
        )
        return client

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group and start the loop and its watchdog; blocks until the client has started."""
        self._consumer = self._client_factory()
        await self._consumer.start()
        self.last_progress = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")
        self._watchdog = asyncio.create_task(self._watch(), name=f"consumer-watchdog-{self.group_id}")

    async def stop(self) -> None:
        """Finish the batch in flight, commit it and leave the group."""
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(BaseException):
                await self._watchdog
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def ready(self) -> bool:
        """Readiness: the consumer loop runs, is not stalled and was not halted by its dead-letter limit."""
        return self.halted is None and self.running and not self.stalled()

    def stalled(self) -> bool:
        """True while the consumer holds lag but has made no progress for `consumer_stall_seconds`."""
        stalled = self.lag > 0 and time.monotonic() - self.last_progress > self.settings.consumer_stall_seconds
        metrics.CONSUMER_STALLED.labels(self.group_id).set(1 if stalled else 0)
        return stalled

    async def _watch(self) -> None:
        """Recreate the client when the consumer has been stalled for twice the stall threshold."""
        interval = min(1.0, self.settings.consumer_stall_seconds / 4)
        while not self._stopping.is_set():
            await asyncio.sleep(interval)
            now = time.monotonic()
            idle = now - self.last_progress
            dead = self._task is None or self._task.done()
            stalled = self.lag > 0 and idle > 2 * self.settings.consumer_stall_seconds
            if self.halted is not None:
                return
            if (dead or stalled) and not self._stopping.is_set():
                log.warning(
                    "consumer stalled or stopped; recreating the client",
                    extra={"group": self.group_id, "lag": self.lag, "idle_s": round(idle, 1), "dead": dead},
                )
                try:
                    await self._restart()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # broker still away: the next round tries again
                    log.warning(
                        "consumer restart failed; will try again",
                        extra={"group": self.group_id, "error": type(exc).__name__},
                    )
                    await asyncio.sleep(1)

    async def _restart(self) -> None:
        """Abandon the batch in flight (uncommitted), close the client, re-create topics, rejoin."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), timeout=10)
        self.restarts += 1
        self.last_progress = time.monotonic()
        self.lag = 0
        if self._stopping.is_set():
            return
        await self._ensure_topics(self.topics)
        self._consumer = self._client_factory()
        await self._consumer.start()
        self.last_progress = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")

    async def _run(self) -> None:
        assert self._consumer is not None
        while not self._stopping.is_set():
            try:
                batch = await self._consumer.getmany(timeout_ms=500, max_records=self.settings.consumer_max_batch)
            except KafkaError:
                log.warning("fetch failed; retrying", exc_info=True)
                await asyncio.sleep(1)
                continue
            records = [r for recs in batch.values() for r in recs]
            if records:
                try:
                    await self._process(records)
                except ConsumerHalted:
                    await self._halt()
                    return
            await self._update_lag(force=not records)

    # -- the commit path -------------------------------------------------------------------------

    async def _process(self, records: list[ConsumerRecord]) -> None:
        """Steps 1-4 of the module docstring for one fetched batch."""
        started = time.perf_counter()
        decoded = await self._decode(records)  # 1
        if decoded:
            await self._handle_with_retry(decoded)  # 2 (the handler commits its transaction)
        if self.outbox is not None and not await self._drain_with_retry():  # 3
            return  # stopping while the drain still fails: leave the batch uncommitted
        await self._commit(records)  # 4
        metrics.PROCESSING_LATENCY.labels(self.group_id).observe(time.perf_counter() - started)
        metrics.CONSUMER_BATCH_SIZE.labels(self.group_id).observe(len(records))
        self.batches += 1

    async def _decode(self, records: list[ConsumerRecord]) -> list[Decoded[T]]:
        decoded: list[Decoded[T]] = []
        for record in records:
            metrics.EVENTS_CONSUMED.labels(self.group_id, record.topic).inc()
            try:
                decoded.append(Decoded(record, self.decode(record)))
            except DecodeError as exc:
                await self._dead_letter_within_limit(record, exc.reason, str(exc))
        return decoded

    async def _handle_with_retry(self, decoded: list[Decoded[T]]) -> None:
        delay = self.retry_delay_s
        attempts = 0
        while True:
            try:
                await self.handle(decoded)
                self.limit.processed(len(decoded))
                return
            except Exception as exc:
                attempts += 1
                if is_transient(exc):
                    log.warning(
                        "batch failed on an unreachable dependency; retrying",
                        extra={"group": self.group_id, "attempt": attempts, "error": type(exc).__name__},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY_S)
                    continue
                if attempts < 3:
                    log.warning(
                        "batch failed; retrying",
                        extra={"group": self.group_id, "attempt": attempts, "error": type(exc).__name__},
                    )
                    await asyncio.sleep(delay)
                    continue
                if len(decoded) == 1:
                    if not self.limit.allows_one_more():
                        raise ConsumerHalted from exc
                    log.exception(
                        "record failed repeatedly; dead-lettering",
                        extra={
                            "group": self.group_id,
                            "topic": decoded[0].record.topic,
                            "offset": decoded[0].record.offset,
                        },
                    )
                    await self.dead_letter(decoded[0].record, "processing_error", type(exc).__name__)
                    self.limit.dead_lettered()
                    return
                for item in decoded:
                    await self._handle_with_retry([item])
                return

    async def _drain_with_retry(self) -> bool:
        """Drain the outbox until it succeeds (True), or until `stop()` was called (False)."""
        assert self.outbox is not None
        delay = self.retry_delay_s
        attempts = 0
        while True:
            try:
                await self.outbox.drain_queued()
                return True
            except Exception as exc:
                attempts += 1
                log.warning(
                    "outbox drain failed; retrying the drain only",
                    extra={"group": self.group_id, "attempt": attempts, "error": type(exc).__name__},
                )
                if self._stopping.is_set():
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_S)

    async def _commit(self, records: list[ConsumerRecord]) -> None:
        assert self._consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await self._consumer.commit(offsets)
            self.last_progress = time.monotonic()
            metrics.CONSUMER_LAST_PROGRESS.labels(self.group_id).set(time.time())
        except KafkaError as exc:
            # Typically a rebalance took the partitions: the new owner re-processes idempotently.
            log.warning("offset commit failed", extra={"group": self.group_id, "error": type(exc).__name__})

    # -- lag, dead letters, halting --------------------------------------------------------------

    async def _update_lag(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_lag_check < 1.0:
            return
        self._last_lag_check = now
        assert self._consumer is not None
        total = 0
        seen: list[tuple[str, str]] = []
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is None:
                continue
            try:
                # position() waits until the offset is known: never let a lost topic block the loop.
                pos = await asyncio.wait_for(self._consumer.position(tp), timeout=1)
            except Exception:  # partition moved away during a rebalance, or its offset is unknown
                log.debug("position unavailable", extra={"topic": tp.topic, "partition": tp.partition})
                continue
            if pos > hw:
                # The partition's log is shorter than our position: the broker lost data (a memory-only
                # broker restarted, or a topic was re-created). Nothing at or after `pos` will ever
                # arrive, so read the new log from its start instead of waiting forever.
                log.warning(
                    "partition log behind our position; rewinding",
                    extra={"topic": tp.topic, "partition": tp.partition, "position": pos, "highwater": hw},
                )
                await self._consumer.seek_to_beginning(tp)
                continue
            lag = hw - pos
            total += lag
            metrics.CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)
            seen.append((tp.topic, str(tp.partition)))
        assigned = {(tp.topic, str(tp.partition)) for tp in self._consumer.assignment()}
        for topic, partition in self._lag_labels - assigned:  # partitions a rebalance moved away
            metrics.CONSUMER_LAG.remove(self.group_id, topic, partition)
        self._lag_labels = (self._lag_labels & assigned) | set(seen)
        self.lag = total
        if total == 0:
            self.last_progress = now

    async def _dead_letter_within_limit(self, record: ConsumerRecord, reason: str, error: str) -> None:
        """Dead-letter `record`, or raise ConsumerHalted when that would exceed the limit."""
        if not self.limit.allows_one_more():
            raise ConsumerHalted
        await self.dead_letter(record, reason, error)
        self.limit.dead_lettered()

    async def _halt(self) -> None:
        """Stop consuming for good: nothing further is committed; the group gets the partitions back."""
        self.halted = self.limit.describe()
        metrics.CONSUMER_HALTED.labels(self.group_id).set(1)
        log.error(
            "dead-letter limit reached; consumer halted and unready until restarted",
            extra={"group": self.group_id, "reason": self.halted},
        )
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), timeout=10)

    async def dead_letter(self, record: ConsumerRecord, reason: str, error: str) -> None:
        """Publish the record to the dead-letter topic with its reason; waits for the broker."""
        await self.dead_letters.publish(self.group_id, record, reason, error)
