"""Safety rules of every ingest endpoint through the real services (issue #10, defects 3 and 4).

- Strict parsing and the plausibility floor: coerced strings, the unix epoch and bare unix numbers
  are 422 problems, and nothing of them reaches the log.
- Conflicting duplicates: a repost of an `event_id` with other content is 409 (`event-conflict`),
  an identical one 202 and stored once; batches and activity posts reject the conflicting items
  by index.
- A conflicting version that reaches the log anyway (produced straight onto the topic, as after the
  digest's expiry) is listed by `GET /v1/conflicts` and, carrying a red flag, is scored and pages.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.checkins import CheckIn
from schemas.digests import checkin_digest
from schemas.events import Topics, event_key
from tests.support import Receiver, Services, Tenant, create_tenant, enrol, get_json, poll, webhook_receiver
from tooling.devstack import EmbeddedStack

pytestmark = pytest.mark.integration

NOTE = "PRIVATE-NOTE-TEXT"


async def log_end(bootstrap: str) -> int:
    """Sum of the end offsets of the check-ins and activity topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(t, p)
            for t in (Topics.checkins, Topics.activity)
            for p in (consumer.partitions_for_topic(t) or set())
        ]
        ends = await consumer.end_offsets(tps)
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


def checkin(pid: str, **patch: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "patient_id": pid,
        "recorded_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "pain": {"current": 3},
        "notes": NOTE,
    }
    body.update(patch)
    return body


def sample(**patch: Any) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": "steps",
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "value": 1200,
    }
    body.update(patch)
    return body


async def post(http: aiohttp.ClientSession, url: str, body: Any, tenant: Tenant) -> tuple[int, str, dict[str, Any]]:
    async with http.post(url, json=body, headers=tenant.headers) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


def produced_checkin(tenant: Tenant, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "type": "checkin.recorded",
            "tenant_id": tenant.tenant_id,
            "received_at": datetime.now(UTC).isoformat(),
            "checkin": data,
        }
    ).encode()


