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

Usage: `python -m simulator.offline --per-archetype 50 --seed 7 [--archetypes regression,plateau]
[--json report.json] [--diagnose patients.jsonl] [--report docs/detection-quality.md]`. `--report`
replaces the generated section of that document (between the simulate:report markers).
`--diagnose` writes one JSON line per patient with a missed, late or false alert: its label (onset,
earliest, deadline, every drawn parameter) and the alerts it got, to find out why.

`--billing` makes it a billing run instead: the pure RTM billing engine over the same generated
series, per archetype the share of closed patient-periods reaching each supply code
(`simulator.billing`); with `--report` the tables replace the section between the billing:report
markers (docs/billing.md).
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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from schemas.activity import ActivitySample
from schemas.alerts import Alert, AlertKind, Resolution
from schemas.checkins import CheckIn
from schemas.events import TrajectoryUpdated
from schemas.patients import Patient
from schemas.trajectory import TrajectoryState
from services.alerts import rules, timers
from services.alerts.book import PatientBook, StoreAlert, apply_decisions
from services.alerts.model import AlertPolicy, AlertState, Decision, Suppressed
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
    """One patient's alert book, changed by the same pure code as the alerts service
    (`services.alerts.book`), with the API view of every alert it ever held."""

    patient_id: str
    policy: AlertPolicy
    book: PatientBook = field(init=False)
    records: dict[str, Alert] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    def __post_init__(self) -> None:
        self.book = PatientBook(TENANT, self.patient_id)

    def new_id(self) -> str:
        self.seq += 1
        return f"{self.patient_id}/{self.seq:04d}"

    def apply(self, decisions: Sequence[Decision], now: datetime) -> None:
        for d in decisions:
            if isinstance(d, Suppressed):
                key = f"{d.kind.value}:{d.why}"
                self.suppressed[key] = self.suppressed.get(key, 0) + 1
        self.book, effects = apply_decisions(self.book, decisions, self.policy, now, self.new_id)
        for e in effects:
            if isinstance(e, StoreAlert):
                self.records[e.state.id] = _alert(e.state)

    def evaluate(self, ev: TrajectoryUpdated, now: datetime) -> None:
        b = self.book
        decisions = rules.evaluate(
            ev,
            b.active(),
            b.snoozes,
            self.policy,
            now,
            resolved_through=b.resolved_through,
            red_flags_seen=b.red_flags_seen,
        )
        self.apply(decisions, now)

    def sweep_disengagement(self, last_checkin_at: datetime | None, now: datetime) -> None:
        """The sweeper's disengagement pass at processing time `now`."""
        red = self.book.of_kind(AlertKind.red_flag)
        d = timers.disengagement(
            self.patient_id,
            last_checkin_at,
            self.book.of_kind(AlertKind.disengagement),
            self.policy,
            now,
            red_flag_active=red is not None and not red.retrospective,
            resolved_through=self.book.resolved_through.get(AlertKind.disengagement),
        )
        if d is not None:
            self.apply([d], now)


def _alert(a: AlertState) -> Alert:
    return Alert(
        id=a.id,
        patient_id=a.patient_id,
        kind=a.kind,
        severity=a.severity,
        status=a.status,
        summary=a.summary,
        reasons=list(a.reasons),
        trajectory_state=a.trajectory_state,
        event_time=a.event_time,
        opened_at=a.opened_at,
        updated_at=a.updated_at,
        retrospective=a.retrospective,
        acknowledged_by=a.acknowledged_by,
        acknowledged_at=a.acknowledged_at,
        resolved_at=a.resolved_at,
        resolution=Resolution(a.resolution) if a.resolution else None,
        red_flags=sorted(a.paged_flags) if a.kind is AlertKind.red_flag else [],
    )


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
        state.evaluate(ev, as_of)
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


