"""Alerting behaviour through the real services: escalation, acknowledgement, SSE, cursors, snoozes, lifecycle topic."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from schemas.events import Topics
from tests.support import (
    Services,
    Tenant,
    create_tenant,
    enrol,
    get_json,
    poll,
    post_red_flag,
    wait_alert,
    webhook_receiver,
)
from tooling.devstack import EmbeddedStack

pytestmark = pytest.mark.integration


def member(member_id: str, role: str, url: str, min_severity: str = "critical") -> dict[str, Any]:
    return {
        "member_id": member_id,
        "role": role,
        "min_severity": min_severity,
        "notify": {"webhook_url": f"{url}?m={member_id}"},
    }


def to_member(requests: list[dict[str, Any]], member_id: str) -> list[dict[str, Any]]:
    return [r for r in requests if r["headers"].get("X-Member") == member_id or f"m={member_id}" in r.get("url", "")]


@pytest.fixture(scope="module")
async def esc_tenant(database_url: str, services: Services) -> Tenant:
    """A tenant whose critical alerts escalate to on_call after ~1 s."""
    t = await create_tenant(database_url, f"esc-{uuid.uuid4().hex[:6]}")
    policy = {
        "escalation": {"critical": [{"after_minutes": 0.02, "roles": ["on_call"]}]},
        "quiet_hours": None,
        "repeat_interval_minutes": 60,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{services.url('alerts')}/v1/admin/alert-policy", json=policy, headers=t.headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
    return t


async def test_unacknowledged_critical_alert_escalates_to_on_call(services: Services, esc_tenant: Tenant) -> None:
    pid = f"pt-esc-{uuid.uuid4().hex[:6]}"
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        await enrol(
            http,
            services.url("ingest"),
            esc_tenant,
            pid,
            [member("physio", "physical_therapist", rx.url), member("oncall", "on_call", rx.url)],
        )
        await post_red_flag(http, services.url("ingest"), esc_tenant, pid)
        alert = await wait_alert(http, services.url("alerts"), esc_tenant, pid)

        async def escalated() -> bool:
            _, audit = await get_json(
                http, f"{services.url('alerts')}/v1/alerts/{alert['id']}/audit", esc_tenant.headers
            )
            return any(a["action"] == "escalated" for a in audit["items"])

        await poll(escalated, timeout_s=20)
        # initial to both members, then the escalation page to on_call
        try:
            await rx.wait_for(3)
        except TimeoutError:
            _, audit = await get_json(
                http, f"{services.url('alerts')}/v1/alerts/{alert['id']}/audit", esc_tenant.headers
            )
            raise AssertionError(f"webhooks {len(rx.requests)}; audit {audit}") from None
        await asyncio.sleep(1.5)
        assert len(rx.requests) == 3
        _, got = await get_json(http, f"{services.url('alerts')}/v1/alerts/{alert['id']}", esc_tenant.headers)
        oncall = [n for n in got["notifications"] if n["member_id"] == "oncall"]
        assert oncall and oncall[0]["attempts"] == 2


async def test_acknowledged_alert_does_not_escalate(services: Services, esc_tenant: Tenant) -> None:
    pid = f"pt-ack-{uuid.uuid4().hex[:6]}"
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), esc_tenant, pid, [member("oncall", "on_call", rx.url)])
        await post_red_flag(http, services.url("ingest"), esc_tenant, pid)
        alert = await wait_alert(http, services.url("alerts"), esc_tenant, pid)
        async with http.post(
            f"{services.url('alerts')}/v1/alerts/{alert['id']}/acknowledge",
            json={"by": "oncall"},
            headers=esc_tenant.headers,
        ) as resp:
            assert resp.status == 200
        await asyncio.sleep(3)
        _, audit = await get_json(http, f"{services.url('alerts')}/v1/alerts/{alert['id']}/audit", esc_tenant.headers)
        assert "escalated" not in [a["action"] for a in audit["items"]]


async def test_sse_stream_is_tenant_isolated(services: Services, tenant: Tenant, other_tenant: Tenant) -> None:
    pid = f"pt-sse-{uuid.uuid4().hex[:6]}"
    alerts = services.url("alerts")
    mine: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []

    async def listen(t: Tenant, sink: list[dict[str, Any]], http: aiohttp.ClientSession) -> None:
        async with http.get(f"{alerts}/v1/alerts/stream", headers=t.headers) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            async for line in resp.content:
                if line.startswith(b"data: "):
                    sink.append(json.loads(line[6:]))

    async with aiohttp.ClientSession() as http:
        tasks = [
            asyncio.create_task(listen(tenant, mine, http)),
            asyncio.create_task(listen(other_tenant, theirs, http)),
        ]
        await asyncio.sleep(0.5)
        await enrol(http, services.url("ingest"), tenant, pid, [])
        await post_red_flag(http, services.url("ingest"), tenant, pid)
        await poll(lambda: _has(mine, pid))
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert all(a["patient_id"] != pid for a in theirs)


async def _has(items: list[dict[str, Any]], pid: str) -> bool:
    return any(a["patient_id"] == pid for a in items)


async def test_cursor_pagination_is_complete_and_tenant_scoped(
    services: Services, database_url: str, other_tenant: Tenant
) -> None:
    t = await create_tenant(database_url, f"page-{uuid.uuid4().hex[:6]}")
    pids = [f"pt-page-{i}" for i in range(5)]
    alerts = services.url("alerts")
    async with aiohttp.ClientSession() as http:
        for pid in pids:
            await enrol(http, services.url("ingest"), t, pid, [])
            await post_red_flag(http, services.url("ingest"), t, pid)
        for pid in pids:
            await wait_alert(http, alerts, t, pid)
        seen: list[str] = []
        url = f"{alerts}/v1/alerts?limit=2"
        cursors = []
        while True:
            _, page = await get_json(http, url, t.headers)
            seen.extend(a["id"] for a in page["items"])
            if not page["next_cursor"]:
                break
            cursors.append(page["next_cursor"])
            url = f"{alerts}/v1/alerts?limit=2&cursor={page['next_cursor']}"
        assert len(seen) == 5 and len(set(seen)) == 5
        for c in cursors:  # another tenant replaying our cursor sees only its own alerts
            _, page = await get_json(http, f"{alerts}/v1/alerts?limit=2&cursor={c}", other_tenant.headers)
            assert not set(a["id"] for a in page["items"]) & set(seen)
        status, _ = await get_json(http, f"{alerts}/v1/alerts?cursor=garbage!", t.headers)
        assert status == 400
        status, _ = await get_json(http, f"{alerts}/v1/alerts?limit=501", t.headers)
        assert status == 400


async def test_snoozes(services: Services, tenant: Tenant, other_tenant: Tenant) -> None:
    """Snoozes are bounded (future, at most 30 days), listed, ended early, and audited (H8)."""
    pid = f"pt-snooze-{uuid.uuid4().hex[:6]}"
    alerts = services.url("alerts")
    base = f"{alerts}/v1/patients/{pid}/snoozes"
    now = datetime.now(UTC)

    def body(until: object, kind: str = "plateau") -> dict[str, Any]:
        return {"kind": kind, "until": until, "by": "pt-7"}

    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, [])
        await post_red_flag(http, services.url("ingest"), tenant, pid)
        await wait_alert(http, alerts, tenant, pid)
        for bad in (
            (now - timedelta(minutes=1)).isoformat(),  # in the past
            "9999-12-31T23:59:59Z",  # a permanent mute in disguise
            (now + timedelta(days=30, minutes=5)).isoformat(),  # beyond max_snooze_days
            int((now + timedelta(days=1)).timestamp()),  # not an RFC 3339 string
            (now + timedelta(days=1)).replace(tzinfo=None).isoformat(),  # no offset
        ):
            async with http.post(base, json=body(bad), headers=tenant.headers) as r:
                assert r.status == 422, (bad, await r.text())
        async with http.post(
            base, json=body((now + timedelta(days=1)).isoformat(), "red_flag"), headers=tenant.headers
        ) as r:
            assert r.status == 422
        unknown = f"{alerts}/v1/patients/pt-unknown/snoozes"
        async with http.post(unknown, json=body((now + timedelta(days=1)).isoformat()), headers=tenant.headers) as r:
            assert r.status == 404
        async with http.post(base, json=body((now + timedelta(days=1)).isoformat()), headers=tenant.headers) as r:
            assert r.status == 201
            first = await r.json()
        assert first["id"].startswith("sn_") and first["kind"] == "plateau"
        async with http.post(base, json=body((now + timedelta(days=7)).isoformat()), headers=tenant.headers) as r:
            assert r.status == 201
            second = await r.json()
        status, page = await get_json(http, base, tenant.headers)
        assert status == 200 and [s["id"] for s in page["items"]] == [second["id"]]  # the new one replaced it
        status, _ = await get_json(http, base, other_tenant.headers)
        assert status == 404
        end = f"{base}/{second['id']}"
        async with http.delete(end, json={"by": "pt-7"}, headers=other_tenant.headers) as r:
            assert r.status == 404
        async with http.delete(end, json={"by": "pt-7"}, headers=tenant.headers) as r:
            assert r.status == 204
        async with http.delete(end, json={"by": "pt-7"}, headers=tenant.headers) as r:
            assert r.status == 404
        _, page = await get_json(http, base, tenant.headers)
        assert page["items"] == []
        _, audit = await get_json(http, f"{alerts}/v1/patients/{pid}/audit", tenant.headers)
        actions = [(a["action"], a["detail"].get("snooze_id")) for a in audit["items"]]
        assert ("snoozed", first["id"]) in actions and ("snoozed", second["id"]) in actions
        assert ("snooze_ended", second["id"]) in actions
        assert any(a == "opened" for a, _ in actions)  # the patient's alert entries are in the same audit


async def test_alert_lifecycle_events_reach_their_topic(
    services: Services, stack: EmbeddedStack, tenant: Tenant
) -> None:
    pid = f"pt-life-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, [])
        await post_red_flag(http, services.url("ingest"), tenant, pid)
        alert = await wait_alert(http, services.url("alerts"), tenant, pid)
    consumer = AIOKafkaConsumer(
        Topics.alerts, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", group_id=f"t-{uuid.uuid4().hex}"
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:

        async def seen() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for rec in records:
                    event = json.loads(rec.value)
                    if event["alert"]["id"] == alert["id"]:
                        found.append(event)
            return bool(found)

        await poll(seen, timeout_s=20)
    finally:
        await consumer.stop()
    assert found[0]["action"] == "opened" and found[0]["schema_version"] == 1
