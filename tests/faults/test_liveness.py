"""Liveness that means progress: the BatchConsumer watchdog recreates a wedged Kafka client.

A fake client whose fetch hangs forever while it reports lag stands in for a wedged aiokafka
client. After twice `consumer_stall_seconds` without a commit the watchdog abandons it
(uncommitted) and builds a new one, which re-reads from the last committed offset: the record is
handled before its offset is committed, so at-least-once holds across the restart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from nervewatch.kafka import BatchConsumer, DeadLetters, Decoded
from nervewatch.settings import Settings

pytestmark = pytest.mark.timeout(60)

TP = TopicPartition("nervewatch.checkins.v1", 0)


class FakeClient:
    def __init__(self, wedged: bool, committed: dict[TopicPartition, int], log: list[str]) -> None:
        self.wedged = wedged
        self.committed = committed
        self.log = log
        self.delivered = False

    async def start(self) -> None:
        self.log.append("start")

    async def stop(self) -> None:
        self.log.append("stop")

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int:
        return 1

    async def position(self, tp: TopicPartition) -> int:
        # The next offset to fetch: past the one record once delivered, never past the high watermark.
        return max(self.committed.get(tp, 0), 1 if self.delivered else 0)

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[ConsumerRecord]]:
        if self.wedged:
            await asyncio.Event().wait()  # a client that never returns
        if self.delivered or self.committed.get(TP, 0) >= 1:
            await asyncio.sleep(0.05)
            return {}
        self.delivered = True
        record = ConsumerRecord(TP.topic, 0, 0, 0, 0, b"k", b"v", None, 1, 1, [])
        return {TP: [record]}

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.log.append("seek")

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(f"commit {offsets[TP]}")
        self.committed.update(offsets)


async def test_watchdog_recreates_a_wedged_client_without_skipping() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", consumer_stall_seconds=0.5)
    committed: dict[TopicPartition, int] = {}
    log: list[str] = []
    handled: list[str] = []
    clients = [FakeClient(True, committed, log), FakeClient(False, committed, log)]

    async def handle(batch: list[Decoded[bytes]]) -> None:
        handled.append("handled")
        log.append("handled")

    async def no_topics(_: Any) -> list[str]:
        return []

    consumer: BatchConsumer[bytes] = BatchConsumer(
        settings=settings,
        group_id="g",
        topics=[TP.topic],
        decode=lambda r: r.value,
        handle=handle,
        dead_letters=cast(DeadLetters, None),  # nothing is dead-lettered here
        client_factory=lambda: clients.pop(0),
        ensure_topics=no_topics,
    )
    try:
        await consumer.start()
        consumer.lag = 1  # the wedged client holds lag
        started = time.monotonic()
        while committed.get(TP) != 1:
            assert time.monotonic() - started < 20, log
            await asyncio.sleep(0.05)
        assert consumer.restarts == 1
        assert time.monotonic() - started >= 2 * settings.consumer_stall_seconds * 0.9
        assert log.index("handled") < log.index("commit 1")  # handled before its offset is committed
        assert consumer.running and not consumer.stalled()
    finally:
        await consumer.stop()
    assert log[-1] == "stop"
