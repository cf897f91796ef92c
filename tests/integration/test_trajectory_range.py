"""`GET /v1/patients/{id}/trajectory?since=&until=` through the real services: a patient with
check-ins over 200 days; the default shows the last 120 local days, a range shows exactly its
days (both ends inclusive), each day's index equals the one scoring stored for its recent days;
bad ranges are 400 problems naming the parameter without echoing it; another tenant's patient is
a 404; each read is in the access log."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support import Services, Tenant, create_tenant, get_json, poll

pytestmark = pytest.mark.integration

SPAN_DAYS = 200
EVERY = 5  # one check-in every 5 days, so 40 days with data


@dataclass
class History:
    tenant: Tenant
    pid: str
    recorded: list[date]  # the local (UTC) date of each check-in, oldest first

    def between(self, since: date, until: date) -> list[date]:
        return [d for d in self.recorded if since <= d <= until]


@pytest.fixture(scope="module")
async def history(services: Services, database_url: str) -> History:
    """A tenant and a patient (UTC) with 40 check-ins over the last 200 days, all scored."""
    tenant = await create_tenant(database_url, f"range-{uuid.uuid4().hex[:6]}")
    pid = f"pt-range-{uuid.uuid4().hex[:6]}"
    base = datetime.now(UTC) - timedelta(minutes=5)
    enrolment = {
        "patient_id": pid,
        "condition": "carpal_tunnel",
        "treatment": "conservative",
        "timezone": "UTC",
        "onset_date": (base - timedelta(days=400)).date().isoformat(),
        "care_team": [],
    }
    backs = list(range(SPAN_DAYS - 1, -1, -EVERY))
    items = [
        {
            "event_id": str(uuid.uuid4()),
            "patient_id": pid,
            "recorded_at": (base - timedelta(days=back)).isoformat(),
            "pain": {"current": 3 + back % 4},
            "tingling": 2 + back % 3,
        }
        for back in backs
    ]
    async with aiohttp.ClientSession(headers=tenant.headers) as http:
        async with http.post(f"{services.url('ingest')}/v1/patients", json=enrolment) as resp:
            assert resp.status == 201, await resp.text()
        for item in items:
            async with http.post(f"{services.url('ingest')}/v1/checkins", json=item) as resp:
                assert resp.status == 202, await resp.text()

        async def scored() -> bool:
            status, body = await get_json(
                http, f"{services.url('scoring')}/v1/patients/{pid}/trajectory?since=1900-01-01", tenant.headers
            )
            return status == 200 and sum(d["checkins"] for d in body["days"]) == len(items)

        await poll(scored, timeout_s=60)
    return History(tenant, pid, [(base - timedelta(days=b)).date() for b in backs])


def dates(body: dict[str, Any]) -> list[date]:
    return [date.fromisoformat(d["date"]) for d in body["days"]]


async def test_default_and_explicit_ranges(services: Services, history: History) -> None:
    url = f"{services.url('scoring')}/v1/patients/{history.pid}/trajectory"
    today = datetime.now(UTC).date()
    async with aiohttp.ClientSession() as http:
        status, body = await get_json(http, url, history.tenant.headers)
        assert status == 200, body
        assert dates(body) == history.between(today - timedelta(days=119), today)
        assert 23 <= len(body["days"]) <= 24
        assert {"state", "as_of", "reasons", "symptom_index"} <= set(body)

        since, until = history.recorded[10], history.recorded[12]  # both ends on a day with data
        status, body = await get_json(http, f"{url}?since={since}&until={until}", history.tenant.headers)
        assert status == 200, body
        assert dates(body) == history.recorded[10:13]  # both ends inclusive
        assert all(d["checkins"] == 1 and d["symptom_index"] is not None for d in body["days"])

        status, body = await get_json(http, f"{url}?since=1900-01-01", history.tenant.headers)
        assert status == 200 and dates(body) == history.recorded
        until = history.recorded[5]
        status, body = await get_json(http, f"{url}?until={until}", history.tenant.headers)
        assert status == 200 and dates(body) == history.between(until - timedelta(days=119), until)
        status, body = await get_json(http, f"{url}?since={today + timedelta(days=1)}", history.tenant.headers)
        assert status == 200 and body["days"] == [] and body["state"]  # the trajectory, no days


async def test_the_index_of_a_day_is_the_one_scoring_stored(
    services: Services, history: History, db: asyncpg.Connection
) -> None:
    tenant, pid = history.tenant, history.pid
    stored = await db.fetchval(
        "SELECT data FROM scoring.trajectories WHERE tenant_id = $1 AND patient_id = $2", tenant.tenant_id, pid
    )
    assert stored is not None
    recent = {d["date"]: d for d in json.loads(stored)["days"]}
    assert recent
    async with aiohttp.ClientSession() as http:
        status, body = await get_json(
            http, f"{services.url('scoring')}/v1/patients/{pid}/trajectory?since=1900-01-01", tenant.headers
        )
    assert status == 200, body
    served = {d["date"]: d for d in body["days"]}
    for day, d in recent.items():
        assert served[day] == d, day


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("since=SECRET", "since"),
        ("since=2026-02-30", "since"),
        ("until=2026-12-01T00%3A00%3A00Z", "until"),
        ("until=", "until"),
        ("since=2026-12-02&until=2026-12-01", "since"),
        ("since=1900-01-01&until=1899-12-31", "since"),
    ],
)
async def test_bad_ranges(services: Services, history: History, query: str, name: str) -> None:
    tenant, pid = history.tenant, history.pid
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{services.url('scoring')}/v1/patients/{pid}/trajectory?{query}", headers=tenant.headers) as resp,
    ):
        text = await resp.text()
        assert resp.status == 400, text
        assert resp.content_type == "application/problem+json"
        assert f"'{name}'" in text and "SECRET" not in text and "1899" not in text


async def test_tenant_isolation_and_access_log(
    services: Services, history: History, database_url: str, db: asyncpg.Connection
) -> None:
    tenant, pid = history.tenant, history.pid
    other = await create_tenant(database_url, f"range-o-{uuid.uuid4().hex[:6]}")
    url = f"{services.url('scoring')}/v1/patients/{pid}/trajectory?since=1900-01-01"
    async with aiohttp.ClientSession() as http:
        status, body = await get_json(http, url, other.headers)
        assert status == 404, body
        assert pid not in str(body)
        status, _ = await get_json(http, url, tenant.headers)
        assert status == 200

    async def audited() -> bool:
        rows = await db.fetch(
            "SELECT tenant_id FROM identity.access_log WHERE route = '/v1/patients/{patient_id}/trajectory'"
            " AND patient_id = $1",
            pid,
        )
        return tenant.tenant_id in {r["tenant_id"] for r in rows}

    await poll(audited, timeout_s=15)
    rows = await db.fetch(
        "SELECT 1 FROM identity.access_log WHERE tenant_id = $1 AND patient_id = $2", other.tenant_id, pid
    )
    assert not rows  # a 404 is not an access
