"""Bad input: each gets its documented status and a problem+json body, and nothing reaches the log."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.events import Topics
from tests.support import Services, Tenant
from tooling.devstack import EmbeddedStack

pytestmark = pytest.mark.integration


async def log_end_offsets(bootstrap: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(Topics.checkins) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(Topics.checkins) or set()
        ends = await consumer.end_offsets([TopicPartition(Topics.checkins, p) for p in parts])
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


@pytest.fixture
async def enrolled(services: Services, tenant: Tenant) -> str:
    pid = f"pt-bad-{uuid.uuid4().hex[:8]}"
    body = {"patient_id": pid, "condition": "carpal_tunnel", "treatment": "conservative", "timezone": "Europe/London"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{services.url('ingest')}/v1/patients", json=body, headers=tenant.headers) as resp,
    ):
        assert resp.status == 201, await resp.text()
    return pid


def checkin(pid: str, **patch: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "patient_id": pid,
        "recorded_at": datetime.now(UTC).isoformat(),
        "pain": {"current": 3},
        "notes": "PRIVATE-NOTE-TEXT",
    }
    body.update(patch)
    return body


async def post(
    http: aiohttp.ClientSession, url: str, *, data: bytes, headers: dict[str, str], ctype: str = "application/json"
) -> tuple[int, str, dict[str, Any]]:
    async with http.post(url, data=data, headers={**headers, "Content-Type": ctype}) as resp:
        text = await resp.text()
        return resp.status, resp.content_type, json.loads(text) if text else {}


async def test_bad_checkins_get_problem_details_and_never_reach_the_log(
    services: Services,
    stack: EmbeddedStack,
    tenant: Tenant,
    other_tenant: Tenant,
    ingest_only_tenant: Tenant,
    care_only_tenant: Tenant,
    enrolled: str,
) -> None:
    url = f"{services.url('ingest')}/v1/checkins"
    other_pid = f"pt-other-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{services.url('ingest')}/v1/patients",
            json={
                "patient_id": other_pid,
                "condition": "cubital_tunnel",
                "treatment": "conservative",
                "timezone": "UTC",
            },
            headers=other_tenant.headers,
        ) as resp:
            assert resp.status == 201
        before = await log_end_offsets(stack.bootstrap)
        future = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
        cases: list[tuple[str, bytes, dict[str, str], str, int, str | None]] = [
            ("malformed json", b'{"event_id": ', tenant.headers, "application/json", 400, None),
            (
                "wrong type",
                json.dumps(checkin(enrolled, tingling="lots")).encode(),
                tenant.headers,
                "application/json",
                422,
                "tingling",
            ),
            (
                "out of range",
                json.dumps(checkin(enrolled, pain={"current": 14})).encode(),
                tenant.headers,
                "application/json",
                422,
                "current",
            ),
            (
                "bad function score",
                json.dumps(checkin(enrolled, function={"instrument": "odi", "score": 140})).encode(),
                tenant.headers,
                "application/json",
                422,
                "function",
            ),
            (
                "unknown enum",
                json.dumps(checkin(enrolled, red_flags=["headache"])).encode(),
                tenant.headers,
                "application/json",
                422,
                "red_flags",
            ),
            (
                "future recorded_at",
                json.dumps(checkin(enrolled, recorded_at=future)).encode(),
                tenant.headers,
                "application/json",
                422,
                "recorded_at",
            ),
            (
                "unknown patient",
                json.dumps(checkin("pt-nobody")).encode(),
                tenant.headers,
                "application/json",
                404,
                None,
            ),
            (
                "other tenant's patient",
                json.dumps(checkin(other_pid)).encode(),
                tenant.headers,
                "application/json",
                404,
                None,
            ),
            (
                "oversized body",
                json.dumps(checkin(enrolled, notes="x" * (1024 * 1024 + 10))).encode(),
                tenant.headers,
                "application/json",
                413,
                None,
            ),
            ("wrong content type", json.dumps(checkin(enrolled)).encode(), tenant.headers, "text/plain", 415, None),
            ("missing key", json.dumps(checkin(enrolled)).encode(), {}, "application/json", 401, None),
            (
                "wrong key",
                json.dumps(checkin(enrolled)).encode(),
                {"Authorization": "Bearer nw_not_a_key"},
                "application/json",
                401,
                None,
            ),
            (
                "wrong scope",
                json.dumps(checkin(enrolled)).encode(),
                care_only_tenant.headers,
                "application/json",
                403,
                None,
            ),
        ]
        for name, data, headers, ctype, status, field in cases:
            got, content_type, body = await post(http, url, data=data, headers=headers, ctype=ctype)
            assert got == status, (name, got, body)
            assert content_type == "application/problem+json", name
            assert body["status"] == status and body["title"], name
            assert "PRIVATE-NOTE-TEXT" not in json.dumps(body), name
            if field:
                assert any(field in map(str, e["loc"]) for e in body["errors"]), (name, body)
                assert all("input" not in e for e in body["errors"])

        # A care-only or ingest-only key on the other side of the API: 403.
        async with http.get(f"{services.url('alerts')}/v1/alerts", headers=ingest_only_tenant.headers) as resp:
            assert resp.status == 403
            assert resp.content_type == "application/problem+json"

        assert await log_end_offsets(stack.bootstrap) == before, "a rejected check-in reached the log"


async def test_batch_accepts_valid_items_and_reports_invalid_ones_by_index(
    services: Services, tenant: Tenant, enrolled: str
) -> None:
    items = [checkin(enrolled), checkin(enrolled, pain={"current": 99}), checkin("pt-nobody"), checkin(enrolled)]
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{services.url('ingest')}/v1/checkins/batch", json={"items": items}, headers=tenant.headers) as r,
    ):
        assert r.status == 202
        body = await r.json()
    assert body["accepted"] == 2 and body["rejected"] == 2
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert body["errors"][1]["errors"][0]["type"] == "unknown_patient"
    assert sorted(body["accepted_event_ids"]) == sorted([items[0]["event_id"], items[3]["event_id"]])


async def test_batch_with_no_valid_item_is_422(services: Services, tenant: Tenant, enrolled: str) -> None:
    items = [checkin(enrolled, pain={"current": -1})]
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{services.url('ingest')}/v1/checkins/batch", json={"items": items}, headers=tenant.headers) as r,
    ):
        assert r.status == 422
        body = await r.json()
    assert body["rejected"][0]["index"] == 0


async def test_bad_patient_and_activity_payloads(services: Services, tenant: Tenant, enrolled: str) -> None:
    ingest = services.url("ingest")
    async with aiohttp.ClientSession() as http:
        bad_patient = {
            "patient_id": "x",
            "condition": "tennis_elbow",
            "treatment": "conservative",
            "timezone": "Mars/Olympus",
            "care_team": [{"member_id": "m", "role": "physician", "notify": {}}],
        }
        async with http.post(f"{ingest}/v1/patients", json=bad_patient, headers=tenant.headers) as r:
            assert r.status == 422
            locs = {tuple(e["loc"]) for e in (await r.json())["errors"]}
        assert ("condition",) in locs and ("timezone",) in locs and ("care_team", 0, "notify") in locs
        sample = {
            "event_id": str(uuid.uuid4()),
            "type": "steps",
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-02T00:00:00Z",
            "value": 5000,
        }
        activity = {
            "patient_id": enrolled,
            "device": {"id": "w1", "kind": "wrist"},
            "samples": [sample, {**sample, "event_id": str(uuid.uuid4()), "value": -3}],
        }
        async with http.post(f"{ingest}/v1/activity", json=activity, headers=tenant.headers) as r:
            assert r.status == 202
            body = await r.json()
        assert body["accepted"] == 1 and body["errors"][0]["index"] == 1
        async with http.post(
            f"{ingest}/v1/activity", json={**activity, "patient_id": "pt-nobody"}, headers=tenant.headers
        ) as r:
            assert r.status == 404
