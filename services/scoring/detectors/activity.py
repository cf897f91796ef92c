"""Daily steps: unusually active days (a flare trigger) and a sustained decline (supporting evidence).

- Unusually active day: steps >= active_day_ratio x the median of the previous
  activity_reference_days days (at least active_day_min_days of them).
- Baseline: the enrolment value, else the median of the first activity_baseline_days days from the
  first day with steps (at least activity_baseline_min_days values).
- Decline: the 7-day median (at least activity_min_days values) >= activity_decline_pct below
  baseline on activity_sustain_days consecutive days with steps; clears back within half that.
  Not assessed in the post-procedure window (lower activity is expected). Raises only the
  low-severity `activity_decline` signal and adds a reason to an active regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.trajectory import Signal, SignalCode
from services.scoring.detectors.base import (
    AssessCtx,
    Detector,
    Finding,
    Patient,
    StepCtx,
    day_of,
    event_of,
    fmt,
    median,
    reason,
)


@dataclass(frozen=True, slots=True)
class ActivityEpisode:
    start: int
    detected: int
    base: float
    level: float
    event_time: datetime | None
    event_id: str | None


@dataclass(frozen=True, slots=True)
class ActivityState:
    steps: tuple[tuple[int, float], ...] = ()  # (ordinal, steps) of the last reference window
    first: int | None = None  # first day with steps
    head: tuple[float, ...] = ()  # steps of the first activity_baseline_days days
    active_on: int | None = None  # ordinal of the newest unusually active day
    run: int = 0
    run_start: int | None = None
    episode: ActivityEpisode | None = None

    def baseline(self, patient: Patient) -> float | None:
        b = patient.profile.baseline
        if b is not None and b.daily_steps is not None:
            return float(b.daily_steps)
        if len(self.head) >= patient.clinical.activity_baseline_min_days:
            return median(self.head)
        return None


def initial(patient: Patient) -> ActivityState:
    return ActivityState()


def step(state: ActivityState, ctx: StepCtx) -> ActivityState:
    rec, cp, o = ctx.rec, ctx.patient.clinical, ctx.o
    if rec.steps is None:
        return state
    v = float(rec.steps)
    k = cp.activity_reference_days
    ring = state.steps
    i = 0
    while i < len(ring) and ring[i][0] < o - k:
        i += 1
    ring = ring[i:]
    active = len(ring) >= cp.active_day_min_days and v >= cp.active_day_ratio * median([s for _, s in ring]) > 0
    steps = (*ring, (o, v))
    first = state.first if state.first is not None else o
    head = state.head
    if o < first + cp.activity_baseline_days:
        head = (*head, v)
    active_on = o if active else state.active_on
    recent = [s for so, s in steps[-cp.activity_recent_days :] if so > o - cp.activity_recent_days]
    base = (
        state.baseline(ctx.patient) if head is state.head else ActivityState(steps, first, head).baseline(ctx.patient)
    )
    run, run_start, ep = state.run, state.run_start, state.episode
    if len(recent) >= cp.activity_min_days and base:
        level = median(recent)
        if ctx.patient.course.in_postop_window(o):
            run, run_start, ep = 0, None, None
        elif ep is not None:
            if level >= (1.0 - cp.activity_decline_pct / 200.0) * base:
                run, run_start, ep = 0, None, None
        elif level <= (1.0 - cp.activity_decline_pct / 100.0) * base:
            run += 1
            run_start = o if run_start is None else run_start
            if run >= cp.activity_sustain_days:
                t, eid = event_of(rec)
                ep = ActivityEpisode(run_start, o, base, level, t, eid)
        else:
            run, run_start = 0, None
    return ActivityState(steps, first, head, active_on, run, run_start, ep)


def findings(state: ActivityState, ctx: AssessCtx) -> tuple[Finding, ...]:
    ep = state.episode
    if ep is None:
        return ()
    pct = 100.0 * (ep.base - ep.level) / ep.base
    why = reason(
        "activity_declined",
        f"daily steps {fmt(ep.base)} -> {fmt(ep.level)} (7-day median, -{fmt(pct)}%, threshold "
        f"{fmt(ctx.patient.clinical.activity_decline_pct)}%)",
    )
    signal = Signal(
        code=SignalCode.activity_decline,
        since=day_of(ep.start),
        event_time=ep.event_time or ctx.as_of,
        event_id=ep.event_id,
        reasons=[why],
    )
    return (Finding("activity_decline", (why,), signal, ep.detected),)


DETECTOR: Detector[ActivityState] = Detector("activity", initial, step, findings)
