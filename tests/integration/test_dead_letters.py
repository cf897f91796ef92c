"""A poison message placed straight on a topic lands in the dead-letter topic; the consumer keeps going."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.events import Topics, event_key
from tests.support import Services, Tenant, poll
from tooling.devstack import EmbeddedStack

pytestmark = pytest.mark.integration


async def test_poison_message_is_dead_lettered_and_the_partition_moves_on(
    services: Services, stack: EmbeddedStack, tenant: Tenant, db: asyncpg.Connection
) -> None:
    pid = f"pt-poison-{uuid.uuid4().hex[:6]}"
    key = event_key(tenant.tenant_id, pid)
    async with aiohttp.ClientSession() as http:
        body = {"patient_id": pid, "condition": "tarsal_tunnel", "treatment": "conservative", "timezone": "UTC"}
        async with http.post(f"{services.url('ingest')}/v1/patients", json=body, headers=tenant.headers) as r:
            assert r.status == 201
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        poison = [
            b"\x00not json",
            json.dumps({"schema_version": 99, "type": "checkin.recorded"}).encode(),
            json.dumps({"schema_version": 1, "type": "checkin.recorded", "tenant_id": "t"}).encode(),
        ]
        sent = [await producer.send_and_wait(Topics.checkins, value=v, key=key) for v in poison]
        good_id = str(uuid.uuid4())
        good = {
            "schema_version": 1,
            "type": "checkin.recorded",
            "tenant_id": tenant.tenant_id,
            "received_at": datetime.now(UTC).isoformat(),
            "checkin": {
                "event_id": good_id,
                "patient_id": pid,
                "recorded_at": datetime.now(UTC).isoformat(),
                "pain": {"current": 2},
            },
        }
        await producer.send_and_wait(Topics.checkins, value=json.dumps(good).encode(), key=key)
    finally:
        await producer.stop()

    async def scored() -> bool:
        return bool(await db.fetchval("SELECT 1 FROM scoring.checkins WHERE event_id = $1", uuid.UUID(good_id)))

    await poll(scored)

    consumer = AIOKafkaConsumer(
        Topics.dead_letters,
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4().hex}",
    )
    await consumer.start()
    letters = []
    try:

        async def collect() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    letter = json.loads(rec.value)
                    if (
                        letter["source_topic"] == Topics.checkins
                        and letter["key_b64"] == base64.b64encode(key).decode()
                    ):
                        letters.append(letter)
            return len(letters) >= 3

        await poll(collect, timeout_s=20)
    finally:
        await consumer.stop()
    assert [x["reason"] for x in letters] == ["invalid_json", "unsupported_schema_version", "schema_violation"]
    assert [x["offset"] for x in letters] == [m.offset for m in sent]
    assert base64.b64decode(letters[0]["value_b64"]) == poison[0]
    assert all(x["consumer_group"] == "nervewatch-scoring" for x in letters)
