"""Plateau, recovery and improvement: is the patient still getting better, stalled, or well?

Plateau condition on a scored day o (after the regression detector), counted from the clock (the
procedure, else the first check-in; a regression episode restarts it), at least plateau_days in:
- over the plateau_days before o the 7-day level never stood >= half an index MCID above or below
  today's level (no meaningful improvement, and not getting worse either);
- no symptom is improving slowly but steadily over the last trend_item_days, alone or with the others
  (`slow_improver`: Mann-Kendall trend tests);
- the level is above the recovered threshold.
A plateau episode (the `plateau` signal) opens once the condition has held on plateau_confirm_days
consecutive scored days and the plateau is due: symptoms
moderate (7-day level >= plateau_min_index, or >= plateau_min_index_with_pain with the 7-day median
pain >= plateau_min_pain); not in a nerve
repair's regrowth phase; and, for a patient not yet improved by plateau_improved_mcids MCIDs on
baseline (a slow improver has not got there yet), past the review point.
It lasts until the level improves by half an MCID on its opening level, or a regression starts; a
plateau due again within plateau_reopen_days of that is the same one (same since and event time).

Recovered: the 7-day level <= recovered_index on every scored day for >= recovered_days, the
smoothed index <= recovered_index, and no function score of the last 28 days at or above its PASS
cut-off. Improving: smoothed index >= half an MCID below baseline, or a 28-day trend projecting
>= half an MCID of improvement.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from datetime import datetime

from schemas.common import Reason
from schemas.trajectory import Signal, SignalCode
from services.scoring.detectors.base import (
    NOTE,
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
from services.scoring.detectors.regression import RegressionState
from services.scoring.detectors.symptoms import ITEMS, SymptomState
from services.scoring.profile import ClinicalProfile


@dataclass(frozen=True, slots=True)
class PlateauEpisode:
    since: int
    raised: int
    level_since: float
    level_open: float
    event_time: datetime | None
    event_id: str | None


@dataclass(frozen=True, slots=True)
class PlateauState:
    start: int | None = None  # the course start the clock counts from (procedure, else first check-in)
    clock: int | None = None  # start, or the newest regression start after it
    best: float | None = None  # lowest 7-day level since start
    episode: PlateauEpisode | None = None
    # The condition on the newest scored day without an open episode: (since, level at since, level).
    cond: tuple[int, float, float] | None = None
    slow_item: str | None = None  # an item still improving slowly on the newest scored day
    held: int = 0  # consecutive scored days the plateau condition has held
    rec_since: int | None = None  # first day of the current run of levels <= recovered_index
    function: tuple[int, str, float] | None = None  # newest (ordinal, instrument, score)
    function_heads: tuple[tuple[str, tuple[float, ...]], ...] = ()  # first scores of each instrument
    # The newest episode that ended on improvement, and the ordinal it ended on: a plateau that
    # holds again within plateau_reopen_days is the same plateau (its since/event time are kept).
    ended: PlateauEpisode | None = None
    ended_on: int | None = None


def initial(patient: Patient) -> PlateauState:
    return PlateauState()


def _moderate(sym: SymptomState, o: int, level: float, patient: Patient) -> bool:
    cp = patient.clinical
    if level >= cp.plateau_min_index:
        return True
    if level < cp.plateau_min_index_with_pain:
        return False
    pains = [e[2] for e in sym.recent if e[0] > o - cp.level_window_days and e[2] is not None]
    return bool(pains) and median(pains) >= cp.plateau_min_pain


def slow_improver(sym: SymptomState, o: int, clock: int, patient: Patient) -> str | None:
    """The symptom improving slowly but steadily over the last trend_item_days (since the clock),
    "symptoms" when they do so together, else None.

    A Mann-Kendall trend test per symptom: it improves steadily when Kendall's S is significantly
    negative (z <= -trend_item_z) and its least-squares slope is at least trend_item_min_rate
    points a week. S counts every pair of days, so a trend that holds week after week scores far
    higher than one step. The symptoms together: the sum of their S over the root of the summed
    variances, with the index improving by at least trend_index_min_rate points a week (several
    slow trends that a noisy reporter hides one by one).
    """
    cp = patient.clinical
    days = cp.trend_item_days if sym.sigma <= cp.trend_noisy_sigma else cp.trend_item_days_noisy
    lo = max(clock, o - days + 1)
    rows = [e for e in sym.recent if e[0] >= lo]
    s_sum = 0
    var_sum = 0.0
    for k, name in enumerate(ITEMS):
        if patient.weights[k] <= 0:
            continue
        pts = [(e[0], v) for e in rows if (v := e[2 + k]) is not None]
        if len(pts) < cp.trend_item_min_points:
            continue
        s, var = mann_kendall([v for _, v in pts])
        s_sum += s
        var_sum += var
        if _z(s, var) > -cp.trend_item_z:
            continue
        b = ols_slope([p for p, _ in pts], [v for _, v in pts])
        if b is not None and -7.0 * b >= cp.trend_item_min_rate and _consistent(pts, b, o, cp.plateau_days, cp):
            return name
    if var_sum > 0 and _z(s_sum, var_sum) <= -cp.trend_item_z:
        idx = [(e[0], e[1]) for e in rows]
        b = ols_slope([p for p, _ in idx], [v for _, v in idx])
        if b is not None and -7.0 * b >= cp.trend_index_min_rate and _consistent(idx, b, o, cp.plateau_days, cp):
            return "symptoms"
    return _long_trend(sym, o, clock, lo, patient)


def _long_trend(sym: SymptomState, o: int, clock: int, lo_short: int, patient: Patient) -> str | None:
    """A slower trend, judged over trend_long_days (since the clock): the symptoms together
    significantly improving (summed Kendall S, z <= -trend_item_z) with the index improving by at
    least trend_long_min_rate points a week, and still improving over the last plateau_days at
    least trend_consistency times that pace (a stall after an early improvement is not: its last
    three weeks are flat)."""
    cp = patient.clinical
    lo = max(clock, o - cp.trend_long_days + 1)
    if lo >= lo_short:
        return None
    rows = [e for e in sym.recent if e[0] >= lo]
    s_sum = 0
    var_sum = 0.0
    for k in range(4):
        if patient.weights[k] <= 0:
            continue
        vals = [v for e in rows if (v := e[2 + k]) is not None]
        if len(vals) < cp.trend_item_min_points:
            continue
        s, var = mann_kendall(vals)
        s_sum += s
        var_sum += var
    if var_sum <= 0 or _z(s_sum, var_sum) > -cp.trend_item_z:
        return None
    b_long = ols_slope([e[0] for e in rows], [e[1] for e in rows])
    if b_long is None or -7.0 * b_long < cp.trend_long_min_rate:
        return None
    if not _consistent([(e[0], e[1]) for e in rows], b_long, o, cp.plateau_days, cp):
        return None
    return "symptoms"


def _consistent(pts: list[tuple[int, float]], slope: float, o: int, days: int, cp: ClinicalProfile) -> bool:
    """Whether the points of the last `days` days (ending on o) still fall at >= trend_consistency
    times `slope` (per day, negative), or are flatter by less than trend_consistency_se standard
    errors of their own slope (a noisy reporter): a trend that has clearly stopped (a stall after
    an early improvement) is not a steady one."""
    last = [p for p in pts if p[0] > o - days]
    if len(last) >= len(pts):
        return True  # the window is no longer than the plateau window: nothing older to compare
    if len(last) < cp.trend_item_min_points:
        return False
    xs, ys = [p for p, _ in last], [v for _, v in last]
    b = ols_slope(xs, ys)
    if b is None:
        return False
    if b <= cp.trend_consistency * slope:
        return True
    # Flatter, but not clearly so for this reporter's noise: within trend_consistency_se standard
    # errors of the window's slope.
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    ssr = sum((y - my - b * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    se = math.sqrt(ssr / max(1, n - 2) / sxx) if sxx > 0 else math.inf
    return b - slope < cp.trend_consistency_se * se


def mann_kendall(values: list[float]) -> tuple[int, float]:
    """Kendall's S of a series in time order and its variance without the tie correction (whole-point
    reports tie often, and the tie-corrected variance would make a few lower values among many
    equal ones look like a trend). O(n log n): each value against a sorted list of the earlier ones."""
    n = len(values)
    s = 0
    seen: list[float] = []
    for i, v in enumerate(values):
        s += bisect_left(seen, v) - (i - bisect_right(seen, v))
        insort(seen, v)
    return s, n * (n - 1) * (2 * n + 5) / 18.0


def mann_kendall_z(values: list[float]) -> float:
    """Mann-Kendall z of a series in time order (continuity-corrected, no-ties variance)."""
    return _z(*mann_kendall(values))


def _z(s: int, var: float) -> float:
    if s == 0 or var <= 0:
        return 0.0
    return (s - 1 if s > 0 else s + 1) / math.sqrt(var)


def ols_slope(xs: list[int], ys: list[float]) -> float | None:
    n = len(xs)
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _stalled(
    sym: SymptomState, o: int, lv: float, mcid: float, clock: int, patient: Patient
) -> tuple[bool, str | None]:
    """(condition holds, slowly improving item) on scored day o; see the module docstring."""
    cp = patient.clinical
    w = cp.plateau_days
    if o - clock < w or lv <= cp.recovered_index:
        return False, None
    # A 7-day level describes the middle of its week: the levels of the days from
    # o - plateau_days + half a level window on cover the plateau window.
    lo = o - w + cp.level_window_days // 2
    rows = [e for e in sym.recent if lo <= e[0] < o]
    for e in rows:
        x = e[7]
        if x is not None and (x - lv >= mcid / 2 or lv - x >= mcid / 2):
            return False, None
    item = slow_improver(sym, o, clock, patient)
    return item is None, item


def _last_better(sym: SymptomState, o: int, threshold: float, floor: int) -> int:
    """The newest scored day before `o` whose level is >= threshold, at least `floor`."""
    for e in reversed(sym.recent[:-1]):
        if e[0] < floor:
            break
        if e[7] is not None and e[7] >= threshold:
            return e[0]
    return floor


def step(state: PlateauState, ctx: StepCtx) -> PlateauState:
    rec, cp, o, patient = ctx.rec, ctx.patient.clinical, ctx.o, ctx.patient
    function, heads = state.function, state.function_heads
    if rec.function_score is not None and rec.function_instrument is not None:
        function = (o, rec.function_instrument, rec.function_score)
        heads = _add_head(heads, rec.function_instrument, rec.function_score, cp.baseline_days)
    sym: SymptomState = ctx.now["symptoms"]
    if sym.x is None:
        if function is state.function:
            return state
        return PlateauState(
            state.start,
            state.clock,
            state.best,
            state.episode,
            state.cond,
            state.slow_item,
            state.held,
            state.rec_since,
            function,
            heads,
            state.ended,
            state.ended_on,
        )
    course = patient.course
    proc = course.procedure
    first = sym.first if sym.first is not None else o
    # The clock counts from the procedure, but never from before the first check-in: 21 days
    # without improvement must be 21 days of data.
    start = max(proc, first) if proc is not None and proc <= o else first
    clock = state.clock if state.clock is not None and state.start == start else start
    best = state.best if state.start == start else None
    lv = sym.level
    rec_since = state.rec_since
    if lv is not None:
        rec_since = (rec_since if rec_since is not None else o) if lv <= cp.recovered_index else None
    ep: PlateauEpisode | None = state.episode
    cond: tuple[int, float, float] | None = None
    item: str | None = None
    held = 0
    reg: RegressionState = ctx.now["regression"]
    ended, ended_on = state.ended, state.ended_on
    if lv is None:
        pass
    elif reg.episode is not None:
        best = lv if best is None else min(best, lv)
        clock, ep, ended, ended_on = o, None, None, None
    elif course.regenerating(o):
        best = lv if best is None else min(best, lv)
        ep, ended, ended_on = None, None, None
    else:
        best = lv if best is None else min(best, lv)
        baseline, _ = sym.baseline(patient)
        mcid = cp.index_mcid(baseline)
        if ep is None or lv <= ep.level_open - mcid / 2:
            if ep is not None:
                ended, ended_on = ep, o
            ep = None
            stalled, item = _stalled(sym, o, lv, mcid, clock, patient)
            if stalled:
                held = state.held + 1
                since = _last_better(sym, o, lv + mcid / 2, max(clock, o - cp.plateau_days))
                level_since = sym.level_near(since, slack=0) or lv
                improved_once = baseline is not None and best <= baseline - cp.plateau_improved_mcids * mcid
                due = (
                    held >= cp.plateau_confirm_days
                    and _moderate(sym, o, lv, patient)
                    and (improved_once or o >= start + cp.review_after_days)
                )
                if due and ended is not None and ended_on is not None and o - ended_on <= cp.plateau_reopen_days:
                    # The same plateau after a brief dip (noise): the signal keeps its since and
                    # event time, so an open alert is not re-dated.
                    ep = PlateauEpisode(
                        ended.since, ended.raised, ended.level_since, lv, ended.event_time, ended.event_id
                    )
                elif due:
                    ep = PlateauEpisode(since, o, level_since, lv, rec.last_recorded_at, rec.last_event_id)
                else:
                    cond = (since, level_since, lv)
    return PlateauState(start, clock, best, ep, cond, item, held, rec_since, function, heads, ended, ended_on)


def _add_head(
    heads: tuple[tuple[str, tuple[float, ...]], ...], inst: str, score: float, n: int
) -> tuple[tuple[str, tuple[float, ...]], ...]:
    for i, (name, vals) in enumerate(heads):
        if name == inst:
            if len(vals) >= n:
                return heads
            return (*heads[:i], (name, (*vals, score)), *heads[i + 1 :])
    return (*heads, (inst, (score,)))


def function_notes(state: PlateauState, patient: Patient) -> list[Reason]:
    """The newest function score against its baseline (enrolment for the same instrument, else the
    median of its first scores) in its own MCID, and the acceptable-state cut-off."""
    if state.function is None:
        return []
    _, inst, latest = state.function
    cp = patient.clinical
    b = patient.profile.baseline
    base: float | None = None
    if b is not None and b.function_instrument == inst and b.function_score is not None:
        base = b.function_score
    else:
        vals = next((v for name, v in state.function_heads if name == inst), ())
        base = median(vals) if vals else None
    out: list[Reason] = []
    mcid = cp.function_mcid(inst)
    if base is not None and mcid is not None:
        better = base - latest if inst not in ("lefs", "psfs") else latest - base
        tail = f"{inst} {fmt(base)} -> {fmt(latest)} (MCID {fmt(mcid)})"
        if better >= mcid:
            out.append(reason("function_improved_mcid", tail))
        elif better <= -mcid * cp.deterioration_ratio:
            out.append(reason("function_worsened", tail))
        else:
            out.append(reason("function_unchanged", tail))
    cut = cp.function_pass_threshold(inst)
    if cut is not None and latest < cut:
        out.append(
            reason(
                "function_acceptable_state",
                f"{inst} {fmt(latest)} below acceptable-state cut-off {fmt(cut)}",
            )
        )
    return out


def _function_acceptable(state: PlateauState, last: int, patient: Patient) -> bool:
    if state.function is None:
        return True
    o, inst, score = state.function
    if o < last - patient.clinical.function_recent_days:
        return True
    cut = patient.clinical.function_pass_threshold(inst)
    return cut is None or score < cut


def findings(state: PlateauState, ctx: AssessCtx) -> tuple[Finding, ...]:
    sym: SymptomState = ctx.states.symptoms
    if sym.last is None or sym.ewma is None:
        return ()
    patient, cp = ctx.patient, ctx.patient.clinical
    out: list[Finding] = []
    baseline, _ = sym.baseline(patient)
    mcid = cp.index_mcid(baseline)
    last = sym.last
    if (
        state.rec_since is not None
        and last - state.rec_since + 1 >= cp.recovered_days
        and sym.ewma <= cp.recovered_index
        and _function_acceptable(state, last, patient)
    ):
        detail = (
            f"7-day median index at or below {fmt(cp.recovered_index)} for {last - state.rec_since + 1} days "
            f"(need {cp.recovered_days})"
        )
        out.append(Finding("recovered", (reason("recovered", detail),)))
    ep = state.episode
    cur = sym.level
    if ep is not None and cur is not None:
        detail = (
            f"7-day median index {fmt(ep.level_since)} -> {fmt(cur)} over {last - ep.since} days since "
            f"{day_of(ep.since).isoformat()}, less than half an MCID ({fmt(mcid / 2)}) of improvement"
        )
        why = reason("plateau", detail)
        signal = Signal(
            code=SignalCode.plateau,
            since=day_of(ep.since),
            event_time=ep.event_time or ctx.as_of,
            event_id=ep.event_id,
            reasons=[why],
        )
        out.append(Finding("plateau", (why,), signal, ep.raised))
    elif state.cond is not None and cur is not None:
        if not _moderate(sym, last, cur, patient):
            why = reason(
                "plateau_mild_symptoms",
                f"no meaningful improvement, but the 7-day median index {fmt(cur)} is below "
                f"{fmt(cp.plateau_min_index)} and pain below {fmt(cp.plateau_min_pain)} (mild residual "
                "symptoms): not flagged for review",
            )
        elif state.held < cp.plateau_confirm_days:
            why = reason(
                "plateau_confirming",
                f"no meaningful improvement over {cp.plateau_days} days on {state.held} consecutive scored days "
                f"(flagged from {cp.plateau_confirm_days})",
            )
        else:
            why = reason(
                "plateau_within_expected_recovery_time",
                f"no meaningful improvement yet; review point is day {cp.review_after_days}",
            )
        out.append(Finding("plateau", (why,)))
    slope = ctx.slope_long
    improving = baseline is not None and (
        sym.ewma <= baseline - mcid / 2 or (slope is not None and slope * cp.slope_long_days <= -mcid / 2)
    )
    if improving and baseline is not None:
        slope_week = round(7.0 * slope, 2) if slope is not None else None
        detail = (
            f"smoothed index {fmt(baseline)} -> {fmt(round(sym.ewma, 1))} (index MCID {fmt(mcid)}, slope "
            f"{fmt(slope_week) if slope_week is not None else 'n/a'} per week)"
        )
        out.append(Finding("improving", (reason("improving", detail),)))
    elif state.slow_item is not None:
        detail = (
            f"{state.slow_item} improving steadily over the last {cp.trend_item_days} days, though by less "
            f"than half an MCID over {cp.plateau_days}: not a plateau"
        )
        out.append(Finding("improving", (reason("improving_slowly", detail),)))
    notes = function_notes(state, patient)
    if notes:
        out.append(Finding(NOTE, tuple(notes)))
    span = last - (sym.first if sym.first is not None else last) + 1
    out.append(
        Finding(
            "trend_not_established",
            (
                reason(
                    "trend_not_established",
                    f"no meaningful change yet over {span} days (plateau needs {cp.plateau_days} days "
                    "without improvement)",
                ),
            ),
        )
    )
    return tuple(out)


DETECTOR: Detector[PlateauState] = Detector("plateau", initial, step, findings)
