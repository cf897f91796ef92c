"""Crash safety of the notification outbox, with real SIGKILLs of the alerts process.

- Killed with deliveries pending: after restart every pending notification is delivered.
- Killed between sending and recording: the receiver sees the delivery at most twice, with the
  same `NerveWatch-Delivery` id both times, and the notification ends up delivered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter

import aiohttp
import asyncpg
import pytest

from tests.support import Services, Tenant, enrol, get_json, poll, post_red_flag, wait_alert, webhook_receiver

pytestmark = pytest.mark.integration


async def test_sigkill_with_deliveries_pending_loses_nothing(
    services: Services, tenant: Tenant, db: asyncpg.Connection
) -> None:
    pids = [f"pt-kill-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        rx.status = 500  # the care team's endpoint is down: deliveries pile up as retrying
        team = [
            {"member_id": "oncall", "role": "on_call", "min_severity": "critical", "notify": {"webhook_url": rx.url}}
        ]
        for pid in pids:
            await enrol(http, services.url("ingest"), tenant, pid, team)
            await post_red_flag(http, services.url("ingest"), tenant, pid)
        alerts = [await wait_alert(http, services.url("alerts"), tenant, pid) for pid in pids]
        await rx.wait_for(3)
        services.stop("alerts", signal.SIGKILL)
        rx.status = 200
        services.start("alerts")
        services.wait_ready(("alerts",))

        async def all_delivered() -> bool:
            statuses = await db.fetch(
                "SELECT status FROM alerts.notifications WHERE alert_id = ANY($1::text[])", [a["id"] for a in alerts]
            )
            return len(statuses) == 3 and all(r["status"] == "delivered" for r in statuses)

        await poll(all_delivered, timeout_s=40)
        delivered = Counter(
            r["headers"]["NerveWatch-Delivery"] for r in rx.requests if r["json"]["id"] in {a["id"] for a in alerts}
        )
        assert len(delivered) == 3  # one delivery id per notification, retried under the same id


async def test_crash_between_send_and_record_duplicates_at_most_once(
    services: Services, tenant: Tenant, db: asyncpg.Connection
) -> None:
    pid = f"pt-crash-{uuid.uuid4().hex[:6]}"
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        alerts_pid = services.procs["alerts"].pid

        killed = asyncio.Event()
        original = list(rx.requests)

        async def kill_on_first() -> None:
            await rx.wait_for(len(original) + 1, timeout_s=30)
            if not killed.is_set():
                os.kill(alerts_pid, signal.SIGKILL)  # the webhook was received, the outcome not yet recorded
                killed.set()

        team = [
            {"member_id": "oncall", "role": "on_call", "min_severity": "critical", "notify": {"webhook_url": rx.url}}
        ]
        await enrol(http, services.url("ingest"), tenant, pid, team)
        rx.status = 200
        watcher = asyncio.create_task(kill_on_first())
        # Hold the response until the process is dead, so the send cannot be recorded.
        rx.delay_s = 2.0
        await post_red_flag(http, services.url("ingest"), tenant, pid)
        await asyncio.wait_for(watcher, 40)
        rx.delay_s = 0.0
        services.stop("alerts")
        services.start("alerts")
        services.wait_ready(("alerts",))
        alert = await wait_alert(http, services.url("alerts"), tenant, pid)

        async def delivered() -> bool:
            row = await db.fetchrow("SELECT status FROM alerts.notifications WHERE alert_id = $1", alert["id"])
            return row is not None and row["status"] == "delivered"

        await poll(delivered, timeout_s=40)
        ids = [r["headers"]["NerveWatch-Delivery"] for r in rx.requests if r["json"]["id"] == alert["id"]]
        assert 1 <= len(ids) <= 2 and len(set(ids)) == 1
        _, got = await get_json(http, f"{services.url('alerts')}/v1/alerts/{alert['id']}", tenant.headers)
        assert got["notifications"][0]["status"] == "delivered"
