"""Sustained deterioration (the `regression` signal), judged against the expected course.

On each scored day (stepped after the flare detector):
- reference: the lowest 7-day level at reference_gap_days + 7k days back (k < reference_weeks);
- A-day: index >= reference + deterioration MCID + the part of the rise the expected post-procedure
  course explains (incision and pillar pain, swelling and immobilisation, each up to its allowance; none for pain
  back at its pre-procedure level),
  >= reference + worsening_noise_z x the patient's noise SD, and above the recovered threshold
  (a rise within mild residual symptoms is not a regression); below worsening_mild_index it
  must also show in one symptom rising by its own MCID on its reference-period median over two
  scored days (a wobble
  of a point in two or three items at mild residual levels is not a regression). After a nerve repair, while regrowth
  is on its way, the deterioration MCID is at least regen_deterioration_mcids index MCIDs;
- B-day (return to baseline severity): the reference was >= 1 MCID better than baseline and the
  index is back within half a deterioration MCID of it; not in the first
  return_to_baseline_after_days after a procedure.
An episode starts, outside flare cover, when the last worsening_consecutive_days scored days are
all elevated, or >= worsening_min_days of the last worsening_last_days (within
worsening_window_days) are; or, flare or not, when the last worsening_min_days scored days (within
worsening_back_days) are all B-days. The reference is then frozen; the episode lasts until the
median of the last 3 scored days (within a week) is back within half a deterioration MCID of it.
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
    fmt,
    median,
    reason,
)
from services.scoring.detectors.flare import FlareState
from services.scoring.detectors.symptoms import SymptomState
from services.scoring.model import DayRecord


@dataclass(frozen=True, slots=True)
class RegressionEpisode:
    start: int
    detected: int
    ref: float
    x: float
    count: int
    days: int
    window_start: int
    det: float
    allowance: float
    event_time: datetime | None
    event_id: str | None


@dataclass(frozen=True, slots=True)
class RegressionState:
    flags: tuple[tuple[int, bool, bool], ...] = ()  # (ordinal, A-day, B-day) of the last scored days
    episode: RegressionEpisode | None = None  # the active episode
    last_start: int | None = None  # ordinal the newest episode started (restarts the plateau clock)


def initial(patient: Patient) -> RegressionState:
    return RegressionState()


def reference(sym: SymptomState, o: int, patient: Patient) -> float | None:
    """The lowest of the weekly 7-day levels at reference_gap_days + 7k days back (each taken from
    the newest scored day at most 2 days before its target), None when there is none."""
    cp = patient.clinical
    recent = sym.recent
    j = len(recent) - 1
    best: float | None = None
    for k in range(cp.reference_weeks):
        target = o - cp.reference_gap_days - 7 * k
        while j >= 0 and recent[j][0] > target:
            j -= 1
        if j < 0:
            break
        e = recent[j]
        lv = e[7]
        if e[0] >= target - 2 and lv is not None and (best is None or lv < best):
            best = lv
    return best


def allowance(patient: Patient, o: int, rec: DayRecord, sym: SymptomState) -> float:
    """Index points of today's rise that the expected post-procedure course explains (0 when none).

    Only the part of an item's rise over its reference-period median (the days the reference
    levels come from) up to the item's allowance is forgiven: incision and pillar pain for pain,
    swelling and immobilisation for tingling, numbness and weakness. Pain back at (or above) its
    pre-procedure level is not incision pain: no pain allowance then.
    """
    course = patient.course
    neuro = course.neuro_allowance(o)
    allow = (course.pain_allowance(o), neuro, neuro, neuro)
    if allow[0] <= 0 and neuro <= 0:
        return 0.0
    b = patient.profile.baseline
    today = (rec.pain, rec.tingling, rec.numbness, rec.weakness)
    if rec.pain is not None and b is not None and b.pain is not None and rec.pain >= b.pain:
        allow = (0.0, neuro, neuro, neuro)
    cp = patient.clinical
    lo, hi = o - cp.reference_gap_days - 7 * cp.reference_weeks + 1, o - cp.reference_gap_days
    rows = [e for e in sym.recent if lo <= e[0] <= hi]
    w = patient.weights
    num = 0.0
    for k in range(4):
        v = today[k]
        ref_vals = [x for e in rows if (x := e[2 + k]) is not None]
        if v is None or allow[k] <= 0 or not ref_vals or w[k] <= 0:
            continue
        num += w[k] * min(allow[k], max(0.0, v - median(ref_vals)))
    den = sum(
        wk for wk, v in zip(w, (rec.pain, rec.tingling, rec.numbness, rec.weakness), strict=True) if v is not None
    )
    return 10.0 * num / den if den > 0 else 0.0


def item_rise(patient: Patient, o: int, rec: DayRecord, sym: SymptomState) -> bool:
    """Whether one symptom (weighted in the index) is up by at least its own MCID (max(item_mcid,
    item_mcid_pct of its baseline)) on its median over the reference period, on the mean of today
    and the previous scored day (within 3 days)."""
    cp = patient.clinical
    lo, hi = o - cp.reference_gap_days - 7 * cp.reference_weeks + 1, o - cp.reference_gap_days
    rows = [e for e in sym.recent if lo <= e[0] <= hi]
    today = (rec.pain, rec.tingling, rec.numbness, rec.weakness)
    prev = sym.recent[-2] if len(sym.recent) >= 2 and sym.recent[-2][0] >= o - 3 else None
    for k in range(4):
        v = today[k]
        if v is None or patient.weights[k] <= 0:
            continue
        before = prev[2 + k] if prev is not None else None
        if before is not None:
            v = (v + before) / 2.0  # a rise that holds over two scored days, not one odd report
        ref_vals = [x for e in rows if (x := e[2 + k]) is not None]
        if not ref_vals:
            continue
        base = sym.item_baseline(patient, k)
        mcid = max(cp.item_mcid, cp.item_mcid_pct / 100.0 * base) if base is not None else cp.item_mcid
        if v - median(ref_vals) >= mcid:
            return True
    return False


def step(state: RegressionState, ctx: StepCtx) -> RegressionState:
    sym: SymptomState = ctx.now["symptoms"]
    x = sym.x
    if x is None:
        return state
    patient, cp, o, rec = ctx.patient, ctx.patient.clinical, ctx.o, ctx.rec
    baseline, _ = sym.baseline(patient)
    mcid = cp.index_mcid(baseline)
    det = cp.deterioration_mcid(mcid)
    if patient.course.regenerating(o):
        det = max(det, cp.regen_deterioration_mcids * mcid)
    keep = max(cp.worsening_last_days, cp.worsening_min_days)
    ep = state.episode
    if ep is not None:
        last3 = [e[1] for e in sym.recent if e[0] > o - cp.worsening_window_days][-3:]
        if median(last3) >= ep.ref + det / 2:
            return RegressionState((*state.flags, (o, False, False))[-keep:], ep, state.last_start)
        ep = None
    ref = reference(sym, o, patient)
    if ref is None:
        return RegressionState((*state.flags, (o, False, False))[-keep:], None, state.last_start)
    allow = allowance(patient, o, rec, sym)
    a = (
        x >= ref + det + allow
        and x >= ref + cp.worsening_noise_z * sym.sigma
        and x > cp.recovered_index
        and (x >= cp.worsening_mild_index or item_rise(patient, o, rec, sym))
    )
    b = (
        baseline is not None
        and ref <= baseline - mcid
        and x >= baseline - det / 2
        and patient.course.return_to_baseline_counts(o)
    )
    flags = (*state.flags, (o, a, b))[-keep:]
    if not (a or b):
        return RegressionState(flags, None, state.last_start)
    n = cp.worsening_min_days
    back = len(flags) >= n and flags[-n][0] > o - cp.worsening_back_days and all(f[2] for f in flags[-n:])
    flare: FlareState = ctx.now["flare"]
    covered = flare.covers(o, patient)
    window = [f for f in flags[-cp.worsening_last_days :] if f[0] > o - cp.worsening_window_days]
    marks = [f[2] for f in window] if covered else [f[1] or f[2] for f in window]
    c = cp.worsening_consecutive_days
    quick = not covered and len(marks) >= c and all(marks[-c:])
    count = sum(marks)
    if not (back or quick or (not covered and count >= n)):
        return RegressionState(flags, None, state.last_start)
    first = len(marks) - c if quick and count < n else marks.index(True) if any(marks) else 0
    start = window[first][0] if not back or any(marks) else flags[-n][0]
    new = RegressionEpisode(
        start=start,
        detected=o,
        ref=ref,
        x=x,
        count=count,
        days=len(window),
        window_start=window[0][0],
        det=det,
        allowance=allow,
        event_time=rec.last_recorded_at,
        event_id=rec.last_event_id,
    )
    return RegressionState(flags, new, start)


def findings(state: RegressionState, ctx: AssessCtx) -> tuple[Finding, ...]:
    ep = state.episode
    if ep is None:
        return ()
    detail = (
        f"index {fmt(ep.x)} vs best recent level {fmt(ep.ref)}, elevated on {ep.count} of {ep.days} days since "
        f"{day_of(ep.window_start).isoformat()} (deterioration MCID {fmt(ep.det)}"
    )
    detail += f", post-procedure allowance {fmt(ep.allowance)})" if ep.allowance > 0 else ")"
    reasons = [reason("sustained_worsening", detail)]
    sym: SymptomState = ctx.states.symptoms
    baseline, _ = sym.baseline(ctx.patient)
    if baseline is not None and sym.recent and sym.recent[-1][1] >= baseline - ep.det / 2:
        reasons.append(
            reason(
                "back_to_baseline",
                f"index {fmt(sym.recent[-1][1])} back near baseline {fmt(baseline)}",
            )
        )
    signal = Signal(
        code=SignalCode.regression,
        since=day_of(ep.start),
        event_time=ep.event_time or ctx.as_of,
        event_id=ep.event_id,
        reasons=list(reasons),
    )
    return (Finding("regression", tuple(reasons), signal, ep.detected),)


DETECTOR: Detector[RegressionState] = Detector("regression", initial, step, findings)
