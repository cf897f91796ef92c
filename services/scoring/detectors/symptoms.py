"""The symptom series: index, smoothing, 7-day level, noise and baseline, shared by the detectors.

Stepped first every day. Keeps only bounded windows: the scored days of the last `RECENT_DAYS`
days, the consecutive-day differences of the last 28 days, the first `baseline_days` values and
the last `TAIL` scored days (for the API's daily index). Raises no signal of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from schemas.common import Reason
from services.scoring.detectors.base import (
    NOTE,
    AssessCtx,
    Detector,
    Finding,
    Patient,
    StepCtx,
    fmt,
    half_window_slope,
    index_of,
    median,
    reason,
)

#: Calendar days of scored history kept (reference levels reach 4 + 3*7 + 3 days back).
RECENT_DAYS = 35
#: Scored days kept for the API's per-day index.
TAIL = 28

# A scored day: (ordinal, index, pain, tingling, numbness, weakness, newest check-in POSIX time,
# 7-day level ending that day or None).
Scored = tuple[int, float, float | None, float | None, float | None, float | None, float, float | None]
ITEMS = ("pain", "tingling", "numbness", "weakness")


@dataclass(frozen=True, slots=True)
class SymptomState:
    n: int = 0  # scored days so far
    first: int | None = None  # ordinal of the first scored day
    last: int | None = None  # ordinal of the newest scored day
    scored_today: bool = False  # whether the newest stepped day was scored
    head: tuple[float, ...] = ()  # index of the first `baseline_days` scored days
    item_head: tuple[tuple[float, ...], ...] = ((), (), (), ())  # first values of each item
    ewma: float | None = None
    sigma: float = 0.0  # day-to-day noise SD before the newest scored day (0: too few pairs)
    recent: tuple[Scored, ...] = ()
    diffs: tuple[tuple[int, float], ...] = ()  # (ordinal of the later day, |index change|)
    tail: tuple[tuple[date, float], ...] = ()  # (local date, index) of the last TAIL scored days

    def baseline(self, patient: Patient) -> tuple[float | None, str]:
        """The baseline index and where it comes from."""
        if patient.enrol_index is not None:
            return patient.enrol_index, "enrolment baseline"
        if not self.head:
            return None, "no data"
        return round(median(self.head), 1), f"median of first {len(self.head)} scored days"

    def item_baseline(self, patient: Patient, k: int) -> float | None:
        b = patient.profile.baseline
        value = getattr(b, ITEMS[k]) if b is not None else None
        if value is not None:
            return float(value)
        vals = self.item_head[k]
        return median(vals) if vals else None

    @property
    def x(self) -> float | None:
        """The index of the newest stepped day, None if that day had no check-in."""
        return self.recent[-1][1] if self.scored_today and self.recent else None

    @property
    def level(self) -> float | None:
        """The 7-day level of the newest scored day."""
        return self.recent[-1][7] if self.recent else None

    def level_near(self, o: int, slack: int = 2) -> float | None:
        """The 7-day level of the newest scored day on or before `o` and at most `slack` days before it."""
        for e in reversed(self.recent):
            if e[0] <= o:
                return e[7] if e[0] >= o - slack else None
        return None

    def level_between(self, lo: int, hi: int, min_days: int) -> float | None:
        """Median index of the scored days with ordinals in [lo, hi] (None below `min_days`)."""
        vals = [e[1] for e in self.recent if lo <= e[0] <= hi]
        return median(vals) if len(vals) >= min_days else None

    def values_since(self, lo: int) -> list[float]:
        return [e[1] for e in self.recent if e[0] >= lo]


def initial(patient: Patient) -> SymptomState:
    return SymptomState()


def step(state: SymptomState, ctx: StepCtx) -> SymptomState:
    rec, cp, o = ctx.rec, ctx.patient.clinical, ctx.o
    x = index_of(rec.pain, rec.tingling, rec.numbness, rec.weakness, ctx.patient.weights)
    if x is None:
        return SymptomState(
            state.n,
            state.first,
            state.last,
            False,
            state.head,
            state.item_head,
            state.ewma,
            state.sigma,
            state.recent,
            state.diffs,
            state.tail,
        )
    # Noise before today: robust SD of consecutive-day changes over the noise window.
    lo = o - cp.noise_window_days
    diffs = state.diffs
    diffs = diffs[_first_at(diffs, lo) :]
    sigma = 1.4826 * median([d for _, d in diffs]) / _SQRT2 if len(diffs) >= cp.noise_min_pairs else 0.0
    if diffs and diffs[0][0] < lo + 1:
        diffs = diffs[1:]
    prev = state.recent[-1] if state.recent else None
    if prev is not None and o - prev[0] <= 3:
        diffs = (*diffs, (o, abs(x - prev[1])))
    recent = state.recent
    recent = recent[_first_at(recent, o - RECENT_DAYS + 1) :]
    lv_vals = [x]
    bound = o - cp.level_window_days
    for e in reversed(recent):
        if e[0] <= bound:
            break
        lv_vals.append(e[1])
    level = median(lv_vals) if len(lv_vals) >= cp.level_min_days else None
    ts = rec.last_recorded_at.timestamp() if rec.last_recorded_at is not None else float(o) * 86400.0
    recent = (*recent, (o, x, rec.pain, rec.tingling, rec.numbness, rec.weakness, ts, level))
    if state.ewma is None or prev is None:
        ewma = x
    else:
        ewma = state.ewma + (1.0 - (1.0 - cp.ewma_alpha) ** (o - prev[0])) * (x - state.ewma)
    n_base = cp.baseline_days
    head = state.head if len(state.head) >= n_base else (*state.head, x)
    item_head = state.item_head
    if (
        len(item_head[0]) < n_base
        or len(item_head[1]) < n_base
        or len(item_head[2]) < n_base
        or len(item_head[3]) < n_base
    ):
        values = (rec.pain, rec.tingling, rec.numbness, rec.weakness)
        item_head = tuple(
            (*h, float(v)) if v is not None and len(h) < n_base else h for v, h in zip(values, item_head, strict=True)
        )
    tail = (*state.tail[-(TAIL - 1) :], (rec.date, x))
    return SymptomState(
        state.n + 1,
        state.first if state.first is not None else o,
        o,
        True,
        head,
        item_head,
        ewma,
        sigma,
        recent,
        diffs,
        tail,
    )


def findings(state: SymptomState, ctx: AssessCtx) -> tuple[Finding, ...]:
    """Notes (no state of their own): the trend, the baseline and each item against its baseline."""
    if state.last is None:
        return ()
    patient, cp = ctx.patient, ctx.patient.clinical
    reasons: list[Reason] = []
    long, short = ctx.slope_long, ctx.slope_short
    if long is not None or short is not None:
        reasons.append(
            reason(
                "trend",
                f"robust slope {fmt(7 * short) if short is not None else 'n/a'} per week over "
                f"{cp.slope_short_days} days, {fmt(7 * long) if long is not None else 'n/a'} over "
                f"{cp.slope_long_days} days",
            )
        )
    baseline, src = state.baseline(patient)
    if baseline is not None:
        mcid = cp.index_mcid(baseline)
        reasons.append(reason("baseline", f"baseline index {fmt(baseline)} ({src}), index MCID {fmt(mcid)}"))
    span = state.last - (state.first if state.first is not None else state.last)
    lo = state.last - cp.level_window_days + 1
    week = state.recent[_first_at(state.recent, lo) :]
    for k, name in enumerate(ITEMS):
        base = state.item_baseline(patient, k)
        recent = [v for e in week if (v := e[2 + k]) is not None]
        if base is None or not recent:
            continue
        cur = median(recent)
        mcid = max(cp.item_mcid, cp.item_mcid_pct / 100.0 * base)
        change = cur - base
        tail = f"{name} {fmt(base)} -> {fmt(cur)} over {span} days (MCID {fmt(mcid)})"
        if change <= -mcid:
            reasons.append(reason(f"{name}_improved_mcid", tail))
        elif change >= max(1.0, mcid * cp.deterioration_ratio):
            reasons.append(reason(f"{name}_worsened", tail))
        else:
            reasons.append(reason(f"{name}_unchanged", tail))
    return (Finding(NOTE, tuple(reasons)),)


def slope(state: SymptomState, days: int, min_points: int) -> float | None:
    """Robust index slope per day over the `days` days ending on the newest scored day (None with
    fewer than `min_points` scored days)."""
    if state.last is None:
        return None
    return _slope(state.recent, state.last, days, min_points)


def _slope(recent: tuple[Scored, ...], last: int, days: int, min_points: int) -> float | None:
    pts = recent[_first_at(recent, last - days + 1) :]
    if len(pts) < min_points:
        return None
    return half_window_slope([e[0] for e in pts], [e[1] for e in pts])


def _first_at(seq: tuple[tuple[int, object], ...] | tuple[Scored, ...], bound: int) -> int:
    """Index of the first entry whose ordinal is >= bound (entries in ordinal order)."""
    i = 0
    n = len(seq)
    while i < n and seq[i][0] < bound:
        i += 1
    return i


_SQRT2 = math.sqrt(2.0)


DETECTOR: Detector[SymptomState] = Detector("symptoms", initial, step, findings)
