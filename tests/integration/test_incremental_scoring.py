"""The scoring shell's incremental engine against the whole-series oracle, through ingest and the broker.

A series posted in order, and the same series posted in batches with 10% of its days arriving
1-14 days late in random order, end with the trajectory and signals of `engine.score` over the
sorted series; a stored engine state of another engine version (or an unreadable one) is re-folded
from the stored series on the patient's next batch.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from schemas.patients import Patient
from services.scoring import engine, series
from services.scoring.codec import day_from_json, profile_from_patient
from services.scoring.profile import ENGINE_VERSION
from services.scoring.state import STATE_SCHEMA_VERSION
from tests.support import Services, Tenant, enrol, get_json, poll

pytestmark = pytest.mark.integration

DAYS = 50


def series_items(pid: str, start: datetime, seed: int) -> list[dict[str, Any]]:
    """One check-in a day: improving, a PT flare, a relapse with spreading numbness, a red flag."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for k in range(DAYS):
        at = start + timedelta(days=k, hours=rng.randint(7, 20), minutes=rng.randint(0, 59))
        level = 7 - k * 0.08 if k < 30 else 4.5 + (k - 30) * 0.15
        item: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "patient_id": pid,
            "recorded_at": at.isoformat(),
            "pain": {"current": max(0, min(10, round(level + rng.uniform(-1, 1))))},
            "tingling": max(0, min(10, round(level - 1 + rng.uniform(-1, 1)))),
            "numbness": max(0, min(10, round(level - 2 + rng.uniform(-1, 1)))),
        }
        if k % 9 == 4:
            item["pt_session"] = {"ended_at": (at - timedelta(hours=3)).isoformat(), "intensity": "vigorous"}
        if k >= 40:
            item["numbness_spreading"] = k % 3 == 0
        if k == 25:
            item["red_flags"] = ["foot_drop"]
        out.append(item)
    return out


async def post_batch(
    http: aiohttp.ClientSession, services: Services, tenant: Tenant, items: list[dict[str, Any]]
) -> None:
    async with http.post(
        f"{services.url('ingest')}/v1/checkins/batch", json={"items": items}, headers=tenant.headers
    ) as resp:
        assert resp.status in (200, 202, 207), await resp.text()


async def stored(db: asyncpg.Connection, tenant: Tenant, pid: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM scoring.checkins WHERE tenant_id = $1 AND patient_id = $2", tenant.tenant_id, pid
        )
    )


async def wait_stored(db: asyncpg.Connection, tenant: Tenant, pid: str, n: int) -> None:
    async def done() -> bool:
        return await stored(db, tenant, pid) >= n

    await poll(done, timeout_s=60)


