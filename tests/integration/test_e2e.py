"""Walking skeleton end to end: real service processes, real broker, real PostgreSQL.

Enrol -> red-flag check-in -> critical alert listed -> signed webhook -> repost is harmless ->
another tenant sees nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from services.alerts.delivery import verify
from tests.support import Services, Tenant, get_json, poll, webhook_receiver

pytestmark = pytest.mark.integration


def patient_body(patient_id: str, webhook_url: str) -> dict[str, object]:
    return {
        "patient_id": patient_id,
        "condition": "lumbar_radiculopathy",
        "side": "left",
        "treatment": "conservative",
        "timezone": "America/New_York",
        "care_team": [
            {
                "member_id": "pt-7",
                "role": "physical_therapist",
                "min_severity": "medium",
                "notify": {"webhook_url": webhook_url},
            },
            {
                "member_id": "oncall-1",
                "role": "on_call",
                "min_severity": "critical",
                "notify": {"webhook_url": webhook_url},
            },
            {
                "member_id": "coord-low",
                "role": "care_coordinator",
                "min_severity": "low",
                "notify": {"webhook_url": webhook_url + "?member=coord"},
            },
        ],
    }


async def test_red_flag_checkin_becomes_a_signed_webhook(
    services: Services, tenant: Tenant, other_tenant: Tenant
) -> None:
    ingest, alerts, scoring = services.url("ingest"), services.url("alerts"), services.url("scoring")
    pid = f"pt-e2e-{uuid.uuid4().hex[:8]}"
    async with webhook_receiver() as receiver, aiohttp.ClientSession() as http:
        async with http.post(
            f"{ingest}/v1/patients", json=patient_body(pid, receiver.url), headers=tenant.headers
        ) as resp:
            assert resp.status == 201, await resp.text()
        recorded_at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
        checkin = {
            "event_id": str(uuid.uuid4()),
            "patient_id": pid,
            "recorded_at": recorded_at.isoformat(),
            "pain": {"current": 7},
            "numbness": 6,
            "red_flags": ["bowel_bladder_dysfunction", "saddle_anesthesia"],
            "notes": "SECRET-NOTE-should-never-be-logged",
        }
        async with http.post(f"{ingest}/v1/checkins", json=checkin, headers=tenant.headers) as resp:
            assert resp.status == 202, await resp.text()
            assert (await resp.json())["event_id"] == checkin["event_id"]

        async def alert_listed() -> list[dict[str, object]]:
            _, page = await get_json(http, f"{alerts}/v1/alerts?patient_id={pid}", tenant.headers)
            return page["items"]  # type: ignore[no-any-return]

        items = await poll(alert_listed)
        assert len(items) == 1
        alert = items[0]
        assert alert["kind"] == "red_flag" and alert["severity"] == "critical" and alert["status"] == "open"
        assert datetime.fromisoformat(alert["event_time"]) == recorded_at
        assert alert["retrospective"] is False

        # Every member admits critical: three webhooks, each signed, each with its own delivery id.
        hooks = await receiver.wait_for(3)
        for hook in hooks:
            assert verify(tenant.webhook_secret, hook["headers"]["NerveWatch-Signature"], hook["body"])
            assert hook["json"]["id"] == alert["id"]
            assert "SECRET-NOTE" not in hook["body"].decode()
        assert len({h["headers"]["NerveWatch-Delivery"] for h in hooks}) == 3

        status, trajectory = await get_json(http, f"{scoring}/v1/patients/{pid}/trajectory", tenant.headers)
        assert status == 200 and trajectory["state"] == "red_flag"
        # The alert (listed and webhooked) records the engine and profile version that opened it.
        versions = (trajectory["engine_version"], trajectory["profile_version"])
        assert all(versions) and (alert["engine_version"], alert["profile_version"]) == versions
        assert all((h["json"]["engine_version"], h["json"]["profile_version"]) == versions for h in hooks)

        # Reposting the same event changes nothing.
        async with http.post(f"{ingest}/v1/checkins", json=checkin, headers=tenant.headers) as resp:
            assert resp.status == 202
        await asyncio.sleep(2.0)
        assert len(await alert_listed()) == 1
        assert len(receiver.requests) == 3
        _, got = await get_json(http, f"{alerts}/v1/alerts/{alert['id']}", tenant.headers)
        assert {n["status"] for n in got["notifications"]} == {"delivered"}

        # Another tenant sees nothing of it.
        _, page = await get_json(http, f"{alerts}/v1/alerts", other_tenant.headers)
        assert all(item["patient_id"] != pid for item in page["items"])
        for url in (
            f"{alerts}/v1/alerts/{alert['id']}",
            f"{alerts}/v1/alerts/{alert['id']}/audit",
            f"{scoring}/v1/patients/{pid}/trajectory",
            f"{ingest}/v1/patients/{pid}",
        ):
            status, body = await get_json(http, url, other_tenant.headers)
            assert status == 404, url
        async with http.post(
            f"{alerts}/v1/alerts/{alert['id']}/acknowledge", json={"by": "intruder"}, headers=other_tenant.headers
        ) as resp:
            assert resp.status == 404
        async with http.post(
            f"{ingest}/v1/checkins", json={**checkin, "event_id": str(uuid.uuid4())}, headers=other_tenant.headers
        ) as resp:
            assert resp.status == 404

        # The audit trail tells who knew what, when.
        _, audit = await get_json(http, f"{alerts}/v1/alerts/{alert['id']}/audit", tenant.headers)
        actions = [a["action"] for a in audit["items"]]
        assert actions[0] == "opened" and actions.count("notified") == 3

        # Acknowledge, twice (idempotent), then resolve, then resolve again (conflict).
        ack_url = f"{alerts}/v1/alerts/{alert['id']}/acknowledge"
        for _ in range(2):
            async with http.post(ack_url, json={"by": "oncall-1"}, headers=tenant.headers) as resp:
                assert resp.status == 200
                body = await resp.json()
                assert body["status"] == "acknowledged" and body["acknowledged_by"] == "oncall-1"
        res_url = f"{alerts}/v1/alerts/{alert['id']}/resolve"
        async with http.post(res_url, json={"by": "oncall-1", "note": "seen in clinic"}, headers=tenant.headers) as r:
            assert r.status == 200 and (await r.json())["resolution"] == "manual"
        async with http.post(res_url, json={"by": "oncall-1"}, headers=tenant.headers) as r:
            assert r.status == 409
            assert r.content_type == "application/problem+json"

    assert "SECRET-NOTE" not in services.logs()
    assert pid not in services.logs()
