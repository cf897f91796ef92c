"""Producing never creates topics, and a producer whose connection broke checks its topics first.

Against the real embedded broker: aiokafka's metadata lookups would ask the broker to auto-create
a missing topic (with the broker's own partition count); `nervewatch.kafka.workarounds` turns that
off, so
only `ensure_topics` creates topics. A broker that restarted lost its topics; the first send after
the lost connection re-reads metadata and fails while the topic is missing, instead of writing to
a topic the broker does not have.
"""

from __future__ import annotations

import secrets

import pytest
from aiokafka.errors import KafkaError

from nervewatch.kafka import ensure_topics, link_of, make_producer, produce, topic_partitions
from nervewatch.settings import Settings
from tooling.devstack import EmbeddedStack

pytestmark = pytest.mark.integration


async def test_producing_to_a_missing_topic_fails_and_creates_nothing(stack: EmbeddedStack) -> None:
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap, kafka_request_timeout_ms=2000)
    topic = f"nervewatch.test.missing.{secrets.token_hex(3)}"
    producer = make_producer(settings)
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await produce(producer, topic, b"k", b"v")
        assert await topic_partitions(stack.bootstrap, topic) == []
    finally:
        await producer.stop()


async def test_after_a_lost_connection_the_topics_are_checked_before_sending(stack: EmbeddedStack) -> None:
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap, topic_partitions=2)
    topic = f"nervewatch.test.guard.{secrets.token_hex(3)}"
    await ensure_topics(settings, [topic])
    producer = make_producer(settings)
    await producer.start()
    try:
        await produce(producer, topic, b"k", b"v1")
        link = link_of(producer)
        assert link is not None
        assert link.verified == link.losses == 0
        link.losses += 1  # as aiokafka's on_close does for a broken connection
        await produce(producer, topic, b"k", b"v2")  # re-reads metadata, finds the topic, sends
        assert link.verified == link.losses == 1
        assert [tp.partition for tp in await topic_partitions(stack.bootstrap, topic)] == [0, 1]
    finally:
        await producer.stop()
