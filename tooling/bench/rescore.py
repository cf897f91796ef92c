"""Bench phase: `nervewatch rescore` throughput over stored observations (one stored day = one observation).

`measure` seeds `scoring.patients` and `scoring.daily` of a private tenant with COPY (synthetic
series: noisy improving, flat and worsening courses with activity), then times a dry run (read +
replay + diff) and a real run (the same plus writing trajectories and retrospective events) of
`tooling.rescore.run`. The seeded tenant has no members, so the real run's events page nobody.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from nervewatch.db import create_pool
from services.scoring.codec import day_to_json
from services.scoring.model import DayRecord
from tooling import rescore

TENANT = "bench-rescore"
_CONDITIONS = ("carpal_tunnel", "lumbar_radiculopathy", "cubital_tunnel", "cervical_radiculopathy")


@dataclass(frozen=True, slots=True)
class Figures:
    observations: int
    patients: int
    seed_s: float
    dry_s: float
    real_s: float
    events: int
    changed: int
    dry_cpu_s: float = float("nan")  # CPU time of this process (replay, decoding; not PostgreSQL's)
    real_cpu_s: float = float("nan")

    @property
    def dry_rate(self) -> float:
        return self.observations / self.dry_s if self.dry_s > 0 else float("nan")

    @property
    def real_rate(self) -> float:
        return self.observations / self.real_s if self.real_s > 0 else float("nan")


def _series(rng: random.Random, pid: str, n: int, end: date) -> list[DayRecord]:
    start_pain = rng.uniform(4, 8)
    slope = rng.choice((-0.04, -0.01, 0.0, 0.01))
    out: list[DayRecord] = []
    for i in range(n):
        d = end - timedelta(days=n - 1 - i)
        at = datetime(d.year, d.month, d.day, 9, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 600))
        pain = min(10.0, max(0.0, round(start_pain + slope * i + rng.gauss(0, 0.8))))
        out.append(
            DayRecord(
                date=d,
                checkins=1,
                pain=pain,
                tingling=min(10.0, max(0.0, round(pain * 0.7 + rng.gauss(0, 0.7)))),
                numbness=min(10.0, max(0.0, round(pain * 0.6 + rng.gauss(0, 0.7)))),
                weakness=min(10.0, max(0.0, round(pain * 0.3 + rng.gauss(0, 0.5)))),
                steps=max(0, int(rng.gauss(6000, 1500))),
                last_event_id=f"{pid}-{i}",
                last_recorded_at=at,
                last_received_at=at + timedelta(minutes=1),
            )
        )
    return out


async def seed(conn: asyncpg.Connection, patients: int, days_per_patient: int, seed_value: int = 1) -> int:
    """Replace the bench tenant's stored patients, series and trajectories; returns the observations."""
    rng = random.Random(seed_value)
    end = datetime.now(UTC).date()
    now = datetime.now(UTC)
    for table in ("daily", "trajectories", "patients"):
        await conn.execute(f"DELETE FROM scoring.{table} WHERE tenant_id = $1", TENANT)
    prows: list[tuple[object, ...]] = []
    drows: list[tuple[object, ...]] = []
    for i in range(patients):
        pid = f"rs-{i:06d}"
        profile = {
            "patient_id": pid,
            "condition": _CONDITIONS[i % len(_CONDITIONS)],
            "side": "left",
            "treatment": "conservative",
            "timezone": "UTC",
            "care_team": [],
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
        }
        prows.append((TENANT, pid, json.dumps(profile), "UTC", now))
        drows.extend(
            (TENANT, pid, d.date, json.dumps(day_to_json(d)), now) for d in _series(rng, pid, days_per_patient, end)
        )
    await conn.copy_records_to_table(
        "patients", schema_name="scoring", records=prows,
        columns=["tenant_id", "patient_id", "profile", "timezone", "updated_at"],
    )  # fmt: skip
    for i in range(0, len(drows), 50_000):
        await conn.copy_records_to_table(
            "daily", schema_name="scoring", records=drows[i : i + 50_000],
            columns=["tenant_id", "patient_id", "day", "data", "updated_at"],
        )  # fmt: skip
    await conn.execute("ANALYZE scoring.daily")
    return len(drows)


async def measure(dsn: str, patients: int, days_per_patient: int) -> Figures:
    """Seed, then time a dry and a real run over the bench tenant (blocks for their duration)."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        n = await seed(conn, patients, days_per_patient)
    finally:
        await conn.close()
    seed_s = time.perf_counter() - started
    pool = await create_pool(dsn, 2, 3)
    try:
        cpu = time.process_time()
        dry = await rescore.run(pool, TENANT, dry_run=True, run_by="bench")
        dry_cpu, cpu = time.process_time() - cpu, time.process_time()
        real = await rescore.run(pool, TENANT, dry_run=False, run_by="bench")
        real_cpu = time.process_time() - cpu
    finally:
        await pool.close()
    return Figures(
        n, patients, seed_s, dry.seconds, real.seconds, real.summary.events, real.summary.changed, dry_cpu, real_cpu
    )
