"""The detector interface and the helpers shared by the detectors.

A detector is one clinical rule with its own plain, immutable, serialisable state:

- `initial(patient) -> S`: the state before any day;
- `step(state, ctx) -> S`: the state after day `ctx.rec` (days arrive in strictly increasing date
  order; `ctx.now` holds the new states of the detectors stepped earlier the same day, `ctx.prev`
  the whole engine state of the day before). Cost is O(1) in the length of history: states keep
  bounded windows only;
- `findings(state, ctx) -> tuple[Finding, ...]`: what holds as of `ctx.as_of`, each finding with its
  reasons and, where it raises one, the Signal.

Detectors never read the clock, never do I/O and never see free text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.common import Reason
from schemas.trajectory import Signal
from services.scoring.course import Course
from services.scoring.model import DayRecord, PatientProfile
from services.scoring.profile import ClinicalProfile

S = TypeVar("S")

#: Finding code of a note: reasons reported on every assessment, not a candidate for the state.
NOTE = "note"


def zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class Patient:
    """Per-patient constants of a fold: the enrolment profile and what follows from it."""

    profile: PatientProfile
    clinical: ClinicalProfile
    course: Course
    tz: ZoneInfo
    weights: tuple[float, float, float, float]
    enrol_index: float | None  # the enrolment baseline through the index formula, if any

    @staticmethod
    def of(profile: PatientProfile, clinical: ClinicalProfile) -> Patient:
        w = clinical.weights()
        b = profile.baseline
        enrol = index_of(b.pain, b.tingling, b.numbness, b.weakness, w) if b is not None else None
        return Patient(profile, clinical, Course.of(profile, clinical), zone(profile.timezone), w, enrol)


@dataclass(slots=True)
class StepCtx:
    """What a detector's step sees: the day, the patient, and the states stepped before it today."""

    patient: Patient
    rec: DayRecord
    o: int
    prev: Any  # the EngineState before this day
    now: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class AssessCtx:
    """What a detector's findings see: the patient, the event-time clock and every detector state."""

    patient: Patient
    as_of: datetime
    today: int  # ordinal of the local date of as_of
    states: Any  # the EngineState
    slope_short: float | None = None  # robust index slopes per day over the profile's two windows
    slope_long: float | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One condition that holds, named by a code of the precedence table, with its reasons.

    `signal` is the Signal it raises (if any); `raised` the ordinal of the day it was raised, used
    when findings of several detectors merge into one signal (the earliest wins).
    """

    code: str
    reasons: tuple[Reason, ...] = ()
    signal: Signal | None = None
    raised: int | None = None


@dataclass(frozen=True, slots=True)
class Detector(Generic[S]):
    """One detector: a name (its field in EngineState) and its three functions."""

    name: str
    initial: Callable[[Patient], S]
    step: Callable[[S, StepCtx], S]
    findings: Callable[[S, AssessCtx], tuple[Finding, ...]]


# ----- shared helpers ----------------------------------------------------------------------------


def index_of(
    pain: float | None,
    tingling: float | None,
    numbness: float | None,
    weakness: float | None,
    weights: tuple[float, float, float, float],
) -> float | None:
    """0-100 composite: weighted mean of the items present (weights renormalised), times 10, to 0.1.

    Items with weight 0 do not count as present; None when no weighted item was reported.
    """
    num = den = 0.0
    wp, wt, wn, ww = weights
    if pain is not None and wp > 0:
        num += wp * pain
        den += wp
    if tingling is not None and wt > 0:
        num += wt * tingling
        den += wt
    if numbness is not None and wn > 0:
        num += wn * numbness
        den += wn
    if weakness is not None and ww > 0:
        num += ww * weakness
        den += ww
    return round(10.0 * num / den, 1) if den > 0 else None


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def half_window_slope(xs: Sequence[int], ys: Sequence[float]) -> float | None:
    """Robust slope per day: the median of the slopes between each point and the point half the
    window later (pairs i, i + n//2). A Theil-Sen estimator restricted to the n/2 most informative
    pairs: O(n log n) instead of O(n^2), still insensitive to single odd days. None below 2 points."""
    n = len(xs)
    h = n // 2
    if h < 1:
        return None
    slopes = [(ys[i + h] - ys[i]) / (xs[i + h] - xs[i]) for i in range(n - h) if xs[i + h] != xs[i]]
    return median(slopes) if slopes else None


def ols_t(xs: Sequence[int], ys: Sequence[float], floor_sd: float) -> tuple[float, float] | None:
    """Least-squares slope per day and its t statistic (residual SD floored at `floor_sd`)."""
    n = len(xs)
    if n < 3:
        return None
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sxy = 0.0
    for x, y in zip(xs, ys, strict=True):
        dx = x - mx
        sxx += dx * dx
        sxy += dx * (y - my)
    if sxx <= 0:
        return None
    b = sxy / sxx
    ssr = 0.0
    for x, y in zip(xs, ys, strict=True):
        r = y - my - b * (x - mx)
        ssr += r * r
    sd = max(floor_sd, math.sqrt(ssr / (n - 2)))
    return b, b / (sd / math.sqrt(sxx))


def reason(code: str, detail: str) -> Reason:
    """A Reason (the detectors build many; one place to make it cheaper)."""
    return Reason(code=code, detail=detail)


def fmt(x: float) -> str:
    return f"{round(x, 1):g}"


def day_of(o: int) -> date:
    return date.fromordinal(o)


def event_of(rec: DayRecord) -> tuple[datetime | None, str | None]:
    """The event time and id a signal raised on `rec` names: its newest check-in, else its newest
    wearable sample, else its dynamometer sample (None: the assessment's as_of is used)."""
    return (rec.last_recorded_at or rec.last_sample_end or rec.device_grip_recorded_at), rec.last_event_id
