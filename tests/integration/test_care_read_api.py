"""Care read API through the real services: `GET /v1/trajectories`, `GET /v1/alerts/counts`,
`GET /v1/patients/{id}/checkins` (newest first, notes, range) and `GET /v1/patients`: filters
(condition, member, id prefix, state), keyset paging, tenant isolation, scope, bad parameters (400
problem+json that never echo the input) and the access audit (one row per returned patient)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from nervewatch.identity.store import SCOPES
from tests.support import Services, Tenant, create_tenant, get_json, poll, post_red_flag, wait_alert

pytestmark = pytest.mark.integration


def enrolment(pid: str, condition: str, members: list[str]) -> dict[str, Any]:
    return {
        "patient_id": pid,
        "condition": condition,
        "treatment": "conservative",
        "timezone": "Europe/Berlin",
        "care_team": [
            {"member_id": m, "role": "physical_therapist", "notify": {"email": f"{m}@example.org"}} for m in members
        ],
    }


@pytest.fixture(scope="module")
async def reader(database_url: str, services: Services) -> Tenant:
    t = await create_tenant(database_url, f"read-{uuid.uuid4().hex[:6]}")
    async with aiohttp.ClientSession() as http:
        for pid, cond, members in [
            ("rd-a1", "carpal_tunnel", ["m-1"]),
            ("rd-a2", "cubital_tunnel", ["m-1", "m-2"]),
            ("rd-b1", "carpal_tunnel", ["m-2"]),
            ("rd_x", "carpal_tunnel", []),
            ("rdzx", "carpal_tunnel", []),
        ]:
            async with http.post(
                f"{services.url('ingest')}/v1/patients", json=enrolment(pid, cond, members), headers=t.headers
            ) as resp:
                assert resp.status == 201, await resp.text()
    return t


async def ids(http: aiohttp.ClientSession, services: Services, tenant: Tenant, query: str) -> list[str]:
    status, body = await get_json(http, f"{services.url('ingest')}/v1/patients?{query}", tenant.headers)
    assert status == 200, body
    return [item["patient_id"] for item in body["items"]]


async def test_filters_and_fields(services: Services, reader: Tenant) -> None:
    async with aiohttp.ClientSession() as http:
        status, body = await get_json(http, f"{services.url('ingest')}/v1/patients", reader.headers)
        assert status == 200, body
        assert [i["patient_id"] for i in body["items"]] == ["rd-a1", "rd-a2", "rd-b1", "rd_x", "rdzx"]
        assert body["next_cursor"] is None
        first = body["items"][0]
        assert set(first) == {"patient_id", "condition", "side", "treatment", "timezone", "enrolled_at", "updated_at"}
        assert first["timezone"] == "Europe/Berlin" and first["side"] == "not_applicable"
        assert await ids(http, services, reader, "condition=cubital_tunnel") == ["rd-a2"]
        assert await ids(http, services, reader, "member_id=m-2") == ["rd-a2", "rd-b1"]
        assert await ids(http, services, reader, "q=rd-a") == ["rd-a1", "rd-a2"]
        assert await ids(http, services, reader, "q=rd_") == ["rd_x"]  # '_' is literal, not a wildcard
        assert await ids(http, services, reader, "member_id=m-1&condition=carpal_tunnel") == ["rd-a1"]


async def test_paging(services: Services, reader: Tenant) -> None:
    seen: list[str] = []
    query = "limit=2"
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            status, body = await get_json(http, f"{services.url('ingest')}/v1/patients?{query}", reader.headers)
            assert status == 200, body
            assert len(body["items"]) <= 2
            seen += [i["patient_id"] for i in body["items"]]
            if body["next_cursor"] is None:
                break
            query = f"limit=2&cursor={body['next_cursor']}"
    assert seen == ["rd-a1", "rd-a2", "rd-b1", "rd_x", "rdzx"]


async def test_tenant_isolation_and_scope(services: Services, reader: Tenant, database_url: str) -> None:
    other = await create_tenant(database_url, f"read-o-{uuid.uuid4().hex[:6]}")
    ingest_only = await create_tenant(database_url, f"read-i-{uuid.uuid4().hex[:6]}", frozenset({"ingest"}))
    assert "care" in SCOPES
    async with aiohttp.ClientSession() as http:
        assert await ids(http, services, other, "") == []
        assert await ids(http, services, other, "q=rd") == []
        status, _ = await get_json(http, f"{services.url('ingest')}/v1/patients", ingest_only.headers)
        assert status == 403
        status, _ = await get_json(http, f"{services.url('ingest')}/v1/patients", {})
        assert status == 401


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=abc",
        "limit=99999999999999999999",
        "cursor=%25%25SECRETVALUE",
        "cursor=" + "A" * 200,
        "cursor=JSUl",  # decodes to '%%%', not a patient id
        "condition=SECRETVALUE",
        "member_id=SECRET%20VALUE",
        "q=SECRET%25",
        "q=" + "x" * 65,
    ],
)
async def test_bad_parameters(services: Services, reader: Tenant, query: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{services.url('ingest')}/v1/patients?{query}", headers=reader.headers) as resp,
    ):
        text = await resp.text()
        assert resp.status == 400, text
        assert resp.content_type == "application/problem+json"
        assert "SECRET" not in text and "x" * 65 not in text and "A" * 50 not in text


async def test_access_audit(services: Services, reader: Tenant, db: asyncpg.Connection) -> None:
    async with aiohttp.ClientSession() as http:
        assert await ids(http, services, reader, "q=rd-b") == ["rd-b1"]

    async def audited() -> bool:
        rows = await db.fetch(
            "SELECT patient_id FROM identity.access_log WHERE tenant_id = $1 AND route = '/v1/patients'"
            " AND method = 'GET'",
            reader.tenant_id,
        )
        return "rd-b1" in {r["patient_id"] for r in rows}

    await poll(audited)


async def test_alert_counts(services: Services, reader: Tenant, database_url: str, db: asyncpg.Connection) -> None:
    alerts = services.url("alerts")
    other = await create_tenant(database_url, f"read-c-{uuid.uuid4().hex[:6]}")
    async with aiohttp.ClientSession() as http:
        await post_red_flag(http, services.url("ingest"), reader, "rd-a1")
        alert = await wait_alert(http, alerts, reader, "rd-a1")
        severity = alert["severity"]
        status, body = await get_json(http, f"{alerts}/v1/alerts/counts?group_by=patient_id", reader.headers)
        assert status == 200, body
        assert [c["key"] for c in body["counts"]] == ["rd-a1"]
        assert body["counts"][0]["severity"][severity] == 1
        assert sum(body["counts"][0]["severity"].values()) == 1
        status, body = await get_json(http, f"{alerts}/v1/alerts/counts?group_by=kind&status=open", reader.headers)
        assert status == 200 and body["counts"][0]["key"] == "red_flag", body
        status, body = await get_json(http, f"{alerts}/v1/alerts/counts?group_by=severity", reader.headers)
        assert status == 200 and [c["key"] for c in body["counts"]] == [severity], body
        status, body = await get_json(http, f"{alerts}/v1/alerts/counts?group_by=kind&status=resolved", reader.headers)
        assert status == 200 and body["counts"] == [], body
        status, body = await get_json(http, f"{alerts}/v1/alerts/counts?group_by=patient_id", other.headers)
        assert status == 200 and body["counts"] == [], body
        for query in ["", "group_by=SECRETX", "group_by=kind&status=SECRETX", "group_by=kind&status=open,"]:
            async with http.get(f"{alerts}/v1/alerts/counts?{query}", headers=reader.headers) as resp:
                text = await resp.text()
                assert resp.status == 400, text
                assert resp.content_type == "application/problem+json" and "SECRETX" not in text

    async def audited() -> bool:
        rows = await db.fetch(
            "SELECT patient_id FROM identity.access_log WHERE tenant_id = $1 AND route = '/v1/alerts/counts'",
            reader.tenant_id,
        )
        return "rd-a1" in {r["patient_id"] for r in rows}

    await poll(audited)


async def test_trajectories(services: Services, reader: Tenant, database_url: str) -> None:
    scoring = services.url("scoring")
    other = await create_tenant(database_url, f"read-t-{uuid.uuid4().hex[:6]}")
    all_ids = ["rd-a1", "rd-a2", "rd-b1", "rd_x", "rdzx"]
    async with aiohttp.ClientSession() as http:

        async def listed() -> Any:
            status, body = await get_json(http, f"{scoring}/v1/trajectories", reader.headers)
            assert status == 200, body
            return body if [i["patient_id"] for i in body["items"]] == all_ids else None

        body = await poll(listed)
        item = body["items"][2]
        assert set(item) == {
            "patient_id",
            "condition",
            "state",
            "as_of",
            "last_data_at",
            "symptom_index",
            "change_from_baseline_pct",
        }
        assert item["condition"] == "carpal_tunnel" and item["state"] == "insufficient_data"
        status, body = await get_json(http, f"{scoring}/v1/trajectories?condition=cubital_tunnel", reader.headers)
        assert [i["patient_id"] for i in body["items"]] == ["rd-a2"]
        status, body = await get_json(http, f"{scoring}/v1/trajectories?q=rd_&state=insufficient_data", reader.headers)
        assert [i["patient_id"] for i in body["items"]] == ["rd_x"]
        seen: list[str] = []
        query = "limit=3"
        while True:
            status, body = await get_json(http, f"{scoring}/v1/trajectories?{query}", reader.headers)
            assert status == 200, body
            seen += [i["patient_id"] for i in body["items"]]
            if body["next_cursor"] is None:
                break
            query = f"limit=3&cursor={body['next_cursor']}"
        assert seen == all_ids
        status, body = await get_json(http, f"{scoring}/v1/trajectories", other.headers)
        assert status == 200 and body["items"] == []
        for query in ["limit=0", "limit=x", "state=SECRETX", "condition=SECRETX", "q=SECRETX%25", "cursor=SECRETX%25"]:
            async with http.get(f"{scoring}/v1/trajectories?{query}", headers=reader.headers) as resp:
                text = await resp.text()
                assert resp.status == 400, text
                assert resp.content_type == "application/problem+json" and "SECRETX" not in text


async def test_checkins_newest_first_with_notes(services: Services, reader: Tenant, database_url: str) -> None:
    scoring = services.url("scoring")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    times = [base + timedelta(days=i) for i in range(3)]
    async with aiohttp.ClientSession() as http:
        for i, at in enumerate(times):
            body = {
                "event_id": str(uuid.uuid4()),
                "patient_id": "rd-b1",
                "recorded_at": at.isoformat(),
                "pain": {"current": 2 + i},
                "notes": f"note {i}",
            }
            async with http.post(f"{services.url('ingest')}/v1/checkins", json=body, headers=reader.headers) as resp:
                assert resp.status == 202, await resp.text()
        url = f"{scoring}/v1/patients/rd-b1/checkins"

        async def stored() -> Any:
            status, body = await get_json(http, url, reader.headers)
            return body if status == 200 and len(body["items"]) == 3 else None

        body = await poll(stored)
        assert [i["notes"] for i in body["items"]] == ["note 2", "note 1", "note 0"]
        assert all("received_at" in i for i in body["items"])
        status, page1 = await get_json(http, f"{url}?limit=2", reader.headers)
        assert [i["notes"] for i in page1["items"]] == ["note 2", "note 1"] and page1["next_cursor"]
        status, page2 = await get_json(http, f"{url}?limit=2&cursor={page1['next_cursor']}", reader.headers)
        assert [i["notes"] for i in page2["items"]] == ["note 0"] and page2["next_cursor"] is None
        since = (times[1] - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
        until = (times[2] - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
        status, body = await get_json(http, f"{url}?since={since}&until={until}", reader.headers)
        assert status == 200 and [i["notes"] for i in body["items"]] == ["note 1"], body
        other = await create_tenant(database_url, f"read-k-{uuid.uuid4().hex[:6]}")
        status, _ = await get_json(http, url, other.headers)
        assert status == 404
        for query in ["limit=0", "since=SECRETX", "until=2026-01-01T00:00:00", "cursor=SECRETX"]:
            async with http.get(f"{url}?{query}", headers=reader.headers) as resp:
                text = await resp.text()
                assert resp.status == 400, text
                assert resp.content_type == "application/problem+json" and "SECRETX" not in text