def diagnose(run: OfflineRun) -> list[dict[str, Any]]:
    """One record per patient whose alerts miss a target: expected kind missed or late, or a
    false alert. Pure; the records hold synthetic data only (sim- ids, drawn parameters)."""
    by_patient: dict[str, list[Alert]] = defaultdict(list)
    for a in run.alerts:
        by_patient[a.patient_id].append(a)
    out: list[dict[str, Any]] = []
    for p, truth in zip(run.cohort, _truths(run.cohort), strict=True):
        mine = by_patient.get(p.patient_id, [])
        ev = evaluate([truth], mine)
        missed = [k.kind for k in ev.kinds if k.within_window < k.patients]
        false = ev.false[truth.archetype]
        if not missed and false.total == 0:
            continue
        start = p.label.history_start

        def day(t: datetime | None, start: datetime | None = start) -> float | None:
            return None if t is None or start is None else round((t - start).total_seconds() / 86400.0, 2)

        out.append(
            {
                "patient_id": p.patient_id,
                "archetype": truth.archetype,
                "missed_or_late": missed,
                "false_alerts": false.total,
                "premature": false.premature,
                "expected": sorted(truth.expected),
                "tolerated": sorted(truth.tolerated),
                "history_day_of": {
                    "onset": day(truth.onset),
                    "earliest": day(truth.earliest),
                    "due": day(truth.due),
                },
                "alerts": [
                    {
                        "kind": a.kind.value,
                        "severity": a.severity.value,
                        "history_day": day(a.event_time),
                        "reasons": [r.code for r in a.reasons],
                    }
                    for a in sorted(mine, key=lambda a: a.event_time)
                ],
                "patient": {k: v for k, v in p.patient.items() if k != "care_team"},
                "detail": p.label.detail,
            }
        )
    return out


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
    parser.add_argument(
        "--diagnose",
        dest="diagnose_path",
        type=Path,
        default=None,
        help="write one JSON line per patient with a missed, late or false alert (label, parameters, alerts)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="write the markdown report here; in an existing file only the section between the "
        "simulate:report markers is replaced (as `nervewatch simulate --report`)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument(
        "--billing",
        action="store_true",
        help="instead of the detection evaluation, report per archetype the share of closed 30-day periods "
        "reaching each supply code (98977, 98985, none); with --report, into the billing:report section",
    )
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
    if args.billing:
        return _billing(args.per_archetype, args.seed, archetypes, end.astimezone(UTC), args.report)
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
    report = render_markdown(run.evaluation, run.targets, run_info)
    print(report)
    if args.report:
        from simulator.cli import write_report  # the same marker replacement as the live simulator

        write_report(args.report, report)
        print(f"offline: report written to {args.report}", file=sys.stderr)
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(
            json.dumps(to_dict(run.evaluation, run.targets, run_info), indent=2, default=str) + "\n", encoding="utf-8"
        )
    if args.diagnose_path:
        args.diagnose_path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(rec, default=str, sort_keys=True) for rec in diagnose(run)]
        args.diagnose_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    failed = [t for t in run.targets if not t.passed]
    print(
        f"offline: {len(run.targets) - len(failed)}/{len(run.targets)} targets pass ({elapsed:.1f} s)", file=sys.stderr
    )
    return 1 if (args.strict and failed) else 0


BILLING_BEGIN = "<!-- billing:report:begin -->"
BILLING_END = "<!-- billing:report:end -->"


def _billing(per_archetype: int, seed: int, archetypes: Sequence[str] | None, end: datetime, path: Path | None) -> int:
    from simulator.billing import render_markdown as billing_markdown

    cohort = generate_cohort(per_archetype, seed, end, archetypes)
    info = {"seed": seed, "per archetype": per_archetype, "histories end": end.isoformat()}
    report = billing_markdown(cohort, end, seed, info)
    print(report)
    if path is not None:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        start, stop = text.find(BILLING_BEGIN), text.find(BILLING_END)
        if not 0 <= start < stop:
            print(f"offline: {path} has no billing:report markers", file=sys.stderr)
            return 2
        block = f"{BILLING_BEGIN}\n{report.rstrip()}\n{BILLING_END}"
        path.write_text(text[:start] + block + text[stop + len(BILLING_END) :], encoding="utf-8")
        print(f"offline: billing tables written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
