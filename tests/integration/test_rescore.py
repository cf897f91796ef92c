"""Tenant clinical profiles (scoring admin API) and `nervewatch rescore` through the real services.

A patient flat at moderate symptoms for 22 days is `plateau` without a plateau signal under the
default lumbar profile (review after 84 days); a tenant profile reviewing after 14 days raises it.
The dry run (with the profile as a file) reports that one plateau alert would open and writes
nothing; after the profile is stored, the real run writes the trajectory and alerts records the
plateau alert as retrospective, naming the run in its audit, with no notification queued (H18).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support import Services, Tenant, create_tenant, get_json, poll, run_cli, webhook_receiver

pytestmark = pytest.mark.integration

PAIR = "lumbar_radiculopathy/conservative"
OVERRIDE = {"review_after_days": 14, "plateau_days": 14}


async def put_profile(
    http: aiohttp.ClientSession, scoring: str, t: Tenant, body: Any, pair: str = PAIR
) -> tuple[int, Any]:
    async with http.put(f"{scoring}/v1/admin/clinical-profiles/{pair}", json=body, headers=t.headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_profile_admin_validation_versions_and_isolation(services: Services, database_url: str) -> None:
    a = await create_tenant(database_url, f"prof-a-{uuid.uuid4().hex[:6]}")
    b = await create_tenant(database_url, f"prof-b-{uuid.uuid4().hex[:6]}")
    care = await create_tenant(database_url, f"prof-c-{uuid.uuid4().hex[:6]}", frozenset({"care"}))
    scoring = services.url("scoring")
    base = f"{scoring}/v1/admin/clinical-profiles"
    async with aiohttp.ClientSession() as http:
        status, default = await get_json(http, f"{base}/{PAIR}", a.headers)
        assert status == 200 and default["version"] == 0 and default["override"] == {}
        for bad in (
            {"plateau_days": -1},
            {"plateau_days": "21"},
            {"activity_decline_pct": 250},
            {"private note about the patient": 1},
            {"index_mcid_min": 30, "index_mcid_max": 20},
            [1, 2],
        ):
            status, problem = await put_profile(http, scoring, a, bad)
            assert status == 422, (bad, problem)
            assert problem["errors"] and "private note" not in json.dumps(problem)
        assert (await put_profile(http, scoring, a, {}, "no_such/conservative"))[0] == 404
        assert (await put_profile(http, scoring, care, OVERRIDE))[0] == 403

        status, v1 = await put_profile(http, scoring, a, OVERRIDE)
        assert status == 201 and v1["version"] == 1 and v1["override"] == OVERRIDE and v1["created_by"]
        status, v2 = await put_profile(http, scoring, a, {"plateau_days": 28})
        assert status == 201 and v2["version"] == 2 and v2["profile_version"] != v1["profile_version"]
        status, eff = await get_json(http, f"{base}/{PAIR}", a.headers)
        assert (
            eff["version"] == 2
            and eff["profile"]["plateau_days"] == 28
            and eff["profile_version"] != default["profile_version"]
        )
        assert eff["profile_version"] == v2["profile_version"]
        _, hist = await get_json(http, f"{base}/{PAIR}/versions", a.headers)
        assert [v["version"] for v in hist["items"]] == [2, 1]
        _, current = await get_json(http, base, a.headers)
        assert [(v["condition"], v["treatment"], v["version"]) for v in current["items"]] == [
            ("lumbar_radiculopathy", "conservative", 2)
        ]
        # Tenant isolation: b sees none of it.
        _, other = await get_json(http, base, b.headers)
        assert other["items"] == []
        _, other_eff = await get_json(http, f"{base}/{PAIR}", b.headers)
        assert other_eff["version"] == 0 and other_eff["profile_version"] == default["profile_version"]
        _, other_hist = await get_json(http, f"{base}/{PAIR}/versions", b.headers)
        assert other_hist["items"] == []


async def _post_series(http: aiohttp.ClientSession, ingest: str, t: Tenant, pid: str, n: int) -> None:
    now = datetime.now(UTC)
    items = [
        {
            "event_id": str(uuid.uuid4()),
            "patient_id": pid,
            "recorded_at": (now - timedelta(days=n - 1 - i, minutes=5)).isoformat(),
            "pain": {"current": 5},
            "tingling": 4,
            "numbness": 4,
            "weakness": 2,
        }
        for i in range(n)
    ]
    async with http.post(f"{ingest}/v1/checkins/batch", json={"items": items}, headers=t.headers) as resp:
        assert resp.status in (200, 202, 207), await resp.text()


async def test_rescore_dry_run_then_real_run_pages_nobody(
    services: Services, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    t = await create_tenant(database_url, f"rescore-{uuid.uuid4().hex[:6]}")
    pid = f"pt-rs-{uuid.uuid4().hex[:6]}"
    async with webhook_receiver() as rx, aiohttp.ClientSession() as http:
        body = {
            "patient_id": pid,
            "condition": "lumbar_radiculopathy",
            "treatment": "conservative",
            "timezone": "UTC",
            "care_team": [{"member_id": "physio", "role": "physical_therapist", "min_severity": "low",
                           "notify": {"webhook_url": rx.url}}],
        }  # fmt: skip
        async with http.post(f"{services.url('ingest')}/v1/patients", json=body, headers=t.headers) as resp:
            assert resp.status in (200, 201), await resp.text()
        await _post_series(http, services.url("ingest"), t, pid, 22)

        async def scored() -> Any:
            row = await db.fetchrow(
                "SELECT state, signals, data, updated_at FROM scoring.trajectories WHERE tenant_id = $1 AND "
                "patient_id = $2",
                t.tenant_id,
                pid,
            )
            return row if row is not None and len(json.loads(row["data"])["days"]) == 22 else None

        before = await poll(scored, timeout_s=60)
        assert before["state"] == "plateau" and json.loads(before["signals"]) == []
        profile = tmp_path / "profile.json"
        profile.write_text(json.dumps({PAIR: OVERRIDE}))

        # Dry run with the candidate profile: reports the plateau alert, writes nothing.
        code, out, err = await run_cli(
            database_url, "rescore", "--tenant", t.tenant_id, "--profile", str(profile), "--dry-run", "--json"
        )
        assert code == 0, err
        dry = json.loads(out)
        assert dry["dry_run"] and dry["patients"] == 1 and dry["changed_patients"] == 1
        assert dry["alerts_open"] == [{"kind": "plateau", "severity": "medium", "count": 1}]
        assert dry["alerts_close"] == [] and dry["transitions"] == [] and dry["events"] == 0
        assert pid not in out and pid not in err
        after_dry = await scored()
        assert after_dry["updated_at"] == before["updated_at"] and after_dry["signals"] == before["signals"]
        assert (
            await db.fetchval("SELECT count(*) FROM scoring.outbox WHERE key = $1", f"{t.tenant_id}:{pid}".encode())
            == 0
        )
        # Text report, defaults.
        code, out, err = await run_cli(database_url, "rescore", "--tenant", t.tenant_id, "--dry-run")
        assert code == 0 and "0 would change" in out and "nothing written" in out, (out, err)

        # A real run with a file is refused; the tenant stores the profile, then the real run writes.
        code, out, err = await run_cli(database_url, "rescore", "--tenant", t.tenant_id, "--profile", str(profile))
        assert code == 1 and out == "" and "dry runs only" in err
        status, stored = await put_profile(http, services.url("scoring"), t, OVERRIDE)
        assert status == 201
        code, out, err = await run_cli(database_url, "rescore", "--tenant", t.tenant_id, "--json")
        assert code == 0, err
        real = json.loads(out)
        assert not real["dry_run"] and real["events"] == 1 and real["profile_source"] == "tenant-current"
        assert real["alerts_open"] == [{"kind": "plateau", "severity": "medium", "count": 1}]
        row = await db.fetchrow(
            "SELECT signals, profile_version, engine_version, rescore_run FROM scoring.trajectories "
            "WHERE tenant_id = $1 AND patient_id = $2",
            t.tenant_id,
            pid,
        )
        assert [s["code"] for s in json.loads(row["signals"])] == ["plateau"]
        assert row["rescore_run"] == real["run_id"] and row["engine_version"]
        assert row["profile_version"] == stored["profile_version"]

        async def plateau_alert() -> Any:
            r = await db.fetchrow(
                "SELECT id, retrospective FROM alerts.alerts "
                "WHERE tenant_id = $1 AND patient_id = $2 AND kind = 'plateau'",
                t.tenant_id,
                pid,
            )
            return r

        alert = await poll(plateau_alert, timeout_s=30)
        assert alert["retrospective"] is True
        audit = await db.fetch("SELECT action, detail FROM alerts.audit WHERE alert_id = $1 ORDER BY id", alert["id"])
        assert any(
            a["action"] == "rescored" and json.loads(a["detail"])["rescore_run"] == real["run_id"] for a in audit
        )
        assert await db.fetchval("SELECT count(*) FROM alerts.notifications WHERE alert_id = $1", alert["id"]) == 0
        await asyncio.sleep(1.0)  # the dispatcher polls every 0.2 s: give a wrong page the chance to go out
        assert rx.requests == []
        _, listed = await get_json(http, f"{services.url('alerts')}/v1/alerts?patient_id={pid}", t.headers)
        assert [(a["kind"], a["retrospective"]) for a in listed["items"]] == [("plateau", True)]

        runs = await db.fetch(
            "SELECT id, dry_run, finished_at, counts, profile_source, run_by FROM scoring.rescore_runs "
            "WHERE tenant_id = $1 ORDER BY started_at",
            t.tenant_id,
        )
        assert [r["dry_run"] for r in runs] == [True, True, False]
        assert all(r["finished_at"] is not None and r["run_by"] for r in runs)
        assert runs[-1]["id"] == real["run_id"] and json.loads(runs[-1]["counts"])["events"] == 1
