"""Scoring's awkward inputs: conflicting duplicates, held events, far-past samples, same-day contradictions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas.events import Topics, event_key
from tests.support import Services, Tenant, enrol, get_json, poll
from tooling.devstack import EmbeddedStack

pytestmark = pytest.mark.integration


def recorded(tenant: Tenant, pid: str, event_id: str, at: datetime, **fields: Any) -> bytes:
    checkin = {"event_id": event_id, "patient_id": pid, "recorded_at": at.isoformat(), "pain": {"current": 4}}
    checkin.update(fields)
    return json.dumps(
        {
            "schema_version": 1,
            "type": "checkin.recorded",
            "tenant_id": tenant.tenant_id,
            "received_at": datetime.now(UTC).isoformat(),
            "checkin": checkin,
        }
    ).encode()


async def test_duplicate_event_id_with_other_content_keeps_the_first_and_records_the_conflict(
    services: Services, stack: EmbeddedStack, tenant: Tenant, db: asyncpg.Connection
) -> None:
    """Ingest refuses the repost (409); a version that reaches the log anyway (here produced straight
    onto the topic, as a write that bypassed ingest) is recorded by scoring and the first is kept."""
    pid = f"pt-dup-{uuid.uuid4().hex[:6]}"
    event_id = str(uuid.uuid4())
    at = datetime.now(UTC) - timedelta(hours=1)
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, [])
        for pain, status in ((3, 202), (9, 409)):
            body = {"event_id": event_id, "patient_id": pid, "recorded_at": at.isoformat(), "pain": {"current": pain}}
            async with http.post(f"{services.url('ingest')}/v1/checkins", json=body, headers=tenant.headers) as r:
                assert r.status == status, await r.text()

    async def stored() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM scoring.checkins WHERE event_id = $1", uuid.UUID(event_id)))

    await poll(stored)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(
            Topics.checkins,
            key=event_key(tenant.tenant_id, pid),
            value=recorded(tenant, pid, event_id, at, pain={"current": 9}),
        )
    finally:
        await producer.stop()

    async def conflict_recorded() -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM scoring.event_conflicts WHERE event_id = $1", uuid.UUID(event_id))
        )

    await poll(conflict_recorded)
    row = await db.fetchrow(
        "SELECT patient_id, kind, red_flag, data FROM scoring.event_conflicts WHERE event_id = $1", uuid.UUID(event_id)
    )
    assert row is not None and (row["patient_id"], row["kind"], row["red_flag"]) == (pid, "checkin", False)
    assert json.loads(row["data"])["pain"]["current"] == 9
    stored_rows = await db.fetch("SELECT data FROM scoring.checkins WHERE event_id = $1", uuid.UUID(event_id))
    assert len(stored_rows) == 1 and json.loads(stored_rows[0]["data"])["pain"]["current"] == 3


async def test_event_for_a_patient_enrolled_later_is_held_then_scored(
    services: Services, stack: EmbeddedStack, tenant: Tenant, db: asyncpg.Connection
) -> None:
    pid = f"pt-late-{uuid.uuid4().hex[:6]}"
    event_id = str(uuid.uuid4())
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        at = datetime.now(UTC) - timedelta(hours=2)
        await producer.send_and_wait(
            Topics.checkins,
            key=event_key(tenant.tenant_id, pid),
            value=recorded(tenant, pid, event_id, at, red_flags=["fever"]),
        )
    finally:
        await producer.stop()

    async def held() -> bool:
        row = await db.fetchrow("SELECT local_date FROM scoring.checkins WHERE event_id = $1", uuid.UUID(event_id))
        return row is not None and row["local_date"] is None

    await poll(held)
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, [])

        async def scored() -> Any:
            status, body = await get_json(
                http, f"{services.url('scoring')}/v1/patients/{pid}/trajectory", tenant.headers
            )
            return body if status == 200 and body["state"] == "red_flag" else None

        trajectory = await poll(scored)
    assert trajectory["days"][-1]["checkins"] == 1


async def test_far_past_samples_and_same_day_contradictions_are_stored_and_aggregated(
    services: Services, tenant: Tenant, db: asyncpg.Connection
) -> None:
    pid = f"pt-past-{uuid.uuid4().hex[:6]}"
    # The patient's zone is UTC. Keep "the same day" one day whatever time the suite runs: in the first
    # hour after midnight the check-ins go to the previous evening, and the old sample sits mid-morning.
    now = datetime.now(UTC)
    if now.hour < 1:
        now -= timedelta(hours=2)
    old = (now - timedelta(days=730)).replace(hour=10, minute=0, second=0, microsecond=0)
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, [])
        sample = {
            "event_id": str(uuid.uuid4()),
            "type": "steps",
            "start": old.isoformat(),
            "end": (old + timedelta(hours=1)).isoformat(),
            "value": 1200,
        }
        async with http.post(
            f"{services.url('ingest')}/v1/activity",
            headers=tenant.headers,
            json={"patient_id": pid, "device": {"id": "w", "kind": "wrist"}, "samples": [sample]},
        ) as r:
            assert r.status == 202
        same_day = [
            {
                "event_id": str(uuid.uuid4()),
                "patient_id": pid,
                "recorded_at": (now - timedelta(minutes=m)).isoformat(),
                "pain": {"current": p},
            }
            for m, p in ((30, 2), (20, 8), (10, 3))
        ]
        async with http.post(
            f"{services.url('ingest')}/v1/checkins/batch", json={"items": same_day}, headers=tenant.headers
        ) as r:
            assert r.status == 202

        async def both_days() -> Any:
            status, body = await get_json(
                http, f"{services.url('scoring')}/v1/patients/{pid}/trajectory", tenant.headers
            )
            return body if status == 200 and body["days"] and body["days"][-1]["checkins"] == 3 else None

        trajectory = await poll(both_days)
    # Three contradicting check-ins in one day aggregate to their median, not the worst or the last.
    assert trajectory["days"][-1]["pain"] == 3

    # The sample travels on the activity topic, which scoring may read after the check-ins.
    async def old_day_stored() -> bool:
        n = await db.fetchval("SELECT count(*) FROM scoring.daily WHERE patient_id = $1 AND day = $2", pid, old.date())
        return bool(n == 1)

    await poll(old_day_stored)
