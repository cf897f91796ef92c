"""Publishing a record a consumer cannot process to the dead-letter topic, with its reason.

Plumbing defines what a dead letter carries (`Letter`); the wire format and the topic name come
from the caller (`DeadLetters(producer, topic, encode)`), so plumbing imports no event schema.
The services pass `schemas.events.dead_letter_json` and `Topics.dead_letters`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from nervewatch import metrics
from nervewatch.kafka.producer import produce

log = logging.getLogger(__name__)

ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter: where the record came from, its original bytes, and why it failed."""

    consumer_group: str
    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error: str
    failed_at: datetime


Encode = Callable[[Letter], bytes]


class DeadLetters:
    """The dead-letter sink of a process's consumers."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, encode: Encode) -> None:
        self.producer = producer
        self.topic = topic
        self.encode = encode

    async def publish(self, group: str, record: ConsumerRecord, reason: str, error: str) -> None:
        """Publish `record` with its reason; blocks, retrying every second, until the broker acknowledged."""
        letter = Letter(
            consumer_group=group,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=reason,
            error=error[:ERROR_CHARS],
            failed_at=datetime.now(UTC),
        )
        value = self.encode(letter)
        while True:
            try:
                await produce(self.producer, self.topic, record.key or b"", value)
                break
            except KafkaError:
                log.warning("dead-letter publish failed; retrying", extra={"group": group})
                await asyncio.sleep(1)
        metrics.DEAD_LETTERS.labels(record.topic, reason).inc()
        log.warning(
            "message dead-lettered",
            extra={
                "group": group,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )
