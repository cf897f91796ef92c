"""Topic administration: create missing topics, keep them while the broker loses state, list partitions.

Topics are created only here, with the configured partition count and replication factor; no
client ever asks the broker to auto-create one (see `workarounds.no_topic_auto_creation`). The
topic names come from the caller: plumbing knows no topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from nervewatch.settings import Settings

log = logging.getLogger(__name__)

TOPIC_EXISTS = 36
TOPIC_CHECK_S = 5.0


def bootstrap(settings: Settings) -> str:
    """The broker addresses; raises RuntimeError when none is configured."""
    if not settings.kafka_bootstrap_servers:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set")
    return settings.kafka_bootstrap_servers


async def ensure_topics(settings: Settings, topics: Sequence[str]) -> list[str]:
    """Create the missing ones of `topics` with the configured partition count and replication factor.

    Returns the topics it had to create (empty when all existed). Raises KafkaError on failure."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap(settings), request_timeout_ms=settings.kafka_request_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
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


async def keep_topics(settings: Settings, topics: Sequence[str], interval_s: float = TOPIC_CHECK_S) -> None:
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
