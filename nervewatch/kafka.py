"""Kafka plumbing: topic creation, a producer factory and an at-least-once batch consumer.

Topics are created only by `ensure_topics` (and re-created by `keep_topics`); no client ever asks
the broker to auto-create one. Producers from `make_producer`, used through `produce`/`produce_many`,
trust no acknowledgement that arrives after their connection broke, and check their topics exist
before the first send after a broken connection.

Delivery contract of `BatchConsumer`:
- records are decoded one by one; a record that cannot be decoded goes to the dead-letter topic
  with its reason, partition and offset, and the batch goes on;
- the decoded batch is handed to the handler, which must commit its database transaction
  before returning; only then are the offsets committed (at-least-once: a crash in between
  redelivers the batch, so handlers must be idempotent by event id);
- a handler failure caused by an unreachable dependency is retried with backoff forever (the
  partition waits, nothing is skipped); any other failure is retried, then the batch is split and
  the record that still fails on its own is dead-lettered with reason `processing_error`;
- the dead-letter limit (`nervewatch/deadletter_limit.py`) bounds both kinds of dead letter: when
  one more would exceed it, the consumer **halts** instead: it commits nothing further, leaves
  the group, reports unready (`ready()` False, `nervewatch_consumer_halted` 1) and logs the
  reason once at error level; the records wait, uncommitted, for a fixed deploy (a restart);
- `stop()` finishes the batch in flight, commits it and leaves the group;
- a watchdog recreates the Kafka client when the consumer has held lag without committing for
  twice `consumer_stall_seconds` (a wedged client, a broker that lost its state): the batch in
  flight is abandoned uncommitted (its transaction rolls back or was already committed; either
  way the new client re-reads from the last committed offset, so nothing is skipped), missing
  topics are re-created, and a new client joins the group.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aiokafka.admin.client
import aiokafka.client
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import CloseReason
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import TypeAdapter, ValidationError

from nervewatch import metrics
from nervewatch.deadletter_limit import DeadLetterLimit
from nervewatch.problems import sanitized
from nervewatch.settings import Settings
from schemas.events import SCHEMA_VERSION, DeadLetter, Topics

log = logging.getLogger(__name__)
T = TypeVar("T")

TOPIC_EXISTS = 36
TOPIC_CHECK_S = 5.0
# aiokafka keeps one open batch per partition and makes every further send wait until it drains;
# at its 16 KiB default a busy ingest spends its time waking waiters. 256 KiB: +25% batch ingest.
PRODUCER_BATCH_BYTES = 256 * 1024


class _NoAutoCreateMetadataRequest(MetadataRequest):  # type: ignore[misc]
    """A metadata request that never asks the broker to create the topics it names."""

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None) -> None:
        super().__init__(topics, allow_auto_topic_creation=False)


# Topics are created by `ensure_topics` only, with the configured partition count. aiokafka asks
# the broker to auto-create any topic it looks up; a broker that lost its state (the memory-only
# embedded one after a restart) would then re-create our topics with *its* default partition count
# (4 on tansu, `num.partitions` on Kafka), moving patients to other partitions mid-stream (per-patient
# order lost) and racing our own creation (tansu then drops acknowledged records). A lookup of a
# missing topic now fails with UnknownTopicOrPartitionError: ingest answers 503 until
# `keep_topics` has re-created it.
aiokafka.client.MetadataRequest = _NoAutoCreateMetadataRequest
aiokafka.admin.client.MetadataRequest = _NoAutoCreateMetadataRequest  # describe_topics


class ConsumerHalted(Exception):
    """Raised inside the consumer loop when the dead-letter limit is reached."""


class DecodeError(ValueError):
    """A record that can never be processed; `reason` is a short machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_event(record: ConsumerRecord, adapter: TypeAdapter[T]) -> T:
    """Decode a versioned JSON event with `adapter`; raises DecodeError with a dead-letter reason.

    Reasons: `empty_value`, `invalid_json`, `invalid_envelope`, `unsupported_schema_version`,
    `schema_violation` (its message lists field locations and error types, never values).
    """
    if record.value is None:
        raise DecodeError("empty_value", "record has no value")
    try:
        head = json.loads(record.value)
    except ValueError:
        raise DecodeError("invalid_json", "value is not JSON") from None
    if not isinstance(head, dict):
        raise DecodeError("invalid_envelope", "value is not a JSON object")
    if head.get("schema_version") != SCHEMA_VERSION:
        raise DecodeError("unsupported_schema_version", f"schema_version {head.get('schema_version')!r:.20}")
    try:
        return adapter.validate_python(head)
    except ValidationError as exc:
        raise DecodeError("schema_violation", sanitized(exc)) from None


