"""A processing bug halts the consumer at its dead-letter limit instead of emptying a partition.

Against the real embedded broker: a handler that fails on every record (a bad deploy) gets
exactly `max_consecutive` records dead-lettered, then the consumer halts unready and commits
nothing; a consumer with a working handler in the same group then processes every record, the
dead-lettered ones included (the dead-letter topic is for inspection; the records were never
skipped past).
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from nervewatch.kafka import BatchConsumer, DeadLetters, Decoded, ensure_topics, make_producer, produce
from nervewatch.settings import Settings
from schemas.events import Topics, dead_letter_json
from tooling.devstack import EmbeddedStack

pytestmark = pytest.mark.integration


async def _wait(check: object, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def _letters_of(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(Topics.dead_letters, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        found, idle = 0, 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500)
            idle = idle + 1 if not batch else 0
            found += sum(topic.encode() in r.value for recs in batch.values() for r in recs)
        return found
    finally:
        await consumer.stop()


async def test_a_handler_that_always_fails_halts_the_consumer_at_the_limit(stack: EmbeddedStack) -> None:
    settings = Settings(
        kafka_bootstrap_servers=stack.bootstrap,
        topic_partitions=1,
        dead_letter_max_consecutive=3,
        consumer_max_batch=5,
    )
    topic = f"nervewatch.test.dllimit.{secrets.token_hex(3)}"
    group = f"t-dllimit-{secrets.token_hex(3)}"
    await ensure_topics(settings, [topic, Topics.dead_letters])
    producer = make_producer(settings)
    await producer.start()
    letters = DeadLetters(producer, Topics.dead_letters, dead_letter_json)
    try:
        for i in range(12):
            await produce(producer, topic, b"k", f"record-{i}".encode())

        async def broken(batch: list[Decoded[bytes]]) -> None:
            raise RuntimeError("bug")

        def decode(record: ConsumerRecord) -> bytes:
            return bytes(record.value)

        halting: BatchConsumer[bytes] = BatchConsumer(
            settings=settings, group_id=group, topics=[topic], decode=decode, handle=broken, dead_letters=letters
        )
        await halting.start()
        try:
            await _wait(lambda: halting.halted is not None, timeout=60)
            assert not await halting.ready()
        finally:
            await halting.stop()
        assert await _letters_of(stack.bootstrap, topic) == 3

        probe = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False)
        await probe.start()
        try:
            assert await probe.committed(TopicPartition(topic, 0)) is None
        finally:
            await probe.stop()

        seen: list[bytes] = []

        async def fixed(batch: list[Decoded[bytes]]) -> None:
            seen.extend(d.value for d in batch)

        healthy: BatchConsumer[bytes] = BatchConsumer(
            settings=settings, group_id=group, topics=[topic], decode=decode, handle=fixed, dead_letters=letters
        )
        await healthy.start()
        try:
            await _wait(lambda: len(set(seen)) == 12, timeout=60)
            assert await healthy.ready()
        finally:
            await healthy.stop()
    finally:
        await producer.stop()