async def produce_straight(stack: EmbeddedStack, tenant: Tenant, pid: str, data: dict[str, Any]) -> None:
    """Bypass ingest: put a check-in event straight onto the check-ins topic."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(
            Topics.checkins, key=event_key(tenant.tenant_id, pid), value=produced_checkin(tenant, data)
        )
    finally:
        await producer.stop()


async def wait_stored(db: asyncpg.Connection, event_id: str) -> None:
    async def stored() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM scoring.checkins WHERE event_id = $1", uuid.UUID(event_id)))

    await poll(stored)


# -- defect 4: strict parsing and the plausibility floor ------------------------------------------------


async def test_coerced_values_the_epoch_and_unix_numbers_are_422_and_never_reach_the_log(
    services: Services, stack: EmbeddedStack, tenant: Tenant
) -> None:
    ingest = services.url("ingest")
    pid = f"pt-strict-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as http:
        await enrol(http, ingest, tenant, pid, [])
        before = await log_end(stack.bootstrap)
        epoch_ts = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
        cases: list[tuple[str, dict[str, Any], tuple[str | int, ...]]] = [
            ("string for a boolean", checkin(pid, numbness_spreading="yes"), ("numbness_spreading",)),
            ("string for an integer", checkin(pid, pain={"current": "8"}), ("pain", "current")),
            ("unix epoch", checkin(pid, recorded_at="1970-01-01T00:00:00Z"), ("recorded_at",)),
            ("bare unix number", checkin(pid, recorded_at=epoch_ts), ("recorded_at",)),
            ("naive date-time", checkin(pid, recorded_at="2026-01-01T08:00:00"), ("recorded_at",)),
            ("boolean for an integer", checkin(pid, tingling=True), ("tingling",)),
            ("string for a float", checkin(pid, grip_strength_kg="17.5"), ("grip_strength_kg",)),
            ("number for a string", checkin(pid, notes=12345), ("notes",)),
            (
                "pt session before the floor",
                checkin(pid, pt_session={"ended_at": "1999-12-31T23:59:59Z"}),
                ("pt_session", "ended_at"),
            ),
        ]
        for name, body, loc in cases:
            status, ctype, problem = await post(http, f"{ingest}/v1/checkins", body, tenant)
            assert status == 422, (name, status, problem)
            assert ctype == "application/problem+json", name
            assert any(tuple(e["loc"])[: len(loc)] == loc for e in problem["errors"]), (name, problem)
            assert all("input" not in e for e in problem["errors"]), name
            text = json.dumps(problem)
            assert NOTE not in text and "yes" not in text and str(epoch_ts) not in text, (name, problem)

        # The same in a batch (each item rejected by index) and in an activity post.
        items = [body for _, body, _ in cases[:4]]
        status, _, problem = await post(http, f"{ingest}/v1/checkins/batch", {"items": items}, tenant)
        assert status == 422, problem
        assert [r["index"] for r in problem["rejected"]] == [0, 1, 2, 3]
        activity = {
            "patient_id": pid,
            "device": {"id": "w1", "kind": "wrist"},
            "samples": [
                sample(start="1970-01-01T00:00:00Z"),
                sample(end=epoch_ts),
                sample(value="1200"),
                sample(start="1999-12-31T00:00:00+00:00", end="1999-12-31T01:00:00+00:00"),
            ],
        }
        status, _, problem = await post(http, f"{ingest}/v1/activity", activity, tenant)
        assert status == 422, problem
        assert {tuple(e["loc"])[:3] for e in problem["errors"]} >= {
            ("samples", 0, "start"),
            ("samples", 1, "end"),
            ("samples", 2, "value"),
            ("samples", 3, "start"),
        }
        bad_device = {**activity, "device": {"id": 88, "kind": "wrist"}, "samples": [sample()]}
        status, _, problem = await post(http, f"{ingest}/v1/activity", bad_device, tenant)
        assert status == 422 and ("device", "id") in {tuple(e["loc"]) for e in problem["errors"]}, problem

        assert await log_end(stack.bootstrap) == before, "a rejected event reached the log"


async def test_the_floor_reaches_back_a_year_before_an_old_onset(services: Services, tenant: Tenant) -> None:
    ingest = services.url("ingest")
    pid = f"pt-onset-{uuid.uuid4().hex[:6]}"
    patient = {
        "patient_id": pid,
        "condition": "peripheral_nerve_injury",
        "treatment": "nerve_repair",
        "onset_date": "1995-06-15",
        "timezone": "UTC",
    }
    async with aiohttp.ClientSession() as http:
        status, _, body = await post(http, f"{ingest}/v1/patients", patient, tenant)
        assert status == 201, body
        ok = checkin(pid, recorded_at="1994-06-15T00:00:00Z")  # exactly the floor: one year before onset
        assert (await post(http, f"{ingest}/v1/checkins", ok, tenant))[0] == 202
        early = checkin(pid, recorded_at="1994-06-14T23:59:59Z")
        status, _, problem = await post(http, f"{ingest}/v1/checkins", early, tenant)
        assert status == 422 and problem["errors"][0]["type"] == "datetime_too_early", problem
        # Dates are YYYY-MM-DD strings only.
        for bad in (19950615, "1995-06-15T00:00:00", "15/06/1995"):
            status, _, problem = await post(http, f"{ingest}/v1/patients", {**patient, "onset_date": bad}, tenant)
            assert status == 422 and problem["errors"][0]["loc"] == ["onset_date"], (bad, problem)


# -- defect 3: conflicting duplicates are 409 at ingest ---------------------------------------------------


async def test_repost_with_other_content_is_409_and_identical_is_202_and_stored_once(
    services: Services, tenant: Tenant, db: asyncpg.Connection
) -> None:
    ingest = services.url("ingest")
    pid = f"pt-repost-{uuid.uuid4().hex[:6]}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    first = checkin(pid, recorded_at=at.isoformat(), red_flags=["fever", "foot_drop"])
    # The same observation, encoded differently: another offset, flags in another order.
    same = {
        **first,
        "recorded_at": at.astimezone(timezone(timedelta(hours=-5))).isoformat(),
        "red_flags": ["foot_drop", "fever"],
    }
    changed = {**first, "pain": {"current": 9}}
    async with aiohttp.ClientSession() as http:
        await enrol(http, ingest, tenant, pid, [])
        assert (await post(http, f"{ingest}/v1/checkins", first, tenant))[0] == 202
        assert (await post(http, f"{ingest}/v1/checkins", same, tenant))[0] == 202
        status, ctype, problem = await post(http, f"{ingest}/v1/checkins", changed, tenant)
        assert status == 409 and ctype == "application/problem+json", problem
        assert problem["type"].endswith("/event-conflict")
        assert problem["errors"] == [
            {"loc": ["event_id"], "msg": problem["errors"][0]["msg"], "type": "event_conflict"}
        ]
        assert NOTE not in json.dumps(problem)

        # Batch: the conflicting item is rejected by index, the rest accepted; all conflicting: 409.
        fresh = checkin(pid)
        status, _, result = await post(http, f"{ingest}/v1/checkins/batch", {"items": [changed, fresh, same]}, tenant)
        assert status == 202, result
        assert result["accepted"] == 2 and result["rejected"] == 1
        assert result["errors"][0]["index"] == 0 and result["errors"][0]["errors"][0]["type"] == "event_conflict"
        assert sorted(result["accepted_event_ids"]) == sorted([fresh["event_id"], first["event_id"]])
        status, _, problem = await post(http, f"{ingest}/v1/checkins/batch", {"items": [changed]}, tenant)
        assert status == 409 and problem["rejected"][0]["index"] == 0, problem
        # Within one batch the first occurrence of an event id wins.
        twin = checkin(pid)
        status, _, result = await post(
            http, f"{ingest}/v1/checkins/batch", {"items": [twin, {**twin, "pain": {"current": 7}}]}, tenant
        )
        assert status == 202 and result["accepted"] == 1 and result["errors"][0]["index"] == 1, result

        # Activity: a sample reposted with another value (or device) is rejected, identical accepted.
        s = sample()
        envelope = {"patient_id": pid, "device": {"id": "w1", "kind": "wrist"}, "samples": [s]}
        assert (await post(http, f"{ingest}/v1/activity", envelope, tenant))[0] == 202
        assert (await post(http, f"{ingest}/v1/activity", envelope, tenant))[0] == 202
        other = {**envelope, "samples": [{**s, "value": 999}, sample()]}
        status, _, result = await post(http, f"{ingest}/v1/activity", other, tenant)
        assert status == 202 and result["accepted"] == 1 and result["errors"][0]["index"] == 0, result
        moved = {**envelope, "device": {"id": "w2", "kind": "wrist"}}
        status, _, problem = await post(http, f"{ingest}/v1/activity", moved, tenant)
        assert status == 409 and problem["errors"][0]["type"] == "event_conflict", problem

    await wait_stored(db, first["event_id"])
    await wait_stored(db, fresh["event_id"])
    rows = await db.fetch("SELECT data FROM scoring.checkins WHERE event_id = $1", uuid.UUID(first["event_id"]))
    assert len(rows) == 1 and json.loads(rows[0]["data"])["pain"]["current"] == 3
    # The refused version never reached the log, so scoring saw no conflict.
    assert not await db.fetchval(
        "SELECT count(*) FROM scoring.event_conflicts WHERE event_id = $1", uuid.UUID(first["event_id"])
    )
    digests = await db.fetchval(
        "SELECT count(*) FROM ingest.event_digests WHERE tenant_id = $1 AND event_id = $2",
        tenant.tenant_id,
        uuid.UUID(first["event_id"]),
    )
    assert digests == 1


# -- conflicts that reach scoring anyway ------------------------------------------------------------------


def on_call(rx: Receiver) -> list[dict[str, Any]]:
    return [{"member_id": "oncall", "role": "on_call", "min_severity": "critical", "notify": {"webhook_url": rx.url}}]


async def red_flag_alerts(http: aiohttp.ClientSession, services: Services, tenant: Tenant, pid: str) -> list[Any]:
    _, page = await get_json(http, f"{services.url('alerts')}/v1/alerts?patient_id={pid}&kind=red_flag", tenant.headers)
    return list(page["items"])


async def listed_conflict(http: aiohttp.ClientSession, services: Services, tenant: Tenant, event_id: str) -> Any:
    status, page = await get_json(http, f"{services.url('scoring')}/v1/conflicts?limit=500", tenant.headers)
    assert status == 200, page
    return next((i for i in page["items"] if i["event_id"] == event_id), None)


async def test_a_conflicting_version_with_a_red_flag_that_bypassed_ingest_is_listed_scored_and_pages(
    services: Services, stack: EmbeddedStack, database_url: str, db: asyncpg.Connection
) -> None:
    tenant = await create_tenant(database_url, f"conflict-{uuid.uuid4().hex[:6]}")
    pid = f"pt-cf-{uuid.uuid4().hex[:6]}"
    first = checkin(pid, pain={"current": 4})
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, on_call(rx))
        assert (await post(http, f"{services.url('ingest')}/v1/checkins", first, tenant))[0] == 202
        await wait_stored(db, first["event_id"])
        assert await red_flag_alerts(http, services, tenant, pid) == []

        # The corrected version, now with a red flag, arrives after ingest forgot the digest.
        conflicting = {**first, "pain": {"current": 7}, "red_flags": ["saddle_anesthesia"], "notes": "CORRECTED"}
        await produce_straight(stack, tenant, pid, conflicting)

        item = await poll(lambda: listed_conflict(http, services, tenant, first["event_id"]))
        assert item["kind"] == "checkin" and item["patient_id"] == pid and item["red_flag"] is True
        now = datetime.now(UTC)
        ctx = {"now": now}
        assert item["first_digest"] == checkin_digest(CheckIn.model_validate(first, context=ctx)).hex()
        assert item["conflicting_digest"] == checkin_digest(CheckIn.model_validate(conflicting, context=ctx)).hex()
        assert set(item) == {
            "event_id",
            "kind",
            "patient_id",
            "first_digest",
            "conflicting_digest",
            "seen_at",
            "red_flag",
        }

        async def red_flag_state() -> Any:
            _, body = await get_json(http, f"{services.url('scoring')}/v1/patients/{pid}/trajectory", tenant.headers)
            return body if body.get("state") == "red_flag" else None

        await poll(red_flag_state)
        alerts = await poll(lambda: red_flag_alerts(http, services, tenant, pid))
        assert alerts[0]["severity"] == "critical" and alerts[0]["status"] == "open"
        hooks = await rx.wait_for(1)
        assert hooks[0]["json"]["kind"] == "red_flag" and hooks[0]["json"]["patient_id"] == pid

    # The first version is kept; the conflicting one is recorded with its data.
    row = await db.fetchrow(
        "SELECT data, red_flags, local_date FROM scoring.event_conflicts WHERE event_id = $1",
        uuid.UUID(first["event_id"]),
    )
    assert row is not None and list(row["red_flags"]) == ["saddle_anesthesia"] and row["local_date"] is not None
    kept = await db.fetchval("SELECT data FROM scoring.checkins WHERE event_id = $1", uuid.UUID(first["event_id"]))
    assert json.loads(kept)["pain"]["current"] == 4
    # The trajectory event carries a red_flag signal for the conflicting version (what alerts pages).
    signals = await db.fetchval(
        "SELECT signals FROM scoring.trajectories WHERE tenant_id = $1 AND patient_id = $2", tenant.tenant_id, pid
    )
    red = [sig for sig in json.loads(signals) if sig["code"] == "red_flag"]
    assert [(sig["event_id"], sig["flags"]) for sig in red] == [(first["event_id"], ["saddle_anesthesia"])]


async def test_a_conflicting_version_adding_a_red_flag_after_a_resolved_page_pages_again(
    services: Services, stack: EmbeddedStack, database_url: str, db: asyncpg.Connection
) -> None:
    tenant = await create_tenant(database_url, f"conflict-{uuid.uuid4().hex[:6]}")
    pid = f"pt-cf2-{uuid.uuid4().hex[:6]}"
    first = checkin(pid, pain={"current": 5}, red_flags=["fever"])
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, on_call(rx))
        assert (await post(http, f"{services.url('ingest')}/v1/checkins", first, tenant))[0] == 202
        alerts = await poll(lambda: red_flag_alerts(http, services, tenant, pid))
        await rx.wait_for(1)
        async with http.post(
            f"{services.url('alerts')}/v1/alerts/{alerts[0]['id']}/resolve",
            json={"by": "oncall"},
            headers=tenant.headers,
        ) as resp:
            assert resp.status == 200, await resp.text()
        paged = len(rx.requests)

        conflicting = {**first, "red_flags": ["fever", "saddle_anesthesia"]}
        await produce_straight(stack, tenant, pid, conflicting)
        await poll(lambda: listed_conflict(http, services, tenant, first["event_id"]))

        async def new_page() -> bool:
            return any(r["json"]["kind"] == "red_flag" and r["json"]["status"] == "open" for r in rx.requests[paged:])

        await poll(new_page, timeout_s=20)


# -- GET /v1/conflicts: scope, tenant, pagination, parameters ---------------------------------------------


async def test_conflicts_listing_is_admin_scoped_per_tenant_paginated_and_validated(
    services: Services,
    stack: EmbeddedStack,
    database_url: str,
    other_tenant: Tenant,
    care_only_tenant: Tenant,
    db: asyncpg.Connection,
) -> None:
    tenant = await create_tenant(database_url, f"conflicts-{uuid.uuid4().hex[:6]}")
    scoring = services.url("scoring")
    pid = f"pt-cl-{uuid.uuid4().hex[:6]}"
    firsts = [checkin(pid) for _ in range(3)]
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, [])
        for body in firsts:
            assert (await post(http, f"{services.url('ingest')}/v1/checkins", body, tenant))[0] == 202
        for body in firsts:
            await wait_stored(db, body["event_id"])
        for body in firsts:
            await produce_straight(stack, tenant, pid, {**body, "pain": {"current": 8}})

        async def all_listed() -> Any:
            _, page = await get_json(http, f"{scoring}/v1/conflicts", tenant.headers)
            return page if len(page["items"]) == 3 else None

        full = await poll(all_listed)
        assert {i["event_id"] for i in full["items"]} == {b["event_id"] for b in firsts}
        assert all(i["red_flag"] is False for i in full["items"])
        seen = [i["seen_at"] for i in full["items"]]
        assert seen == sorted(seen, reverse=True)

        # Pagination with limit=1 walks the same items in the same order.
        walked: list[str] = []
        url = f"{scoring}/v1/conflicts?limit=1"
        while True:
            status, page = await get_json(http, url, tenant.headers)
            assert status == 200 and len(page["items"]) <= 1
            walked += [i["event_id"] for i in page["items"]]
            if not page["next_cursor"]:
                break
            url = f"{scoring}/v1/conflicts?limit=1&cursor={page['next_cursor']}"
        assert walked == [i["event_id"] for i in full["items"]]
        since = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        status, page = await get_json(http, f"{scoring}/v1/conflicts?since={since}", tenant.headers)
        assert status == 200 and page["items"] == []

        # Another tenant sees none of them; a care key may not list; bad parameters are 400 problems.
        _, page = await get_json(http, f"{scoring}/v1/conflicts", other_tenant.headers)
        assert not {i["event_id"] for i in page["items"]} & {b["event_id"] for b in firsts}
        status, _ = await get_json(http, f"{scoring}/v1/conflicts", care_only_tenant.headers)
        assert status == 403
        for query in (
            "limit=0",
            "limit=501",
            "limit=abc",
            "limit=1_0",
            "cursor=not-a-cursor",
            "cursor=eyJzIjogMX0",
            "since=2026-01-01T00:00:00",
            "since=1767225600",
        ):
            async with http.get(f"{scoring}/v1/conflicts?{query}", headers=tenant.headers) as resp:
                assert resp.status == 400, query
                assert resp.content_type == "application/problem+json", query


async def test_a_held_conflicting_red_flag_version_is_dated_and_scored_on_enrolment(
    services: Services, stack: EmbeddedStack, tenant: Tenant, db: asyncpg.Connection
) -> None:
    """Both versions arrive before the patient is enrolled (held); the enrolment dates them."""
    pid = f"pt-cfh-{uuid.uuid4().hex[:6]}"
    first = checkin(pid)
    await produce_straight(stack, tenant, pid, first)
    await wait_stored(db, first["event_id"])
    await produce_straight(stack, tenant, pid, {**first, "red_flags": ["bowel_bladder_dysfunction"]})

    async def held() -> bool:
        row = await db.fetchrow(
            "SELECT local_date FROM scoring.event_conflicts WHERE event_id = $1", uuid.UUID(first["event_id"])
        )
        return row is not None and row["local_date"] is None

    await poll(held)
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, [])

        async def red_flag_state() -> Any:
            _, body = await get_json(http, f"{services.url('scoring')}/v1/patients/{pid}/trajectory", tenant.headers)
            return body if body.get("state") == "red_flag" else None

        await poll(red_flag_state)
    local = await db.fetchval(
        "SELECT local_date FROM scoring.event_conflicts WHERE event_id = $1", uuid.UUID(first["event_id"])
    )
    assert local == datetime.fromisoformat(first["recorded_at"]).astimezone(UTC).date()  # the patient's zone is UTC