async def ensure_topics(settings: Settings, topics: Sequence[str] | None = None) -> list[str]:
    """Create missing topics with the configured partition count and replication factor.

    Returns the topics it had to create (empty when all existed)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=_bootstrap(settings), request_timeout_ms=settings.kafka_request_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in (topics or Topics.all()) if t not in existing]
        if missing:
            resp = await admin.create_topics(
                [NewTopic(t, settings.topic_partitions, settings.topic_replication_factor) for t in missing]
            )
            for topic, code, *_ in getattr(resp, "topic_errors", []):
                if code not in (0, TOPIC_EXISTS):
                    raise KafkaError(f"creating topic {topic} failed with error code {code}")
            log.info("topics created", extra={"topics": ",".join(missing)})
        return missing
    finally:
        await admin.close()


async def keep_topics(
    settings: Settings, topics: Sequence[str] | None = None, interval_s: float = TOPIC_CHECK_S
) -> None:
    """Re-create missing topics every `interval_s` until cancelled; never raises otherwise.

    A broker that lost its state (the embedded one keeps it in memory) has lost our topics;
    producers and consumers wait on them (ingest answers 503) until this loop has re-created them.
    """
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.wait_for(ensure_topics(settings, topics), timeout=10)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker unreachable: the next round tries again
            log.debug("topic check failed", extra={"error": type(exc).__name__})


async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The partitions of `topic`, asked of the broker (empty when the topic does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        (
            TopicPartition(topic, p["partition"])
            for d in described
            if d.get("error_code", 0) == 0
            for p in d["partitions"]
        ),
        key=lambda tp: tp.partition,
    )


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set")
    return settings.kafka_bootstrap_servers


@dataclass
class _Link:
    """Connection losses of one producer's client, and the loss count its metadata was checked at."""

    losses: int = 0
    verified: int = 0


_LINKS: weakref.WeakKeyDictionary[AIOKafkaProducer, _Link] = weakref.WeakKeyDictionary()


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas (`acks=all`), for use with `produce*`.

    Idempotence is configurable because the embedded broker does not support it. The producer's
    broken connections are counted (see `produce_many`).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": _bootstrap(settings),
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": settings.kafka_linger_ms,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "max_request_size": 4 * 1024 * 1024,
        "max_batch_size": PRODUCER_BATCH_BYTES,
    }
    options.update(overrides)
    producer = AIOKafkaProducer(**options)
    link = _LINKS[producer] = _Link()
    client = producer.client
    on_closed = getattr(client, "_on_connection_closed", None)
    if on_closed is not None:  # aiokafka passes it to every connection it opens as `on_close`

        def count_losses(conn: Any, reason: CloseReason) -> None:
            if reason in (CloseReason.CONNECTION_BROKEN, CloseReason.CONNECTION_TIMEOUT):
                link.losses += 1
            on_closed(conn, reason)

        client._on_connection_closed = count_losses
    return producer


async def _revalidate(producer: AIOKafkaProducer, link: _Link, topics: set[str]) -> None:
    """After a lost connection, re-read metadata and require every topic to exist before sending.

    A broker that restarted may have lost its topics; the client's cached metadata would still
    send to them and the embedded broker acknowledges writes to a topic that does not exist (and
    loses them). Raises KafkaConnectionError while the refresh fails, UnknownTopicOrPartitionError
    (after the request timeout) while a topic is missing.
    """
    checked_at = link.losses
    if not await producer.client.force_metadata_update():
        raise KafkaConnectionError("metadata refresh failed")
    for topic in topics:
        await producer.partitions_for(topic)
    link.verified = checked_at


