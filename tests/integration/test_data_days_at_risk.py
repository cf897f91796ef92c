"""Data days at risk through real PostgreSQL, the broker and the running alerts service.

A patient with 5 data days on day 19 of their 30-day period (11 more needed, 12 days left, lead
2) gets one `billing.data_days_at_risk` event on `nervewatch.billing.v1` from scoring's sweep
(run here in-process with an injected clock; the services' own sweep is switched off by the test
harness) and one low `data_days_at_risk` alert, whose notification waits for the end of the
tenant's quiet hours and which never escalates; sweeping again emits nothing; once the period
has closed the next sweep ends the raise and the alert resolves by itself.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from nervewatch.db import create_pool
from nervewatch.kafka import make_producer, topic_partitions
from nervewatch.outbox import Outbox
from nervewatch.settings import Settings
from schemas.events import Topics, event_key
from services.scoring.billing.risk_sweep import RiskSweeper, SweepResult
from tests.support import Services, Tenant, create_tenant, get_json, poll, webhook_receiver

pytestmark = pytest.mark.integration


def hhmm(t: datetime) -> str:
    return t.strftime("%H:%M")


async def billing_events(bootstrap: str, key: bytes) -> list[dict[str, Any]]:
    """Every event of `key` on the billing topic, in log order."""
    parts = await topic_partitions(bootstrap, Topics.billing)
    assert parts, "the billing topic exists"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[dict[str, Any]] = []
        for tp in parts:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for rec in batch.get(tp, []):
                    if rec.key == key and rec.value is not None:
                        out.append(json.loads(rec.value))
        return out
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
async def risk_tenant(database_url: str, services: Services) -> Tenant:
    """Counts backfilled data (the test backfills days); quiet hours around the current time;
    low alerts would escalate to on-call after ~1 s if anything escalated them."""
    t = await create_tenant(database_url, f"risk-{uuid.uuid4().hex[:6]}")
    now = datetime.now(UTC)
    policy = {
        "quiet_hours": {"start": hhmm(now - timedelta(hours=1)), "end": hhmm(now + timedelta(hours=3))},
        "timezone": "UTC",
        "escalation": {"low": [{"after_minutes": 0.02, "roles": ["on_call"]}]},
    }
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{services.url('scoring')}/v1/admin/billing-settings",
            json={"count_data_before_enrolment": True},
            headers=t.headers,
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with http.put(f"{services.url('alerts')}/v1/admin/alert-policy", json=policy, headers=t.headers) as resp:
            assert resp.status == 200, await resp.text()
    return t


async def test_few_data_days_late_in_the_period_raise_one_event_and_one_low_alert_that_pages_no_one_out_of_hours(
    services: Services, risk_tenant: Tenant, database_url: str
) -> None:
    pid = f"pt-risk-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    start = today - timedelta(days=18)  # today is day 19 of the period
    bootstrap = services.env["KAFKA_BOOTSTRAP_SERVERS"]
    key = event_key(risk_tenant.tenant_id, pid)
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        notify = {"webhook_url": rx.url}
        team = [
            {"member_id": "coord", "role": "care_coordinator", "min_severity": "low", "notify": notify},
            {"member_id": "oncall", "role": "on_call", "min_severity": "low", "notify": notify},
        ]
        body = {
            "patient_id": pid,
            "condition": "carpal_tunnel",
            "treatment": "conservative",
            "timezone": "UTC",
            "care_team": team,
        }
        async with http.post(f"{services.url('ingest')}/v1/patients", json=body, headers=risk_tenant.headers) as r:
            assert r.status in (200, 201), await r.text()
        checkins_url = f"{services.url('ingest')}/v1/checkins"
        for i in range(5):
            at = datetime.combine(start + timedelta(days=i), time(10), UTC)
            checkin: dict[str, Any] = {"event_id": str(uuid.uuid4()), "patient_id": pid}
            checkin |= {"recorded_at": at.isoformat(), "pain": {"current": 3}}
            async with http.post(checkins_url, json=checkin, headers=risk_tenant.headers) as r:
                assert r.status == 202, await r.text()

        billing_url = f"{services.url('scoring')}/v1/patients/{pid}/billing"

        async def five_days() -> Any:
            status, got = await get_json(http, billing_url, risk_tenant.headers)
            return got if status == 200 and got["periods"] and got["periods"][-1]["data_days"] == 5 else None

        figures = await poll(five_days)
        period = figures["periods"][-1]
        assert (period["start"], period["data_days_possible"], period["data_days_at_risk"]) == (
            start.isoformat(),
            17,
            True,
        )

        pool = await create_pool(database_url, min_size=1, max_size=2)
        producer = make_producer(Settings(kafka_bootstrap_servers=bootstrap))
        await producer.start()
        try:
            sweeper = RiskSweeper(pool, Outbox("scoring", pool, producer), clock=lambda: now)
            assert await sweeper.sweep_once([risk_tenant.tenant_id]) == SweepResult(raised=1, ended=0)

            [event] = await billing_events(bootstrap, key)
            assert event["type"] == "billing.data_days_at_risk"
            assert (event["period_start"], event["period_end"]) == (
                start.isoformat(),
                (start + timedelta(days=29)).isoformat(),
            )
            assert (event["data_days"], event["data_days_possible"], event["needed"], event["lead_days"]) == (
                5,
                17,
                11,
                2,
            )

            async def alert() -> Any:
                _, page = await get_json(
                    http,
                    f"{services.url('alerts')}/v1/alerts?patient_id={pid}&kind=data_days_at_risk",
                    risk_tenant.headers,
                )
                return page["items"][0] if page.get("items") else None

            opened = await poll(alert)
            assert (opened["severity"], opened["status"]) == ("low", "open")

            # Re-running the sweep emits nothing new.
            assert await sweeper.sweep_once([risk_tenant.tenant_id]) == SweepResult()
            assert len(await billing_events(bootstrap, key)) == 1

            # Out of hours: queued for the end of quiet hours, nothing sent, never escalated. The
            # alerts sweep runs every second and the dispatcher every 0.2 s; give both a few rounds.
            await asyncio.sleep(3)
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT member_id, status, reason, next_attempt_at FROM alerts.notifications WHERE alert_id = $1",
                    opened["id"],
                )
                actions = [
                    r["action"]
                    for r in await conn.fetch("SELECT action FROM alerts.audit WHERE alert_id = $1", opened["id"])
                ]
            assert sorted(r["member_id"] for r in rows) == ["coord", "oncall"]
            assert all(r["status"] == "pending" and r["reason"] == "initial" for r in rows)
            assert all(r["next_attempt_at"] > now + timedelta(hours=2) for r in rows)
            assert not [r for r in rx.requests if pid in json.dumps(r["json"])]
            assert "escalated" not in actions and "reminded" not in actions

            # The period closes: the next sweep ends the raise and the alert resolves by itself.
            after = datetime.combine(start + timedelta(days=30), time(1), UTC)
            ended = RiskSweeper(pool, Outbox("scoring", pool, producer), clock=lambda: after)
            assert await ended.sweep_once([risk_tenant.tenant_id]) == SweepResult(raised=0, ended=1)
            events = await billing_events(bootstrap, key)
            assert [e["type"] for e in events] == ["billing.data_days_at_risk", "billing.data_days_at_risk_ended"]
            assert events[1]["reason"] == "period_closed"

            async def resolved() -> Any:
                got = await alert()
                return got if got and got["status"] == "resolved" else None

            done = await poll(resolved)
            assert done["resolution"] == "auto"
            assert await ended.sweep_once([risk_tenant.tenant_id]) == SweepResult()
        finally:
            await producer.stop()
            await pool.close()
