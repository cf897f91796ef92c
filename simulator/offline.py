"""Offline replay of the whole decision pipeline: no Kafka, no PostgreSQL, no HTTP.

For each synthetic patient this does, in memory and in event time, what the live stack does when
the patient's data arrives day by day:

1. every check-in payload is validated against the contract model and turned into a `CheckinObs`
   exactly as the scoring shell does (`codec.checkin_obs` on the stored JSON); every wearable
   sample likewise into an `ActivityObs` (`codec.activity_obs`);
2. observations are assigned to the patient's local days (`daily.local_day`, `daily.activity_day`);
3. walking the local days in order, each day is aggregated (`daily.aggregate_day`), stepped into
   the patient's incremental engine state (`engine.Engine.step`) and assessed as of the newest
   event time of that day (`engine.Engine.assess`);
4. the assessment becomes a `TrajectoryUpdated` whose trigger is the day's newest check-in with
   `received_at = recorded_at` (live data, never retrospective), and the pure alert rules
   (`services.alerts.rules.evaluate`) decide against the simulated alert state, with the
   decisions applied as `services.alerts.apply` does; the disengagement timer
   (`services.alerts.timers.disengagement`) is swept at every step, as the alerts sweeper would;
5. the resulting `schemas.alerts.Alert` objects go through `simulator.evaluate`, which prints
   the same report as `nervewatch simulate --evaluate`.

Pure and deterministic: no wall clock (the default end of the histories is a fixed instant), no
randomness beyond the seeded cohort, deterministic alert and event ids.

Usage: `python -m simulator.offline --per-archetype 50 --seed 7 [--archetypes regression,plateau]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from schemas.activity import ActivitySample
from schemas.alerts import Alert, AlertKind, AlertStatus, Resolution
from schemas.checkins import CheckIn
from schemas.events import TrajectoryUpdated
from schemas.patients import Patient
from schemas.trajectory import TrajectoryState
from services.alerts import rules, timers
from services.alerts.model import AlertPolicy, AlertState, OpenAlert, ResolveAlert, Suppressed, UpdateAlert
from services.scoring import daily, engine, series
from services.scoring.codec import activity_obs, checkin_obs, profile_from_patient
from services.scoring.model import ActivityObs, Assessment, CheckinObs, DayRecord
from simulator.archetypes import ALL_ARCHETYPES, SimPatient, generate_cohort, parse_archetypes
from simulator.evaluate import Evaluation, TargetResult, check_targets, evaluate, render_markdown, to_dict
from simulator.evaluate import truths_from_cohort as _truths

#: Fixed default end of the simulated histories, so that a run needs no clock to be reproducible.
DEFAULT_END = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TENANT = "offline"


@dataclass(slots=True)
class PatientReplay:
    """What one patient's replay produced."""

    patient_id: str
    alerts: list[Alert]
    evaluations: int
    suppressed: dict[str, int] = field(default_factory=dict)
    states: list[tuple[datetime, TrajectoryState]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Observations


def observations(p: SimPatient, end: datetime) -> tuple[list[CheckinObs], list[ActivityObs]]:
    """The patient's check-ins and wearable samples as the scoring shell stores them.

    Check-ins go through the contract model and its JSON (what the shell stores) into
    `codec.checkin_obs`; samples into `codec.activity_obs`. Arrival time is the event time
    (data arriving live).
    """
    ctx = {"now": end}
    checkins: list[CheckinObs] = []
    activity: list[ActivityObs] = []
    for post in p.posts:
        if post.kind == "checkin":
            c = CheckIn.model_validate(post.payload, context=ctx)
            checkins.append(checkin_obs(c.model_dump(mode="json"), c.recorded_at))
        else:
            device_id = str(post.payload["device"]["id"])
            for raw in post.payload["samples"]:
                s = ActivitySample.model_validate(raw, context=ctx)
                activity.append(activity_obs(s, device_id, s.end))
    return checkins, activity


def local_days(
    checkins: Sequence[CheckinObs], activity: Sequence[ActivityObs], tz: ZoneInfo
) -> dict[date, tuple[list[CheckinObs], list[ActivityObs]]]:
    """Observations grouped by the patient's local day (the shell's day assignment)."""
    out: dict[date, tuple[list[CheckinObs], list[ActivityObs]]] = defaultdict(lambda: ([], []))
    for c in checkins:
        out[daily.local_day(c.recorded_at, tz)][0].append(c)
    for a in activity:
        out[daily.activity_day(a, tz)][1].append(a)
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------------------------
# Alert state (what services.alerts.apply writes, in memory)


@dataclass(slots=True)
class _Alerts:
    patient_id: str
    policy: AlertPolicy
    active: dict[str, AlertState] = field(default_factory=dict)
    records: dict[str, Alert] = field(default_factory=dict)
    resolved_through: dict[AlertKind, datetime] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    def open(self, d: OpenAlert, now: datetime) -> None:
        if any(a.kind is d.kind for a in self.active.values()):
            return  # the store's unique index: one unresolved alert per kind (ON CONFLICT DO NOTHING)
        self.seq += 1
        alert_id = f"{self.patient_id}/{self.seq:04d}-{d.kind.value}"
        self.active[alert_id] = AlertState.opened(d, alert_id, self.patient_id, now)
        self.records[alert_id] = Alert(
            id=alert_id,
            patient_id=self.patient_id,
            kind=d.kind,
            severity=d.severity,
            status=AlertStatus.open,
            summary=d.summary,
            reasons=list(d.reasons),
            trajectory_state=d.trajectory_state,
            event_time=d.event_time,
            opened_at=now,
            updated_at=now,
            retrospective=d.retrospective,
        )

    def update(self, d: UpdateAlert, now: datetime) -> None:
        cur = self.active.get(d.alert_id)
        if cur is None:
            return
        retro = cur.retrospective if d.retrospective is None else d.retrospective
        self.active[d.alert_id] = replace(
            cur,
            severity=d.severity,
            summary=d.summary,
            reasons=d.reasons,
            trajectory_state=d.trajectory_state,
            event_time=d.event_time,
            clear_since=d.clear_since,
            updated_at=now,
            retrospective=retro,
        )
        self.records[d.alert_id] = self.records[d.alert_id].model_copy(
            update={
                "severity": d.severity,
                "summary": d.summary,
                "reasons": list(d.reasons),
                "trajectory_state": d.trajectory_state,
                "event_time": d.event_time,
                "updated_at": now,
                "retrospective": retro,
            }
        )

    def resolve(self, d: ResolveAlert, now: datetime) -> None:
        cur = self.active.pop(d.alert_id, None)
        if cur is None:
            return
        done = self.resolved_through.get(cur.kind)
        self.resolved_through[cur.kind] = cur.event_time if done is None else max(done, cur.event_time)
        self.records[d.alert_id] = self.records[d.alert_id].model_copy(
            update={
                "status": AlertStatus.resolved,
                "resolved_at": now,
                "updated_at": now,
                "resolution": Resolution.auto,
            }
        )

    def apply(self, decisions: Sequence[object], now: datetime) -> None:
        for d in decisions:
            if isinstance(d, OpenAlert):
                self.open(d, now)
            elif isinstance(d, UpdateAlert):
                self.update(d, now)
            elif isinstance(d, ResolveAlert):
                self.resolve(d, now)
            elif isinstance(d, Suppressed):
                key = f"{d.kind.value}:{d.why}"
                self.suppressed[key] = self.suppressed.get(key, 0) + 1

    def sweep_disengagement(self, last_checkin_at: datetime | None, now: datetime) -> None:
        """The sweeper's disengagement pass at processing time `now`."""
        active = next((a for a in self.active.values() if a.kind is AlertKind.disengagement), None)
        red = any(a.kind is AlertKind.red_flag and not a.retrospective for a in self.active.values())
        d = timers.disengagement(
            self.patient_id,
            last_checkin_at,
            active,
            self.policy,
            now,
            red_flag_active=red,
            resolved_through=self.resolved_through.get(AlertKind.disengagement),
        )
        if d is not None:
            self.apply([d], now)


# --------------------------------------------------------------------------------------------
# Replay


def _event(
    pid: str, n: int, a: Assessment, prev: TrajectoryState | None, day: DayRecord, last: datetime | None
) -> TrajectoryUpdated:
    trajectory = series.to_trajectory(pid, a, []).model_copy(update={"days": []})
    return TrajectoryUpdated(
        tenant_id=TENANT,
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"nervewatch-offline/{pid}/{n}"),
        trajectory=trajectory,
        previous_state=prev,
        state_changed=prev != a.state,
        signals=list(a.signals),
        trigger=series.day_trigger(day),
        last_checkin_at=last,
        computed_at=a.as_of,
    )


