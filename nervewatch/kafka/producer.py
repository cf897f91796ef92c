"""The producer factory and the two send calls every publisher uses.

Producers from `make_producer`, used through `produce`/`produce_many`, trust no acknowledgement
that arrives after their connection broke, and check their topics exist before the first send
after a broken connection.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from nervewatch import metrics
from nervewatch.kafka import workarounds
from nervewatch.kafka.admin import bootstrap
from nervewatch.settings import Settings

# aiokafka keeps one open batch per partition and makes every further send wait until it drains;
# at its 16 KiB default a busy ingest spends its time waking waiters. 256 KiB: +25% batch ingest.
PRODUCER_BATCH_BYTES = 256 * 1024


@dataclass
class Link:
    """Connection losses of one producer's client, and the loss count its metadata was checked at."""

    losses: int = 0
    verified: int = 0

    def lost(self) -> None:
        self.losses += 1


_LINKS: weakref.WeakKeyDictionary[AIOKafkaProducer, Link] = weakref.WeakKeyDictionary()


def link_of(producer: AIOKafkaProducer) -> Link | None:
    """The connection-loss record of a producer made by `make_producer` (None for any other)."""
    return _LINKS.get(producer)


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas (`acks=all`), for use with `produce*`.

    Idempotence is configurable because the embedded broker does not support it. The producer's
    broken connections are counted (see `produce_many`).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings),
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": settings.kafka_linger_ms,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "max_request_size": 4 * 1024 * 1024,
        "max_batch_size": PRODUCER_BATCH_BYTES,
    }
    options.update(overrides)
    producer = AIOKafkaProducer(**options)
    link = _LINKS[producer] = Link()
    workarounds.on_connection_lost(producer, link.lost)
    return producer


async def _revalidate(producer: AIOKafkaProducer, link: Link, topics: set[str]) -> None:
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
