"""RTM billing through the real services: time entries (CRUD, audit, 409 overlap, validation, 404
for another tenant), billing figures after check-ins on distinct local days (time zone, late data
for a closed period), the monthly report as JSON and CSV, settings, access audit and metrics."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest

from tests.support import Services, Tenant, create_tenant, get_json, poll

pytestmark = pytest.mark.integration

NY = ZoneInfo("America/New_York")
PRIVATE = "PRIVATE NOTE 7f3a: patient mentioned their divorce"


@pytest.fixture(scope="module")
async def billing_tenant(database_url: str, services: Services) -> Tenant:
    """A tenant of its own that counts data recorded before enrolment (the test backfills days)."""
    t = await create_tenant(database_url, f"bill-{uuid.uuid4().hex[:6]}")
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{services.url('scoring')}/v1/admin/billing-settings",
            json={"count_data_before_enrolment": True},
            headers=t.headers,
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["count_data_before_enrolment"] is True
    return t


async def enrol_ny(http: aiohttp.ClientSession, services: Services, tenant: Tenant, pid: str) -> None:
    body = {
        "patient_id": pid,
        "condition": "carpal_tunnel",
        "treatment": "conservative",
        "timezone": "America/New_York",
        "care_team": [],
    }
    async with http.post(f"{services.url('ingest')}/v1/patients", json=body, headers=tenant.headers) as resp:
        assert resp.status in (200, 201), await resp.text()

    async def known() -> bool:
        status, _ = await get_json(http, f"{services.url('scoring')}/v1/patients/{pid}/billing", tenant.headers)
        return status == 200

    await poll(known)


async def checkin(http: aiohttp.ClientSession, services: Services, tenant: Tenant, pid: str, at: datetime) -> None:
    body = {"event_id": str(uuid.uuid4()), "patient_id": pid, "recorded_at": at.isoformat(), "pain": {"current": 3}}
    async with http.post(f"{services.url('ingest')}/v1/checkins", json=body, headers=tenant.headers) as resp:
        assert resp.status == 202, await resp.text()


def local(day: date, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), NY)


def entry_body(started: datetime, minutes: int = 20, **kw: Any) -> dict[str, Any]:
    return {
        "member_id": kw.pop("member_id", "pt-therapist-7"),
        "started_at": started.isoformat(),
        "minutes": minutes,
        "activity": kw.pop("activity", "patient_call"),
        "interactive": kw.pop("interactive", True),
        **kw,
    }


async def post_entry(
    http: aiohttp.ClientSession, services: Services, tenant: Tenant, pid: str, body: dict[str, Any]
) -> tuple[int, Any, str]:
    url = f"{services.url('scoring')}/v1/patients/{pid}/time-entries"
    async with http.post(url, json=body, headers=tenant.headers) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None, resp.content_type


async def test_time_entries_are_recorded_listed_corrected_and_deleted_with_an_audit_trail(
    services: Services, billing_tenant: Tenant
) -> None:
    pid = f"pt-te-{uuid.uuid4().hex[:6]}"
    scoring = services.url("scoring")
    async with aiohttp.ClientSession() as http:
        await enrol_ny(http, services, billing_tenant, pid)
        started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        status, entry, _ = await post_entry(http, services, billing_tenant, pid, entry_body(started, note=PRIVATE))
        assert status == 201, entry
        assert entry["id"].startswith("te_") and entry["minutes"] == 20 and entry["note"] == PRIVATE
        assert entry["started_at"] == started.isoformat().replace("+00:00", "Z")
        assert entry["ended_at"] == (started + timedelta(minutes=20)).isoformat().replace("+00:00", "Z")
        month = started.astimezone(NY).strftime("%Y-%m")
        base = f"{scoring}/v1/patients/{pid}/time-entries"

        _, listed = await get_json(http, f"{base}?month={month}", billing_tenant.headers)
        assert [e["id"] for e in listed["items"]] == [entry["id"]]
        _, everything = await get_json(http, base, billing_tenant.headers)
        assert [e["id"] for e in everything["items"]] == [entry["id"]]
        _, other_month = await get_json(http, f"{base}?month=2001-01", billing_tenant.headers)
        assert other_month["items"] == []

        url = f"{base}/{entry['id']}"
        async with http.patch(url, json={"by": "coordinator-1", "minutes": 25}, headers=billing_tenant.headers) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["minutes"] == 25
        changed_note = {"by": "coordinator-1", "note": "another private text"}
        async with http.patch(url, json=changed_note, headers=billing_tenant.headers) as r:
            assert r.status == 200, await r.text()
        status, audit = await get_json(http, f"{url}/audit", billing_tenant.headers)
        assert status == 200
        assert [(a["action"], a["actor"], a["fields"]) for a in audit["items"]] == [
            ("created", "pt-therapist-7", ["member_id", "started_at", "minutes", "activity", "interactive", "note"]),
            ("updated", "coordinator-1", ["minutes"]),
            ("updated", "coordinator-1", ["note"]),
        ]
        assert audit["items"][1]["changes"] == {"minutes": {"before": 20, "after": 25}}
        assert audit["items"][2]["changes"] == {}
        assert all(a["key_id"] for a in audit["items"])
        assert "PRIVATE" not in json.dumps(audit) and "another private" not in json.dumps(audit)

        async with http.delete(url, json={"by": "coordinator-1"}, headers=billing_tenant.headers) as r:
            assert r.status == 204, await r.text()
        _, after = await get_json(http, base, billing_tenant.headers)
        assert after["items"] == []
        async with http.patch(url, json={"by": "c", "minutes": 5}, headers=billing_tenant.headers) as r:
            assert r.status == 404
        _, audit = await get_json(http, f"{url}/audit", billing_tenant.headers)
        assert [a["action"] for a in audit["items"]] == ["created", "updated", "updated", "deleted"]
    assert PRIVATE not in services.logs() and "another private text" not in services.logs()


async def test_overlapping_entries_of_one_member_are_409_across_patients(
    services: Services, billing_tenant: Tenant
) -> None:
    a, b = (f"pt-ov-{uuid.uuid4().hex[:6]}" for _ in range(2))
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    async with aiohttp.ClientSession() as http:
        await enrol_ny(http, services, billing_tenant, a)
        await enrol_ny(http, services, billing_tenant, b)
        status, first, _ = await post_entry(http, services, billing_tenant, a, entry_body(t0, 30, member_id="m-ov"))
        assert status == 201, first
        # the same member, another patient, 10 minutes into the first entry
        status, problem, ctype = await post_entry(
            http, services, billing_tenant, b, entry_body(t0 + timedelta(minutes=10), 10, member_id="m-ov")
        )
        assert (status, ctype, problem["type"].rsplit("/", 1)[-1]) == (
            409,
            "application/problem+json",
            "time-entry-overlap",
        )
        # back to back is fine, and so is another member at the same time
        status, second, _ = await post_entry(
            http, services, billing_tenant, b, entry_body(t0 + timedelta(minutes=30), 10, member_id="m-ov")
        )
        assert status == 201, second
        status, _, _ = await post_entry(http, services, billing_tenant, b, entry_body(t0, 30, member_id="m-other"))
        assert status == 201
        # a correction that makes an overlap is refused too
        url = f"{services.url('scoring')}/v1/patients/{b}/time-entries/{second['id']}"
        move = {"by": "m-ov", "minutes": 5, "started_at": first["started_at"]}
        async with http.patch(url, json=move, headers=billing_tenant.headers) as r:
            assert r.status == 409, await r.text()


async def test_invalid_entries_are_refused_and_never_echo_the_note(services: Services, billing_tenant: Tenant) -> None:
    pid = f"pt-bad-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).replace(microsecond=0)
    ok = entry_body(now - timedelta(hours=1), note=PRIVATE)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**ok, "minutes": 0}, 422, "minutes"),
        ({**ok, "minutes": -10}, 422, "minutes"),
        ({**ok, "minutes": 241}, 422, "minutes"),
        ({**ok, "minutes": "20"}, 422, "minutes"),
        ({**ok, "interactive": "yes"}, 422, "interactive"),
        ({**ok, "started_at": (now + timedelta(hours=1)).isoformat()}, 422, "started_at"),
        ({**ok, "started_at": (now - timedelta(minutes=5)).isoformat(), "minutes": 30}, 422, "minutes"),
        ({**ok, "activity": "message", "interactive": True}, 422, "interactive"),
        ({**ok, "started_at": "2026-11-20T08:30:00"}, 422, "started_at"),
        ({**ok, "note": PRIVATE * 100}, 422, "note"),
        ({**ok, "started_at": (now - timedelta(days=100)).isoformat()}, 409, ""),  # a closed month
    ]
    async with aiohttp.ClientSession() as http:
        await enrol_ny(http, services, billing_tenant, pid)
        for body, want, loc in cases:
            status, problem, ctype = await post_entry(http, services, billing_tenant, pid, body)
            assert (status, ctype) == (want, "application/problem+json"), (body, problem)
            assert "PRIVATE" not in json.dumps(problem)
            if want == 422:
                assert loc in {e["loc"][0] for e in problem["errors"]}, problem
            else:
                assert problem["type"].endswith("/month-closed")
        base = f"{services.url('scoring')}/v1/patients/{pid}/time-entries"
        for bad in ("2026-13", "2026-1", "x", "1999-12"):
            status, problem = await get_json(http, f"{base}?month={bad}", billing_tenant.headers)
            assert status == 400, problem
        status, problem = await get_json(http, f"{services.url('scoring')}/v1/billing/report", billing_tenant.headers)
        assert status == 400, problem


async def test_unknown_and_other_tenants_patients_are_404(
    services: Services, billing_tenant: Tenant, other_tenant: Tenant
) -> None:
    pid = f"pt-404-{uuid.uuid4().hex[:6]}"
    scoring = services.url("scoring")
    body = entry_body(datetime.now(UTC) - timedelta(hours=1))
    async with aiohttp.ClientSession() as http:
        await enrol_ny(http, services, billing_tenant, pid)
        status, entry, _ = await post_entry(http, services, billing_tenant, pid, body)
        assert status == 201
        for who, patient in ((other_tenant, pid), (billing_tenant, "pt-nobody")):
            status, _, _ = await post_entry(http, services, who, patient, body)
            assert status == 404
            for path in ("time-entries", "billing", f"time-entries/{entry['id']}/audit"):
                status, problem = await get_json(http, f"{scoring}/v1/patients/{patient}/{path}", who.headers)
                assert status == 404, (path, problem)
            url = f"{scoring}/v1/patients/{patient}/time-entries/{entry['id']}"
            async with http.patch(url, json={"by": "x", "minutes": 5}, headers=who.headers) as r:
                assert r.status == 404
            async with http.delete(url, json={"by": "x"}, headers=who.headers) as r:
                assert r.status == 404
        for bad_id in ("te_unknown", "te_000000000000000000000000"):
            url = f"{scoring}/v1/patients/{pid}/time-entries/{bad_id}"
            async with http.patch(url, json={"by": "x", "minutes": 5}, headers=billing_tenant.headers) as r:
                assert r.status == 404


async def stored(db: asyncpg.Connection, tenant: Tenant, pid: str, n: int) -> bool:
    """Whether scoring has stored (and dated) `n` check-ins of the patient."""
    count = await db.fetchval(
        """SELECT count(*) FROM scoring.checkins
           WHERE tenant_id = $1 AND patient_id = $2 AND local_date IS NOT NULL""",
        tenant.tenant_id,
        pid,
    )
    return bool(count == n)


async def billing_of(http: aiohttp.ClientSession, services: Services, tenant: Tenant, pid: str) -> dict[str, Any]:
    status, body = await get_json(http, f"{services.url('scoring')}/v1/patients/{pid}/billing", tenant.headers)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_billing_counts_local_data_days_versions_late_data_and_reports_as_csv(
    services: Services, billing_tenant: Tenant, db: asyncpg.Connection
) -> None:
    pid = f"pt-bill-{uuid.uuid4().hex[:6]}"
    today = datetime.now(NY).date()
    d0 = today - timedelta(days=40)  # first period d0..d0+29 has closed; the second holds today
    async with aiohttp.ClientSession() as http:
        await enrol_ny(http, services, billing_tenant, pid)
        for i in range(14):
            await checkin(http, services, billing_tenant, pid, local(d0 + timedelta(days=i)))
        # 23:30 in New York is the next day in UTC: the same local day, not a 15th data day
        await checkin(http, services, billing_tenant, pid, local(d0 + timedelta(days=13), 23, 30))
        for offset in (5, 3):
            await checkin(http, services, billing_tenant, pid, local(today - timedelta(days=offset)))
        call = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        status, _, _ = await post_entry(http, services, billing_tenant, pid, entry_body(call, 25))
        assert status == 201

        # Wait until scoring stored them all: the first read after the period closed records its figures.
        await poll(lambda: stored(db, billing_tenant, pid, 17))
        body = await billing_of(http, services, billing_tenant, pid)
        assert [p["data_days"] for p in body["periods"]] == [14, 2]
        assert body["monitoring_started"] == d0.isoformat()
        first, second = body["periods"]
        assert (first["start"], first["end"]) == (d0.isoformat(), (d0 + timedelta(days=29)).isoformat())
        assert (first["closed"], first["supply_code"], first["version"], first["version_reason"]) == (
            True,
            "98985",
            1,
            "initial",
        )
        assert "data_days_possible" not in first
        assert (second["closed"], second["supply_code"], second["data_days"]) == (False, "98985", 2)
        assert 2 < second["data_days_possible"] <= 30
        month = call.astimezone(NY).strftime("%Y-%m")
        assert {"month": month, "minutes": 25, "interactive": True, "management_codes": ["98980"], "closed": False} in (
            body["months"]
        )
        assert body["setup_code_eligible"] is True

        # A check-in of a day in the closed period arrives late: a new version, the first kept.
        await checkin(http, services, billing_tenant, pid, local(d0 + timedelta(days=20)))

        await poll(lambda: stored(db, billing_tenant, pid, 18))
        body = await billing_of(http, services, billing_tenant, pid)
        first = body["periods"][0]
        assert first["version"] == 2
        assert (first["data_days"], first["supply_code"], first["version_reason"]) == (15, "98985", "late_data")
        assert [(v["version"], v["data_days"], v["reason"]) for v in first["previous_versions"]] == [(1, 14, "initial")]
        rows = await db.fetch(
            """SELECT version, cardinality(data_dates) AS n FROM scoring.billing_period_versions
               WHERE tenant_id = $1 AND patient_id = $2 ORDER BY version""",
            billing_tenant.tenant_id,
            pid,
        )
        assert [(r["version"], r["n"]) for r in rows] == [(1, 14), (2, 15)]

        # The report of the month the first period closed in, as JSON and as CSV.
        closing = (d0 + timedelta(days=29)).strftime("%Y-%m")
        url = f"{services.url('scoring')}/v1/billing/report?month={closing}"
        status, report = await get_json(http, url, billing_tenant.headers)
        assert status == 200, report
        (row,) = [r for r in report["items"] if r["patient_id"] == pid]
        assert [(p["start"], p["data_days"], p["supply_code"], p["version"]) for p in row["periods"]] == [
            (d0.isoformat(), 15, "98985", 2)
        ]
        async with http.get(url, headers={**billing_tenant.headers, "Accept": "text/csv"}) as resp:
            assert resp.status == 200 and resp.content_type == "text/csv"
            assert closing in resp.headers["Content-Disposition"]
            table = list(csv.DictReader(io.StringIO(await resp.text())))
        (line,) = [r for r in table if r["patient_id"] == pid]
        assert (
            line["month"],
            line["period_start"],
            line["data_days"],
            line["supply_code"],
            line["period_version"],
        ) == (
            closing,
            d0.isoformat(),
            "15",
            "98985",
            "2",
        )
        assert line["setup_code_eligible"] == "true"

        # Every read is in the access audit: the patient's billing, and the report per patient.
        async def audited() -> bool:
            routes = {
                r["route"]
                for r in await db.fetch(
                    "SELECT route FROM identity.access_log WHERE tenant_id = $1 AND patient_id = $2",
                    billing_tenant.tenant_id,
                    pid,
                )
            }
            return {"/v1/patients/{patient_id}/billing", "/v1/billing/report"} <= routes

        await poll(audited)


async def test_settings_change_what_counts(services: Services, database_url: str) -> None:
    """Wearable days count only under `checkins_and_wearables`; a disabled code is never reported."""
    tenant = await create_tenant(database_url, f"bill-w-{uuid.uuid4().hex[:6]}")
    pid = f"pt-wear-{uuid.uuid4().hex[:6]}"
    scoring = services.url("scoring")
    settings_url = f"{scoring}/v1/admin/billing-settings"
    async with aiohttp.ClientSession() as http:
        status, defaults = await get_json(http, settings_url, tenant.headers)
        assert status == 200
        assert defaults == {
            "data_days_from": "checkins",
            "enabled_codes": ["98975", "98977", "98985", "98979", "98980", "98981"],
            "grace_days": 7,
            "at_risk_lead_days": 2,
            "count_data_before_enrolment": False,
        }
        async with http.put(settings_url, json={"grace_days": "7"}, headers=tenant.headers) as r:
            assert r.status == 422
        await enrol_ny(http, services, tenant, pid)
        now = datetime.now(UTC).replace(microsecond=0)
        await checkin(http, services, tenant, pid, now - timedelta(minutes=30))
        two_days_ago = now - timedelta(days=2)
        sample = {
            "event_id": str(uuid.uuid4()),
            "type": "steps",
            "start": two_days_ago.isoformat(),
            "end": (two_days_ago + timedelta(minutes=10)).isoformat(),
            "value": 900,
        }
        batch = {"patient_id": pid, "device": {"id": "w1", "kind": "wrist"}, "samples": [sample]}
        async with http.post(f"{services.url('ingest')}/v1/activity", json=batch, headers=tenant.headers) as r:
            assert r.status == 202, await r.text()
        wearables = {
            "data_days_from": "checkins_and_wearables",
            "count_data_before_enrolment": True,
            "enabled_codes": ["98977"],
        }
        async with http.put(settings_url, json=wearables, headers=tenant.headers) as r:
            assert r.status == 200, await r.text()

        async def two_days() -> dict[str, Any] | None:
            b = await billing_of(http, services, tenant, pid)
            return b if b["periods"] and b["periods"][0]["data_days"] == 2 else None

        body = await poll(two_days)
        assert body["data_days_from"] == "checkins_and_wearables"
        assert body["monitoring_started"] == two_days_ago.astimezone(NY).date().isoformat()
        # 2 data days would be 98985 and 98975-eligible, but both codes are disabled
        assert body["periods"][0]["supply_code"] is None and body["setup_code_eligible"] is False

        async with http.put(settings_url, json={"count_data_before_enrolment": True}, headers=tenant.headers) as r:
            assert r.status == 200, await r.text()
        body = await billing_of(http, services, tenant, pid)
        assert body["data_days_from"] == "checkins"
        assert [p["data_days"] for p in body["periods"]] == [1]
        assert body["monitoring_started"] == (now - timedelta(minutes=30)).astimezone(NY).date().isoformat()


async def test_settings_need_admin_and_metrics_have_no_patient_labels(
    services: Services, care_only_tenant: Tenant, billing_tenant: Tenant
) -> None:
    scoring = services.url("scoring")
    async with aiohttp.ClientSession() as http:
        status, _ = await get_json(http, f"{scoring}/v1/admin/billing-settings", care_only_tenant.headers)
        assert status == 403
        async with http.get(f"{scoring}/metrics") as resp:
            text = await resp.text()
    lines = [line for line in text.splitlines() if line.startswith("nervewatch_billing_")]
    assert any(line.startswith('nervewatch_billing_time_entries_total{action="created"}') for line in lines)
    assert not any("pt-" in line for line in lines)
