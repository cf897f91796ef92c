"""Lifecycle changes on the stream and the webhooks, through the real services (contract v1.1):
a red-flag alert is opened, acknowledged, re-paged by a new red flag, acknowledged again and
resolved. Every change is one stream event whose `change` names it and whose `status` is the
alert's; the member whose webhook was paged gets a signed webhook of each (pages and the
informational acknowledged/resolved ones), an e-mail-only member none of the informational ones;
they are rows of the notification outbox (one delivery id each), never e-mailed, and not counted
in the alert's page summary."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.alerts.delivery import verify
from tests.support import Receiver, Services, create_tenant, poll, wait_alert, webhook_receiver

pytestmark = pytest.mark.integration

STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=60)


async def next_change(stream: aiohttp.StreamReader, alert_id: str, change: str) -> dict[str, Any]:
    """The next stream event of `alert_id` reporting `change` (others, e.g. `updated`, skipped)."""
    event = None
    while True:
        line = await asyncio.wait_for(stream.readline(), 30)
        assert line, "the stream ended"
        if line.startswith(b"event: "):
            event = line[7:].strip()
        elif line.startswith(b"data: ") and event == b"alert":
            data = json.loads(line[6:])
            assert "change" in data
            if data["id"] == alert_id and data["change"] == change:
                return data  # type: ignore[no-any-return]


async def webhooks(rx: Receiver, alert_id: str, change: str) -> list[dict[str, Any]]:
    async def arrived() -> list[dict[str, Any]]:
        return [r for r in rx.requests if r["json"]["id"] == alert_id and r["json"].get("change") == change]

    return await poll(arrived)  # type: ignore[no-any-return]


async def test_acknowledged_repaged_and_resolved_reach_the_stream_and_the_paged_webhooks(
    services: Services, database_url: str, db: asyncpg.Connection
) -> None:
    ingest, alerts = services.url("ingest"), services.url("alerts")
    tenant = await create_tenant(database_url, f"life-{uuid.uuid4().hex[:6]}")
    pid = f"pt-life-{uuid.uuid4().hex[:8]}"
    async with webhook_receiver() as rx, aiohttp.ClientSession(headers=tenant.headers) as http:
        care_team = [
            {
                "member_id": "oncall-1",
                "role": "on_call",
                "min_severity": "critical",
                "notify": {"webhook_url": rx.url, "email": "oncall1@example.org"},
            },
            {"member_id": "pt-9", "role": "physical_therapist", "notify": {"email": "pt9@example.org"}},
        ]
        enrolment = {
            "patient_id": pid,
            "condition": "lumbar_radiculopathy",
            "treatment": "conservative",
            "timezone": "UTC",
            "care_team": care_team,
        }
        async with http.post(f"{ingest}/v1/patients", json=enrolment) as resp:
            assert resp.status == 201, await resp.text()

        async def checkin(flag: str, hours_ago: float) -> None:
            at = (datetime.now(UTC) - timedelta(hours=hours_ago)).replace(microsecond=0)
            body = {
                "event_id": str(uuid.uuid4()),
                "patient_id": pid,
                "recorded_at": at.isoformat(),
                "pain": {"current": 8},
                "red_flags": [flag],
            }
            async with http.post(f"{ingest}/v1/checkins", json=body) as resp:
                assert resp.status == 202, await resp.text()

        async def act(alert_id: str, action: str) -> None:
            async with http.post(f"{alerts}/v1/alerts/{alert_id}/{action}", json={"by": "oncall-1"}) as resp:
                assert resp.status == 200, await resp.text()

        async with http.post(f"{alerts}/v1/alerts/stream-tickets") as resp:
            ticket = (await resp.json())["ticket"]
        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.get(f"{alerts}/v1/alerts/stream", params={"ticket": ticket}, timeout=STREAM_TIMEOUT) as stream,
        ):
            assert stream.status == 200
            await checkin("fever", 2)
            alert = await wait_alert(http, alerts, tenant, pid)
            aid = alert["id"]
            assert (await next_change(stream.content, aid, "opened"))["status"] == "open"
            [opened] = await webhooks(rx, aid, "opened")
            assert opened["json"]["status"] == "open"

            await act(aid, "acknowledge")
            seen = await next_change(stream.content, aid, "acknowledged")
            assert seen["status"] == "acknowledged" and seen["acknowledged_by"] == "oncall-1"
            [acked] = await webhooks(rx, aid, "acknowledged")
            assert acked["json"]["status"] == "acknowledged"

            await checkin("foot_drop", 1)  # a red flag not paged yet: re-pages the acknowledged alert
            seen = await next_change(stream.content, aid, "repaged")
            assert seen["status"] == "open" and set(seen["red_flags"]) == {"fever", "foot_drop"}
            [repaged] = await webhooks(rx, aid, "repaged")
            assert repaged["json"]["status"] == "open"

            await act(aid, "acknowledge")
            await next_change(stream.content, aid, "acknowledged")
            await act(aid, "resolve")
            seen = await next_change(stream.content, aid, "resolved")
            assert seen["status"] == "resolved" and seen["resolution"] == "manual"
            [resolved] = await webhooks(rx, aid, "resolved")
            assert resolved["json"]["status"] == "resolved"
            assert len(await webhooks(rx, aid, "acknowledged")) == 2

        # Each delivery is signed, has a delivery id of its own, and the body is the alert plus `change`.
        mine = [r for r in rx.requests if r["json"]["id"] == aid]
        assert sorted(r["json"]["change"] for r in mine) == [
            "acknowledged",
            "acknowledged",
            "opened",
            "repaged",
            "resolved",
        ]
        assert len({r["headers"]["NerveWatch-Delivery"] for r in mine}) == 5
        assert all(verify(tenant.webhook_secret, r["headers"]["NerveWatch-Signature"], r["body"]) for r in mine)

        # The informational ones are webhook rows of the outbox for the paged member only: no e-mail.
        rows = await db.fetch(
            "SELECT member_id, channel, reason, status FROM alerts.notifications WHERE alert_id = $1 ORDER BY id", aid
        )
        info = [
            (r["member_id"], r["channel"], r["status"]) for r in rows if r["reason"] in ("acknowledged", "resolved")
        ]
        assert info == [("oncall-1", "webhook", "delivered")] * 3
        pages = {
            (r["member_id"], r["channel"], r["reason"]) for r in rows if r["reason"] not in ("acknowledged", "resolved")
        }
        assert pages == {
            ("oncall-1", "webhook", "initial"),
            ("oncall-1", "email", "initial"),
            ("oncall-1", "webhook", "repaged"),
            ("oncall-1", "email", "repaged"),
            ("pt-9", "email", "initial"),  # paged by e-mail only: no informational webhook, no e-mail
            ("pt-9", "email", "repaged"),
        }

        # The alert's page summary counts pages only, and nothing escalated.
        async with http.get(f"{alerts}/v1/alerts/{aid}") as resp:
            body = await resp.json()
        webhook_summary = [n for n in body["notifications"] if n["channel"] == "webhook"]
        assert webhook_summary == [
            {"member_id": "oncall-1", "channel": "webhook", "status": "delivered", "attempts": 2}
        ]
        async with http.get(f"{alerts}/v1/alerts/{aid}/audit") as resp:
            actions = [a["action"] for a in (await resp.json())["items"]]
        assert "escalated" not in actions and actions.count("notified") >= 5