async def produce(producer: AIOKafkaProducer, topic: str, key: bytes, value: bytes) -> None:
    """Send one record and wait for the broker's acknowledgement (see `produce_many`)."""
    await produce_many(producer, [(topic, key, value)])


async def produce_many(producer: AIOKafkaProducer, records: Sequence[tuple[str, bytes, bytes]]) -> None:
    """Send records (topic, key, value) pipelined; returns once every one is acknowledged.

    Raises on any failure; the caller may resend everything (consumers are idempotent by event id).
    An acknowledgement is trusted only if the producer's connection did not break while the
    records were in flight: otherwise this raises KafkaConnectionError, because the broker that
    answered may not be the one that holds the records (a restart in between). After a broken
    connection the next call first checks, with fresh metadata, that its topics exist.
    """
    link = _LINKS.get(producer)
    try:
        if link is not None and link.verified != link.losses:
            await _revalidate(producer, link, {topic for topic, _, _ in records})
        losses = link.losses if link is not None else 0
        futures = [await producer.send(topic, value=value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
        if link is not None and link.losses != losses:
            raise KafkaConnectionError("the connection broke while records were in flight")
    except BaseException:
        for topic, _, _ in records:
            metrics.PRODUCE_FAILURES.labels(topic).inc()
        raise
    for topic, _, _ in records:
        metrics.EVENTS_PRODUCED.labels(topic).inc()


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    record: ConsumerRecord
    value: T


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


class BatchConsumer(Generic[T]):
    """Consume `topics` in group `group_id`, decode, process in batches, then commit offsets."""

    def __init__(
        self,
        *,
        settings: Settings,
        group_id: str,
        topics: Sequence[str],
        decode: Callable[[ConsumerRecord], T],
        handle: Callable[[list[Decoded[T]]], Awaitable[None]],
        producer: AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.topics = list(topics)
        self.decode = decode
        self.handle = handle
        self.producer = producer
        self._consumer: AIOKafkaConsumer | None = None
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

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=_bootstrap(self.settings),
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

    async def start(self) -> None:
        self._consumer = self._new_consumer()
        await self._consumer.start()
        self.last_progress = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")
        self._watchdog = asyncio.create_task(self._watch(), name=f"consumer-watchdog-{self.group_id}")

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
                    extra={
                        "group": self.group_id,
                        "lag": self.lag,
                        "idle_s": round(idle, 1),
                        "dead": dead,
                    },
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
        await ensure_topics(self.settings, self.topics)
        self._consumer = self._new_consumer()
        await self._consumer.start()
        self.last_progress = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")

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

    async def _process(self, records: list[ConsumerRecord]) -> None:
        started = time.perf_counter()
        decoded: list[Decoded[T]] = []
        for record in records:
            metrics.EVENTS_CONSUMED.labels(self.group_id, record.topic).inc()
            try:
                decoded.append(Decoded(record, self.decode(record)))
            except DecodeError as exc:
                await self._dead_letter_within_limit(record, exc.reason, str(exc))
        if decoded:
            await self._handle_with_retry(decoded)
        await self._commit(records)
        metrics.PROCESSING_LATENCY.labels(self.group_id).observe(time.perf_counter() - started)
        metrics.CONSUMER_BATCH_SIZE.labels(self.group_id).observe(len(records))
        self.batches += 1

    async def _handle_with_retry(self, decoded: list[Decoded[T]]) -> None:
        delay = 0.2
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
                    delay = min(delay * 2, 5.0)
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
        letter = DeadLetter(
            consumer_group=self.group_id,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
            value_b64=base64.b64encode(record.value).decode() if record.value is not None else None,
            reason=reason,
            error=error[:500],
            failed_at=datetime.now(UTC),
        )
        while True:
            try:
                await produce(self.producer, Topics.dead_letters, record.key or b"", letter.model_dump_json().encode())
                break
            except KafkaError:
                log.warning("dead-letter publish failed; retrying", extra={"group": self.group_id})
                await asyncio.sleep(1)
        metrics.DEAD_LETTERS.labels(record.topic, reason).inc()
        log.warning(
            "message dead-lettered",
            extra={
                "group": self.group_id,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )
