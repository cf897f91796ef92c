"""Retrospective re-scoring of a tenant's stored series (`nervewatch rescore`): replay and storage.

The pure part (`replay`, `series_as_of`, `rescore_event`) re-scores one patient: a fold from
`Engine.initial()` over every stored day up to the local date of `as_of` (see
`engine.score`), with the tenant's profile. The async functions read `scoring.patients`,
`scoring.trajectories` and `scoring.daily` in pages, and write a page of new trajectories with
their `TrajectoryUpdated` events (marked `rescore_run`) in the caller's transaction; the events
go through `scoring.outbox`, published by the scoring service's outbox relay (in order with live
updates). Nothing here commits on its own or logs patient ids.

Concurrency with live scoring: a rescored trajectory only replaces a stored one whose `as_of`
is not newer (a live update computed from newer data wins). Live scoring of a patient after a
run uses the tenant's current profile again, so a run is only meaningful with the current profile
(the CLI refuses to write with a `--profile` file).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from schemas.events import Topics, TrajectoryUpdated, event_key
from schemas.patients import Patient
from schemas.trajectory import Signal, Trajectory, TrajectoryState
from services.scoring import engine, series
from services.scoring.codec import day_from_json, profile_from_patient
from services.scoring.model import Assessment, DayRecord
from services.scoring.profile import ENGINE_VERSION, ClinicalProfile, ProfileOverride, profile_for

PAGE = 200
#: Statement timeout of the page reads (an offline batch job: a busy machine may be slow to consume
#: a page; the pool's 30 s default is for request paths).
READ_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Stored:
    """A patient as stored: enrolment, current trajectory (state, signals, as_of) if any, and days."""

    patient_id: str
    patient: Patient
    state: TrajectoryState | None
    signals: tuple[Signal, ...]
    as_of: datetime | None
    days: tuple[DayRecord, ...]


@dataclass(frozen=True, slots=True)
class Rescored:
    """One patient re-scored: the stored and the new trajectory."""

    stored: Stored
    assessment: Assessment
    trajectory: Trajectory
    clinical: ClinicalProfile

    @property
    def changed(self) -> bool:
        """Whether state or signals differ from the stored trajectory (what publishes an event)."""
        return self.stored.state != self.assessment.state or _sig_keys(self.stored.signals) != _sig_keys(
            self.assessment.signals
        )


def _sig_keys(signals: Sequence[Signal]) -> list[tuple[str, date | None, str | None]]:
    return sorted((s.code.value, s.since, s.event_id) for s in signals)


def series_as_of(days: Sequence[DayRecord]) -> datetime | None:
    """The newest event time of a stored series (what live scoring assesses as of)."""
    times = [
        t
        for d in days
        for t in (d.last_recorded_at, d.last_sample_end, *(o.recorded_at for o in d.red_flag_obs))
        if t is not None
    ]
    return max(times, default=None)


def replay(p: Stored, override: ProfileOverride | None) -> Rescored | None:
    """Re-score one stored patient under `override` (None: default profiles); None without data."""
    as_of = series_as_of(p.days) or p.as_of
    if as_of is None:
        return None
    profile = profile_from_patient(p.patient)
    clinical = profile_for(profile.condition, profile.treatment, override)
    a = engine.score(profile, p.days, as_of, clinical)
    return Rescored(p, a, series.to_trajectory(p.patient_id, a, list(p.days)), clinical)


def rescore_event(tenant_id: str, r: Rescored, run_id: str, now: datetime) -> TrajectoryUpdated:
    """The retrospective update alerts receives for a changed patient."""
    a = r.assessment
    return TrajectoryUpdated(
        tenant_id=tenant_id,
        event_id=uuid.uuid4(),
        trajectory=r.trajectory.model_copy(update={"days": []}),
        previous_state=r.stored.state,
        state_changed=r.stored.state != a.state,
        signals=list(a.signals),
        trigger=None,
        last_checkin_at=series.last_checkin(r.stored.days),
        computed_at=now,
        rescore_run=run_id,
    )


# --- storage ----------------------------------------------------------------------------------


def _jsonv(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def pages(
    conn: asyncpg.Connection, tenant_id: str, since: date | None, page: int = PAGE
) -> AsyncIterator[list[Stored]]:
    """The tenant's enrolled patients with their stored trajectory and days, `page` at a time, by id.

    `since`: only patients with a stored day on or after it (their whole series is replayed).
    Two queries per page (keyset on patient id); reads only."""
    after = ""
    while True:
        rows = await conn.fetch(
            """SELECT p.patient_id, p.profile, t.state, t.signals, t.as_of FROM scoring.patients p
               LEFT JOIN scoring.trajectories t ON t.tenant_id = p.tenant_id AND t.patient_id = p.patient_id
               WHERE p.tenant_id = $1 AND p.profile IS NOT NULL AND p.patient_id > $2
                 AND ($3::date IS NULL OR EXISTS (SELECT 1 FROM scoring.daily d WHERE d.tenant_id = p.tenant_id
                      AND d.patient_id = p.patient_id AND d.day >= $3))
               ORDER BY p.patient_id LIMIT $4""",
            tenant_id,
            after,
            since,
            page,
            timeout=READ_TIMEOUT_S,
        )
        if not rows:
            return
        ids = [r["patient_id"] for r in rows]
        days: dict[str, list[DayRecord]] = {pid: [] for pid in ids}
        for d in await conn.fetch(
            """SELECT patient_id, data FROM scoring.daily WHERE tenant_id = $1 AND patient_id = ANY($2::text[])
               ORDER BY patient_id, day""",
            tenant_id,
            ids,
            timeout=READ_TIMEOUT_S,
        ):
            days[d["patient_id"]].append(day_from_json(_jsonv(d["data"])))
        yield [
            Stored(
                patient_id=r["patient_id"],
                patient=Patient.model_validate(_jsonv(r["profile"])),
                state=TrajectoryState(r["state"]) if r["state"] else None,
                signals=tuple(Signal.model_validate(s) for s in (_jsonv(r["signals"]) or [])),
                as_of=r["as_of"],
                days=tuple(days[r["patient_id"]]),
            )
            for r in rows
        ]
        after = ids[-1]


async def write(
    conn: asyncpg.Connection, tenant_id: str, run_id: str, rescored: Sequence[Rescored], now: datetime
) -> int:
    """Store the new trajectories (engine and profile version, run id) and queue one retrospective
    `TrajectoryUpdated` per changed patient in `scoring.outbox`, in the caller's transaction.
    A stored trajectory with a newer `as_of` (live scoring got there with newer data) is kept.
    Returns the number of events queued."""
    if not rescored:
        return 0
    written = {
        r["patient_id"]
        for r in await conn.fetch(
            """INSERT INTO scoring.trajectories AS t (tenant_id, patient_id, state, as_of, data, signals,
                      last_checkin_at, updated_at, engine_version, profile_version, rescore_run)
               SELECT $1, pid, st, ao, d::jsonb, s::jsonb, lc, now(), $2, pv, $3
               FROM unnest($4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::timestamptz[],
                           $10::text[]) AS u(pid, st, ao, d, s, lc, pv)
               ON CONFLICT (tenant_id, patient_id) DO UPDATE SET state = EXCLUDED.state, as_of = EXCLUDED.as_of,
                 data = EXCLUDED.data, signals = EXCLUDED.signals, last_checkin_at = EXCLUDED.last_checkin_at,
                 updated_at = now(), engine_version = EXCLUDED.engine_version,
                 profile_version = EXCLUDED.profile_version, rescore_run = EXCLUDED.rescore_run
               WHERE t.as_of <= EXCLUDED.as_of
               RETURNING patient_id""",
            tenant_id,
            ENGINE_VERSION,
            run_id,
            [r.stored.patient_id for r in rescored],
            [r.assessment.state.value for r in rescored],
            [r.assessment.as_of for r in rescored],
            [r.trajectory.model_dump_json() for r in rescored],
            [json.dumps([s.model_dump(mode="json") for s in r.assessment.signals]) for r in rescored],
            [series.last_checkin(r.stored.days) for r in rescored],
            [r.assessment.profile_version for r in rescored],
        )
    }
    events = [
        (
            Topics.trajectories,
            event_key(tenant_id, r.stored.patient_id),
            rescore_event(tenant_id, r, run_id, now).model_dump_json().encode(),
        )
        for r in rescored
        if r.changed and r.stored.patient_id in written
    ]
    if events:
        topics, keys, values = zip(*events, strict=True)
        await conn.execute(
            "INSERT INTO scoring.outbox (topic, key, value) SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[])",
            list(topics),
            list(keys),
            list(values),
        )
    return len(events)


async def start_run(
    conn: asyncpg.Connection,
    run_id: str,
    tenant_id: str,
    since: date | None,
    profile_source: str,
    profile_version: str,
    dry_run: bool,
    run_by: str,
    now: datetime,
) -> None:
    """Record the start of a run (committed by the caller before any trajectory is written)."""
    await conn.execute(
        """INSERT INTO scoring.rescore_runs (id, tenant_id, since, profile_source, profile_version, engine_version,
                                             dry_run, started_at, run_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        run_id,
        tenant_id,
        since,
        profile_source,
        profile_version,
        ENGINE_VERSION,
        dry_run,
        now,
        run_by,
    )


async def finish_run(conn: asyncpg.Connection, run_id: str, counts: dict[str, Any], now: datetime) -> None:
    await conn.execute(
        "UPDATE scoring.rescore_runs SET finished_at = $2, counts = $3::text::jsonb WHERE id = $1",
        run_id,
        now,
        json.dumps(counts, sort_keys=True),
    )
