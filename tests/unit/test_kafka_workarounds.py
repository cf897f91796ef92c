"""Pins the aiokafka behaviour each workaround in `nervewatch.kafka.workarounds` corrects.

A failure here after an aiokafka upgrade means upstream changed: re-read the workaround's reason
in the module docstring, then fix or delete the workaround (and this test) rather than the assertion.
"""

from __future__ import annotations

import inspect

import aiokafka.admin.client
import aiokafka.client
from aiokafka.conn import CloseReason
from aiokafka.protocol.metadata import MetadataRequest_v4, MetadataRequest_v5

from nervewatch.kafka import link_of, make_producer, workarounds
from nervewatch.settings import Settings


def test_upstream_metadata_requests_still_ask_the_broker_to_auto_create_topics() -> None:
    # If this fails, aiokafka no longer auto-creates topics by default: no_topic_auto_creation may go.
    for struct in (MetadataRequest_v4, MetadataRequest_v5):
        built = workarounds.UPSTREAM_METADATA_REQUEST(["t"]).build(struct)
        assert built.get_item("allow_auto_topic_creation") is True


def test_the_clients_still_build_metadata_requests_through_the_patched_module_names() -> None:
    # The patch replaces module globals; it only works while the clients look the class up there.
    assert "MetadataRequest(" in inspect.getsource(aiokafka.client.AIOKafkaClient)
    assert "MetadataRequest(" in inspect.getsource(aiokafka.admin.client.AIOKafkaAdminClient)
    assert aiokafka.client.MetadataRequest in (
        workarounds.UPSTREAM_METADATA_REQUEST,
        workarounds.NoAutoCreateMetadataRequest,
    )


def test_after_apply_metadata_requests_never_ask_for_auto_creation() -> None:
    workarounds.apply()
    workarounds.apply()  # idempotent
    assert workarounds.applied()
    for module in (aiokafka.client, aiokafka.admin.client):
        request = module.MetadataRequest(["t"])
        for struct in (MetadataRequest_v4, MetadataRequest_v5):
            assert request.build(struct).get_item("allow_auto_topic_creation") is False


def test_the_client_still_hands_its_private_close_hook_to_every_connection() -> None:
    # on_connection_lost wraps AIOKafkaClient._on_connection_closed; aiokafka must keep passing it
    # to each connection as `on_close`, with (conn, reason) arguments.
    source = inspect.getsource(aiokafka.client.AIOKafkaClient._get_conn)
    assert "on_close=self._on_connection_closed" in source
    params = list(inspect.signature(aiokafka.client.AIOKafkaClient._on_connection_closed).parameters)
    assert params == ["self", "conn", "reason"]
    assert {CloseReason.CONNECTION_BROKEN, CloseReason.CONNECTION_TIMEOUT} <= set(CloseReason)


async def test_a_broken_connection_is_counted_once_per_loss() -> None:
    producer = make_producer(Settings(kafka_bootstrap_servers="127.0.0.1:1"))
    link = link_of(producer)
    assert link is not None and link.losses == 0
    hook = producer.client._on_connection_closed
    hook(None, CloseReason.CONNECTION_BROKEN)
    hook(None, CloseReason.CONNECTION_TIMEOUT)
    hook(None, CloseReason.IDLE_DROP)  # an idle connection closed on purpose is no loss
    assert link.losses == 2