def replay_patient(p: SimPatient, end: datetime, policy: AlertPolicy | None = None) -> PatientReplay:
    """Replay one patient's history day by day through scoring and alerting; see the module doc."""
    pol = policy or AlertPolicy()
    patient = Patient.model_validate({**p.patient, "created_at": end, "updated_at": end})
    profile = profile_from_patient(patient)
    tz = ZoneInfo(patient.timezone)
    checkins, activity = observations(p, end)
    state = _Alerts(p.patient_id, pol)
    eng = engine.Engine.of(profile)
    scoring = eng.initial()
    prev: TrajectoryState | None = None
    last_checkin: datetime | None = None
    states: list[tuple[datetime, TrajectoryState]] = []
    n = 0
    for day, (cs, acts) in local_days(checkins, activity, tz).items():
        rec = daily.aggregate_day(day, cs, acts)
        scoring = eng.step(scoring, rec)
        stamps = [t for t in (rec.last_recorded_at, rec.last_sample_end) if t is not None]
        if not stamps:
            continue
        as_of = max(stamps)
        # Until this day's first check-in arrives, the sweeper judges the silence so far.
        state.sweep_disengagement(last_checkin, min((c.recorded_at for c in cs), default=as_of))
        if rec.last_recorded_at is not None:
            last_checkin = rec.last_recorded_at if last_checkin is None else max(last_checkin, rec.last_recorded_at)
        a = eng.assess(scoring, as_of)
        n += 1
        ev = _event(p.patient_id, n, a, prev, rec, last_checkin)
        decisions = rules.evaluate(
            ev, list(state.active.values()), (), pol, as_of, resolved_through=state.resolved_through
        )
        state.apply(decisions, as_of)
        prev = a.state
        states.append((as_of, a.state))
    state.sweep_disengagement(last_checkin, end)
    alerts = sorted(state.records.values(), key=lambda x: (x.opened_at, x.id))
    return PatientReplay(p.patient_id, alerts, n, dict(state.suppressed), states)


