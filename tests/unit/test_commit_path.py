"""The consumer's commit path: decode -> handle (one transaction) -> drain the outbox -> commit offsets.

A fake Kafka client and outbox, injected through `BatchConsumer`'s constructor, record the order
of the steps. A failing drain is retried on its own: the handler (the transaction) runs once, and
the offsets are committed only after a drain succeeded.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import ConsumerRecord, TopicPartition

from nervewatch.kafka import BatchConsumer, DeadLetters, Decoded
from nervewatch.kafka.decoding import ENVELOPE_VERSION
from nervewatch.settings import Settings
from schemas.events import SCHEMA_VERSION

TP = TopicPartition("nervewatch.test.v1", 0)


class FakeClient:
    """Delivers `n` records once, then nothing; records commits in `log`."""

    def __init__(self, log: list[str], n: int = 2) -> None:
        self.log = log
        self.pending = [ConsumerRecord(TP.topic, 0, i, 0, 0, b"k", b"v", None, 1, 1, []) for i in range(n)]
        self.committed: dict[TopicPartition, int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        if not self.pending:
            await asyncio.sleep(0.01)
            return {}
        batch, self.pending = self.pending, []
        return {TP: batch}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(f"commit {offsets[TP]}")
        self.committed.update(offsets)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int | None:
        return 2

    async def position(self, tp: TopicPartition) -> int:
        return self.committed.get(tp, 0)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> Any: ...


class FlakyOutbox:
    def __init__(self, log: list[str], failures: int) -> None:
        self.log = log
        self.failures = failures

    async def drain_queued(self) -> int:
        if self.failures:
            self.failures -= 1
            self.log.append("drain failed")
            raise ConnectionError("broker away")
        self.log.append("drained")
        return 1


async def _no_topics(_: Any) -> list[str]:
    return []


async def _run_until_committed(consumer: BatchConsumer[bytes], client: FakeClient) -> None:
    await consumer.start()
    try:
        while TP not in client.committed:
            await asyncio.sleep(0.01)
    finally:
        await consumer.stop()


def _consumer(log: list[str], client: FakeClient, outbox: FlakyOutbox | None) -> BatchConsumer[bytes]:
    async def handle(batch: list[Decoded[bytes]]) -> None:
        log.append(f"handle {len(batch)}")  # stands for: one transaction, committed before returning

    return BatchConsumer(
        settings=Settings(kafka_bootstrap_servers="127.0.0.1:1"),
        group_id="g",
        topics=[TP.topic],
        decode=lambda r: bytes(r.value),
        handle=handle,
        dead_letters=cast(DeadLetters, None),  # nothing is dead-lettered here
        outbox=outbox,
        client_factory=lambda: client,
        ensure_topics=_no_topics,
        retry_delay_s=0.001,
    )


async def test_a_failing_drain_is_retried_alone_and_offsets_wait_for_it() -> None:
    log: list[str] = []
    client = FakeClient(log)
    await _run_until_committed(_consumer(log, client, FlakyOutbox(log, failures=2)), client)
    assert log == ["handle 2", "drain failed", "drain failed", "drained", "commit 2"]


async def test_without_an_outbox_offsets_follow_the_handler() -> None:
    log: list[str] = []
    client = FakeClient(log)
    await _run_until_committed(_consumer(log, client, None), client)
    assert log == ["handle 2", "commit 2"]


async def test_a_drain_still_failing_at_stop_leaves_the_batch_uncommitted() -> None:
    log: list[str] = []
    client = FakeClient(log)
    outbox = FlakyOutbox(log, failures=10**9)
    consumer = _consumer(log, client, outbox)
    await consumer.start()
    while log.count("drain failed") < 3:
        await asyncio.sleep(0.01)
    await consumer.stop()
    assert log.count("handle 2") == 1
    assert not any(entry.startswith("commit") for entry in log)


def test_the_plumbing_envelope_version_is_the_schemas_one() -> None:
    assert ENVELOPE_VERSION == SCHEMA_VERSION
