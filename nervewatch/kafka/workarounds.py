"""Every change NerveWatch makes to aiokafka's behaviour, in one place, applied by `apply()`.

Nothing here runs at import time. `apply()` is called once at process start-up (by
`Runtime.start`, the CLI and the test session) before any client is created; it is idempotent.
Each workaround names the upstream behaviour it corrects; `tests/unit/test_kafka_workarounds.py`
pins that behaviour, so an aiokafka upgrade that changes it fails a test instead of silently
making a workaround wrong or unnecessary.

1. `no_topic_auto_creation`: aiokafka's metadata requests ask the broker to auto-create any topic
   they name (`allow_auto_topic_creation=True`). A broker that lost its state (the memory-only
   embedded one after a restart) would then re-create our topics with *its* default partition count
   (4 on tansu, `num.partitions` on Kafka), moving patients to other partitions mid-stream
   (per-patient order lost) and racing our own creation (tansu then drops acknowledged records).
   Topics are created only by `nervewatch.kafka.admin.ensure_topics`; with the workaround a lookup of
   a missing topic fails with UnknownTopicOrPartitionError (ingest answers 503 until `keep_topics`
   has re-created it).
2. `on_connection_lost(producer, callback)`: aiokafka offers no public hook for "this client's
   connection broke". Its client passes its private `_on_connection_closed` to every connection it
   opens as `on_close`; the hook wraps it per producer (no global change).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiokafka.admin.client
import aiokafka.client
from aiokafka import AIOKafkaProducer
from aiokafka.conn import CloseReason
from aiokafka.protocol.metadata import MetadataRequest

UPSTREAM_METADATA_REQUEST = MetadataRequest
LOST = (CloseReason.CONNECTION_BROKEN, CloseReason.CONNECTION_TIMEOUT)


class NoAutoCreateMetadataRequest(MetadataRequest):  # type: ignore[misc]  # aiokafka ships no type hints
    """A metadata request that never asks the broker to create the topics it names."""

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None) -> None:
        super().__init__(topics, allow_auto_topic_creation=False)


def no_topic_auto_creation() -> None:
    """Make the client's and the admin client's metadata lookups never auto-create topics."""
    aiokafka.client.MetadataRequest = NoAutoCreateMetadataRequest
    aiokafka.admin.client.MetadataRequest = NoAutoCreateMetadataRequest  # describe_topics


def applied() -> bool:
    """True once `apply()` has run in this process."""
    return aiokafka.client.MetadataRequest is NoAutoCreateMetadataRequest


def apply() -> None:
    """Apply every global workaround; call once at start-up, before the first client. Idempotent."""
    no_topic_auto_creation()


def on_connection_lost(producer: AIOKafkaProducer, callback: Callable[[], None]) -> bool:
    """Call `callback` each time one of `producer`'s connections breaks or times out.

    Returns False (and does nothing) when the client has no such hook (an aiokafka change: the
    workaround test fails then). Must be called before the producer starts."""
    client = producer.client
    on_closed = getattr(client, "_on_connection_closed", None)
    if on_closed is None:
        return False

    def count_losses(conn: Any, reason: CloseReason) -> None:
        if reason in LOST:
            callback()
        on_closed(conn, reason)

    client._on_connection_closed = count_losses
    return True