def _replay_chunk(args: tuple[list[SimPatient], datetime]) -> list[PatientReplay]:
    cohort, end = args
    return [replay_patient(p, end) for p in cohort]


def replay_cohort(cohort: Sequence[SimPatient], end: datetime, jobs: int = 1) -> list[PatientReplay]:
    """Replay every patient; the result (in cohort order) does not depend on `jobs`."""
    if jobs <= 1 or len(cohort) < 2 * jobs:
        return [replay_patient(p, end) for p in cohort]
    chunks = [(list(cohort[i::jobs]), end) for i in range(jobs)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        parts = list(pool.map(_replay_chunk, chunks))
    by_id = {r.patient_id: r for part in parts for r in part}
    return [by_id[p.patient_id] for p in cohort]


@dataclass(slots=True)
class OfflineRun:
    cohort: list[SimPatient]
    replays: list[PatientReplay]
    evaluation: Evaluation
    targets: list[TargetResult]

    @property
    def alerts(self) -> list[Alert]:
        return [a for r in self.replays for a in r.alerts]


def run_offline(
    per_archetype: int,
    seed: int,
    archetypes: Sequence[str] | None = None,
    end: datetime = DEFAULT_END,
    jobs: int = 1,
) -> OfflineRun:
    cohort = generate_cohort(per_archetype, seed, end, archetypes)
    replays = replay_cohort(cohort, end, jobs)
    alerts = [a for r in replays for a in r.alerts]
    ev = evaluate(_truths(cohort), alerts)
    return OfflineRun(cohort, replays, ev, check_targets(ev))


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.offline", description=__doc__.split("\n")[0])
    parser.add_argument("--per-archetype", type=int, default=50, help="patients per archetype (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="cohort seed (default 1)")
    parser.add_argument("--archetypes", default=None, help=f"comma-separated subset of: {', '.join(ALL_ARCHETYPES)}")
    parser.add_argument(
        "--end",
        default=DEFAULT_END.isoformat(),
        help=f"RFC 3339 end of the histories (default {DEFAULT_END:%Y-%m-%dT%H:%MZ})",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1; output is identical)")
    parser.add_argument("--json", dest="json_path", type=Path, default=None, help="also write the evaluation as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)
    try:
        archetypes = parse_archetypes(args.archetypes)
        end = datetime.fromisoformat(args.end)
        if end.tzinfo is None:
            raise ValueError("--end needs an offset, e.g. 2026-03-02T12:00:00Z")
    except ValueError as exc:
        print(f"offline: {exc}", file=sys.stderr)
        return 2
    if args.per_archetype < 1:
        print("offline: --per-archetype must be at least 1", file=sys.stderr)
        return 2
    started = time.perf_counter()
    run = run_offline(args.per_archetype, args.seed, archetypes, end.astimezone(UTC), args.jobs)
    elapsed = time.perf_counter() - started
    evaluations = sum(r.evaluations for r in run.replays)
    run_info: dict[str, Any] = {
        "mode": "offline replay (pure, live arrival)",
        "seed": args.seed,
        "patients": len(run.cohort),
        "per archetype": args.per_archetype,
        "histories end": end.astimezone(UTC).isoformat(),
        "trajectory evaluations": evaluations,
    }
    print(render_markdown(run.evaluation, run.targets, run_info))
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(
            json.dumps(to_dict(run.evaluation, run.targets, run_info), indent=2, default=str) + "\n", encoding="utf-8"
        )
    failed = [t for t in run.targets if not t.passed]
    print(
        f"offline: {len(run.targets) - len(failed)}/{len(run.targets)} targets pass ({elapsed:.1f} s)", file=sys.stderr
    )
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