async def oracle(db: asyncpg.Connection, tenant: Tenant, pid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The trajectory (JSON, with days) and signals of one fold from scratch over the stored series."""
    profile = await db.fetchval(
        "SELECT profile FROM scoring.patients WHERE tenant_id = $1 AND patient_id = $2", tenant.tenant_id, pid
    )
    patient = Patient.model_validate(json.loads(profile))
    rows = await db.fetch(
        "SELECT data FROM scoring.daily WHERE tenant_id = $1 AND patient_id = $2 ORDER BY day", tenant.tenant_id, pid
    )
    days = [day_from_json(json.loads(r["data"])) for r in rows]
    as_of = await db.fetchval(
        "SELECT max(recorded_at) FROM scoring.checkins WHERE tenant_id = $1 AND patient_id = $2", tenant.tenant_id, pid
    )
    a = engine.score(profile_from_patient(patient), days, as_of)
    return series.to_trajectory(pid, a, days).model_dump(mode="json"), [s.model_dump(mode="json") for s in a.signals]


async def stored_trajectory(
    db: asyncpg.Connection, tenant: Tenant, pid: str
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None, str | None]:
    row = await db.fetchrow(
        """SELECT data, signals, engine_version, profile_version FROM scoring.trajectories
           WHERE tenant_id = $1 AND patient_id = $2""",
        tenant.tenant_id,
        pid,
    )
    assert row is not None
    return json.loads(row["data"]), json.loads(row["signals"]), row["engine_version"], row["profile_version"]


async def rescores(http: aiohttp.ClientSession, services: Services) -> dict[str, float]:
    """The scoring service's re-scoring counters by path (forward, rewind, refold)."""
    async with http.get(f"{services.url('scoring')}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("nervewatch_scoring_rescores_total{"):
            label, value = line.split("} ")
            out[label.split('path="')[1].rstrip('"')] = float(value)
    return out


def without_ids(signals: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(s["code"], s["since"], s["event_time"], tuple(s["flags"])) for s in signals]


async def test_in_order_and_late_batches_equal_one_fold(
    services: Services, tenant: Tenant, db: asyncpg.Connection
) -> None:
    start = (datetime.now(UTC) - timedelta(days=DAYS + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    suffix = uuid.uuid4().hex[:6]
    in_order, late = f"pt-inc-a-{suffix}", f"pt-inc-b-{suffix}"
    rng = random.Random(7)
    async with aiohttp.ClientSession() as http:
        for pid in (in_order, late):
            await enrol(http, services.url("ingest"), tenant, pid, [])
        items_a = series_items(in_order, start, seed=11)
        items_b = series_items(late, start, seed=11)
        # In order: one day per request, each stored before the next is posted.
        for i, item in enumerate(items_a):
            await post_batch(http, services, tenant, [item])
            if i % 5 == 4:
                await wait_stored(db, tenant, in_order, i + 1)
        # Late: 10% of the days held back and posted 1-14 days of the series later, in random order;
        # the rest in batches of 1-7 days.
        held = set(rng.sample(range(5, DAYS - 1), DAYS // 10))
        due: dict[int, list[int]] = {}
        for k in held:
            due.setdefault(min(DAYS - 1, k + rng.randint(1, 14)), []).append(k)
        k, posted = 0, 0
        before = await rescores(http, services)
        while k < DAYS:
            size = rng.randint(1, 7)
            batch = [i for i in range(k, min(DAYS, k + size)) if i not in held]
            for j in range(k, min(DAYS, k + size)):
                batch.extend(due.get(j, []))
            rng.shuffle(batch)
            if batch:
                await post_batch(http, services, tenant, [items_b[i] for i in batch])
                posted += len(batch)
                await wait_stored(db, tenant, late, posted)
            k += size
        assert posted == DAYS
        after = await rescores(http, services)
        assert after.get("rewind", 0) > before.get("rewind", 0)  # the late days were replayed from snapshots
        await wait_stored(db, tenant, in_order, DAYS)

        for pid in (in_order, late):
            want, want_signals = await oracle(db, tenant, pid)
            got, got_signals, engine_version, profile_version = await stored_trajectory(db, tenant, pid)
            assert got == want
            assert got_signals == want_signals
            assert (engine_version, profile_version) == (ENGINE_VERSION, want["profile_version"])
            assert want["engine_version"] == ENGINE_VERSION and want["profile_version"]
            status, api = await get_json(
                http, f"{services.url('scoring')}/v1/patients/{pid}/trajectory", tenant.headers
            )
            assert status == 200
            assert (api["engine_version"], api["profile_version"]) == (engine_version, profile_version)

        a, a_signals, *_ = await stored_trajectory(db, tenant, in_order)
        b, b_signals, *_ = await stored_trajectory(db, tenant, late)
        assert {**a, "patient_id": ""} == {**b, "patient_id": ""}
        assert without_ids(a_signals) == without_ids(b_signals)
        state = await db.fetchrow(
            """SELECT last_date, engine_version, snapshots, snapshot_dates FROM scoring.engine_states
               WHERE tenant_id = $1 AND patient_id = $2""",
            tenant.tenant_id,
            late,
        )
        assert state is not None and state["engine_version"] == ENGINE_VERSION
        assert state["last_date"] == datetime.fromisoformat(items_b[-1]["recorded_at"]).date()
        assert 1 <= len(state["snapshots"]) == len(state["snapshot_dates"]) <= 7


@pytest.mark.parametrize("damage", ["engine_version", "schema_version"])
async def test_state_of_another_engine_version_is_refolded(
    services: Services, tenant: Tenant, db: asyncpg.Connection, damage: str
) -> None:
    start = (datetime.now(UTC) - timedelta(days=DAYS + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    pid = f"pt-inc-v-{uuid.uuid4().hex[:6]}"
    items = series_items(pid, start, seed=5)
    async with aiohttp.ClientSession() as http:
        await enrol(http, services.url("ingest"), tenant, pid, [])
        await post_batch(http, services, tenant, items[:-1])
        await wait_stored(db, tenant, pid, DAYS - 1)
        # A state written by another engine (its counters deliberately wrong) or unreadable.
        if damage == "engine_version":
            sql = """UPDATE scoring.engine_states
                     SET engine_version = 'engine-0', snapshots = '{}', snapshot_dates = '{}', snapshot_checkins = '{}',
                         state = jsonb_set(jsonb_set(state, '{engine_version}', '"engine-0"'), '{symptoms,n}', '1')
                     WHERE tenant_id = $1 AND patient_id = $2"""
        else:
            sql = """UPDATE scoring.engine_states SET state = jsonb_set(state, '{schema_version}', '99')
                     WHERE tenant_id = $1 AND patient_id = $2"""
        assert await db.execute(sql, tenant.tenant_id, pid) == "UPDATE 1"
        await post_batch(http, services, tenant, items[-1:])
        await wait_stored(db, tenant, pid, DAYS)
    want, want_signals = await oracle(db, tenant, pid)
    got, got_signals, engine_version, _ = await stored_trajectory(db, tenant, pid)
    assert got == want and got_signals == want_signals and engine_version == ENGINE_VERSION
    row = await db.fetchrow(
        "SELECT engine_version, state FROM scoring.engine_states WHERE tenant_id = $1 AND patient_id = $2",
        tenant.tenant_id,
        pid,
    )
    assert row is not None and row["engine_version"] == ENGINE_VERSION
    state = json.loads(row["state"])
    assert state["engine_version"] == ENGINE_VERSION and state["schema_version"] == STATE_SCHEMA_VERSION
    assert state["symptoms"]["n"] == DAYS
