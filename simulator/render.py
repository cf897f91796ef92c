"""Rendering one simulated patient's latent course into contract payloads.

`Ctx` is the patient's drawn circumstances (condition, treatment, time zone, timing of the
procedure, reporting habits, reporter noise, therapy sessions); `Spec` is what an archetype decides
(the latent symptom curves and events, and the ground truth). `build_checkins` and
`build_activity` sample the latent course the way a patient and a wearable would. Pure: every
random draw comes from `ctx.rng`, nothing reads the clock.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from schemas.common import INSTRUMENT_RANGES, FunctionInstrument

SYMPTOMS: tuple[str, ...] = ("pain", "tingling", "numbness", "weakness")

# A check-in is never recorded closer than this to `end` (keeps every recorded_at in the past).
END_MARGIN = timedelta(minutes=2)

Curve = Callable[[str, float], float]
Delta = Callable[[float], dict[str, float]]


def clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def iso(dt: datetime, tz: ZoneInfo) -> str:
    """RFC 3339 with the patient's local offset, whole seconds."""
    return dt.astimezone(tz).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------------------------
# Condition profiles


@dataclass(frozen=True, slots=True)
class ConditionProfile:
    condition: str
    weight: float
    treatments: tuple[tuple[str, float], ...]
    sides: tuple[str, ...]
    instruments: tuple[str, ...]
    upper_limb: bool
    red_flags: tuple[str, ...]
    qualities: tuple[str, ...]
    steps_range: tuple[int, int]


# --------------------------------------------------------------------------------------------
# Per-patient habits and reporting noise


@dataclass(frozen=True, slots=True)
class Habits:
    """How one patient uses the app (drawn once per patient)."""

    slot: str  # morning | midday | evening | mixed
    hours: tuple[int, int]  # first check-in of the day: local hour range, inclusive
    second_p: float  # probability of a second check-in the same day
    miss_p: float  # probability of skipping a day
    max_run: int  # at most this many skipped days in a row (outside a disengagement gap)
    weekend_miss: float  # extra skip probability on Saturdays and Sundays
    late_p: float  # probability that a check-in is uploaded 1-3 days late
    p_worst: float
    p_quality: float
    p_night: float
    p_analgesic: float
    p_home: float
    p_red_empty: float
    p_notes: float
    p_items: tuple[float, float, float]  # tingling, numbness, weakness reported
    p_spreading_false: float
    p_grip: float
    p_function: float
    function_dow: int

    def describe(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "hours": list(self.hours),
            "second_checkin_p": round(self.second_p, 3),
            "miss_p": round(self.miss_p, 3),
            "max_missed_run": self.max_run,
            "weekend_miss": round(self.weekend_miss, 3),
            "late_upload_p": round(self.late_p, 3),
            "grip_p": round(self.p_grip, 3),
        }


def draw_habits(rng: random.Random) -> Habits:
    slot = rng.choices(("morning", "midday", "evening", "mixed"), weights=(5, 1.5, 2.5, 1))[0]
    lo, hi = {"morning": (5, 10), "midday": (11, 15), "evening": (17, 22), "mixed": (6, 21)}[slot]
    a = rng.randint(lo, hi - 1)
    b = rng.randint(a + 1, hi) if slot != "mixed" else hi
    return Habits(
        slot=slot,
        hours=(a, b),
        second_p=rng.choice((0.0, rng.uniform(0.05, 0.35))),
        miss_p=rng.choice((rng.uniform(0.0, 0.08), rng.uniform(0.08, 0.2), rng.uniform(0.2, 0.35))),
        max_run=rng.choice((1, 2, 2)),
        weekend_miss=rng.choice((0.0, rng.uniform(0.0, 0.3))),
        late_p=rng.uniform(0.0, 0.06),
        p_worst=rng.uniform(0.3, 1.0),
        p_quality=rng.uniform(0.2, 0.9),
        p_night=rng.uniform(0.3, 1.0),
        p_analgesic=rng.uniform(0.2, 0.9),
        p_home=rng.uniform(0.3, 0.95),
        p_red_empty=rng.uniform(0.2, 0.8),
        p_notes=rng.uniform(0.0, 0.2),
        p_items=(rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0), rng.uniform(0.6, 1.0)),
        p_spreading_false=rng.uniform(0.3, 0.9),
        p_grip=rng.uniform(0.25, 0.9),
        p_function=rng.uniform(0.6, 1.0),
        function_dow=rng.randrange(7),
    )


@dataclass(slots=True)
class Reporter:
    """Reporting noise of one patient: latent value -> the integer they type.

    `gaussian`: N(0, sd) with AR(1) memory `ar` (people anchor on yesterday's answer) and a small
    per-item bias; `noisy`: a discrete error of up to ±2 points. Both add rare outliers (±2-3).
    """

    kind: Literal["gaussian", "noisy"]
    sd: float
    ar: float
    outlier_p: float
    bias: dict[str, float]
    err: dict[str, float] = field(default_factory=dict)

    def report(self, s: str, lv: float, rng: random.Random) -> int:
        if self.kind == "noisy":
            e = float(rng.choices((-2, -1, 0, 1, 2), weights=(1, 2, 3, 2, 1))[0])
        else:
            prev = self.err.get(s, 0.0)
            e = self.ar * prev + math.sqrt(1.0 - self.ar * self.ar) * rng.gauss(0.0, self.sd)
            e = clamp(e, -2.5 * self.sd, 2.5 * self.sd)
            self.err[s] = e
            e += self.bias.get(s, 0.0)
        if rng.random() < self.outlier_p:
            e += rng.choice((-3, -2, 2, 3))
        return int(clamp(round(lv + e), 0, 10))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sd": round(self.sd, 3),
            "ar": round(self.ar, 3),
            "outlier_p": round(self.outlier_p, 4),
            "bias": {s: round(v, 2) for s, v in self.bias.items()},
        }


def draw_reporter(rng: random.Random, noisy_p: float) -> Reporter:
    kind: Literal["gaussian", "noisy"] = "noisy" if rng.random() < noisy_p else "gaussian"
    return Reporter(
        kind=kind,
        sd=rng.uniform(0.2, 0.8),
        ar=rng.choice((0.0, rng.uniform(0.0, 0.5))),
        outlier_p=rng.choice((0.0, rng.uniform(0.0, 0.02))),
        bias={s: rng.uniform(-0.3, 0.3) for s in SYMPTOMS},
    )


# --------------------------------------------------------------------------------------------
# Context and spec


@dataclass(slots=True)
class Ctx:
    """One patient's drawn circumstances. Times `t` are days since local midnight of day 0."""

    rng: random.Random
    archetype: str
    patient_id: str
    profile: ConditionProfile
    treatment: str
    tz: ZoneInfo
    tz_name: str
    start_date: date
    n_days: int
    end: datetime
    t0: datetime
    postop: bool
    proc_date: date | None
    t_proc: float | None  # simulated time of the procedure (negative: before day 0)
    onset_date: date
    pre: dict[str, float]
    start: dict[str, float]
    floor: dict[str, float]
    habits: Habits
    reporter: Reporter
    pt_ends: list[datetime] = field(default_factory=list)
    pt_intensity: dict[datetime, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def t_of(self, instant: datetime) -> float:
        return (instant - self.t0).total_seconds() / 86400.0

    def at(self, t: float) -> datetime:
        return (self.t0 + timedelta(days=t)).astimezone(UTC)

    def local(self, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
        """The instant (in UTC) of a local wall-clock time on history day `day`.

        Instants are kept in UTC so that arithmetic is elapsed time, also across DST changes.
        """
        wall = datetime.combine(self.start_date + timedelta(days=day), time(hour, minute, second), tzinfo=self.tz)
        return wall.astimezone(UTC)

    def midnight(self, day: int) -> datetime:
        return self.local(day, 0)

    def t_since_anchor(self, days: float) -> float:
        """Simulated time `days` after the procedure, or after symptom onset without one."""
        if self.t_proc is not None:
            return self.t_proc + days
        return (self.onset_date - self.start_date).days + days


@dataclass(slots=True)
class Spec:
    """What an archetype function decides; rendering into payloads is shared."""

    base: Curve
    deltas: list[Delta] = field(default_factory=list)
    expected: frozenset[str] = frozenset()
    tolerated: frozenset[str] = frozenset()
    onset_from: float | None = None  # onset = first check-in at or after this simulated time
    onset_fixed: datetime | None = None  # onset given directly (activity decline)
    onset_last_before_gap: bool = False  # onset = last check-in before the gap (disengagement)
    earliest_from: float | None = None  # expected-kind alerts before this time are premature
    due_days: float | None = None  # timely detection: event_time <= onset + due_days
    due_from: float | None = None  # ... or <= this simulated time (takes precedence)
    spreading_from: float | None = None
    red_flag: tuple[int, str] | None = None
    gap: tuple[int, int] | None = None  # days [first, stop) without check-ins
    steps_factor: Callable[[int], float | None] | None = None
    contradict_p: float = 0.0
    force_days: set[int] = field(default_factory=set)
    wearable_required: bool = False
    notes: tuple[str, ...] = ()
    notes_from: float = 0.0
    grip: Callable[[float], float] | None = None  # kg at time t; default: follows weakness
    grip_pre: float | None = None  # pre-treatment grip (enrolment baseline); default drawn
    function_delta: Callable[[float], float] | None = None  # extra function severity (0-1)
    baseline_p: float | None = None  # probability of an enrolment baseline (default 0.6)
    repair_distance_mm: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def latent(spec: Spec, t: float) -> dict[str, float]:
    out = {s: spec.base(s, t) for s in SYMPTOMS}
    for d in spec.deltas:
        for s, v in d(t).items():
            out[s] += v
    return {s: clamp(v, 0.0, 10.0) for s, v in out.items()}


@dataclass(frozen=True, slots=True)
class Grip:
    """Grip channel of an upper-limb patient: pre-treatment value and the latent curve."""

    pre: float
    best: float
    curve: Callable[[float], float] | None

    def value(self, ctx: Ctx, lv: dict[str, float], t: float) -> float:
        if self.curve is not None:
            return self.curve(t)
        # Grip follows weakness: the pre-treatment value at the pre-treatment weakness, `best` near
        # none, at most 4 kg per weakness point (so that a small wobble is not a grip drop).
        per_point = min(4.0, (self.best - self.pre) / max(ctx.pre["weakness"], 1.0))
        return clamp(self.pre + per_point * (ctx.pre["weakness"] - lv["weakness"]), 1.0, self.best)


def function_score(instrument: str, lv: dict[str, float], rng: random.Random, extra: float = 0.0) -> float:
    severity = (0.4 * lv["pain"] + 0.25 * lv["tingling"] + 0.2 * lv["numbness"] + 0.15 * lv["weakness"]) / 10.0
    severity = clamp(severity + extra + rng.gauss(0.0, 0.03), 0.0, 1.0)
    low, high, higher_worse = INSTRUMENT_RANGES[FunctionInstrument(instrument)]
    if instrument == "promis_pi":
        score = 40.0 + 35.0 * severity
    elif higher_worse:
        score = low + (high - low) * severity
    else:
        score = high - (high - low) * severity
    digits = 2 if high - low <= 10 else 1
    return round(clamp(score, low, high), digits)


# --------------------------------------------------------------------------------------------
# Physical therapy


def schedule_pt(ctx: Ctx, min_per_week: int = 0) -> None:
    """Therapy on fixed weekdays at a habitual local time; some sessions skipped.

    0-4 sessions a week (some patients have none), ending between 09:00 and 19:45 local.
    """
    rng = ctx.rng
    per_week = max(min_per_week, rng.choices((0, 1, 2, 3, 4), weights=(1, 1.5, 4, 3.5, 1))[0])
    ctx.params["pt"] = {"per_week": per_week}
    if per_week == 0:
        return
    days = sorted(rng.sample(range(6), per_week))  # Monday=0 .. Saturday=5
    hour_lo = rng.randint(9, 17)
    hour_hi = min(19, hour_lo + rng.randint(0, 3))
    skip = rng.uniform(0.03, 0.2)
    weights = (rng.uniform(1, 4), rng.uniform(2, 6), rng.uniform(0.5, 3))
    first = rng.randint(1, 6)
    ctx.params["pt"].update({"weekdays": days, "hours": [hour_lo, hour_hi], "skip_p": round(skip, 3)})
    for d in range(first, ctx.n_days):
        day = ctx.start_date + timedelta(days=d)
        if day.weekday() not in days or rng.random() < skip:
            continue
        ended = ctx.local(d, rng.randint(hour_lo, hour_hi), rng.choice((0, 15, 30, 45)))
        if ended > ctx.end - timedelta(hours=1):
            continue
        ctx.pt_ends.append(ended)
        ctx.pt_intensity[ended] = rng.choices(("light", "moderate", "vigorous"), weights=weights)[0]


def add_session(ctx: Ctx, day: int, intensity: str) -> datetime:
    """A session on history day `day` (kept if one is already there), with `intensity`."""
    existing = [e for e in ctx.pt_ends if e.astimezone(ctx.tz).date() == ctx.start_date + timedelta(days=day)]
    if existing:
        e = existing[0]
    else:
        e = ctx.local(day, ctx.rng.randint(10, 18), ctx.rng.choice((0, 15, 30, 45)))
        ctx.pt_ends.append(e)
        ctx.pt_ends.sort()
    ctx.pt_intensity[e] = intensity
    return e


# --------------------------------------------------------------------------------------------
# Check-ins


def missing_days(ctx: Ctx, spec: Spec) -> set[int]:
    """Days without any check-in: per the patient's habits, plus the disengagement gap."""
    rng = ctx.rng
    h = ctx.habits
    missing: set[int] = set()
    run = 0
    for d in range(1, ctx.n_days):
        weekday = (ctx.start_date + timedelta(days=d)).weekday()
        p = h.miss_p + (h.weekend_miss if weekday >= 5 else 0.0)
        if d in spec.force_days or run >= h.max_run or rng.random() >= p:
            run = 0
            continue
        missing.add(d)
        run += 1
    if spec.gap is not None:
        first, stop = spec.gap
        missing |= set(range(first, min(stop, ctx.n_days)))
    for d in spec.force_days:
        missing.discard(d)
    return missing


@dataclass(slots=True)
class _Draft:
    at: datetime
    day: int
    contradictory: bool = False  # a second same-day report that contradicts the first


def _draw_time(ctx: Ctx, day: int, hours: tuple[int, int]) -> datetime:
    rng = ctx.rng
    return ctx.local(day, rng.randint(hours[0], hours[1]), rng.randrange(60), rng.randrange(60))


def build_checkins(
    ctx: Ctx,
    spec: Spec,
    grip: Grip | None,
    instrument: str,
    common: tuple[str, ...],
    red_notes: dict[str, str],
) -> tuple[list[tuple[datetime, dict[str, Any]]], str | None, datetime | None]:
    """Returns (recorded_at, payload) in recorded order, plus the red-flag event id and time.

    `grip` is None when the patient has no grip channel or measures it on a dynamometer.
    """
    rng = ctx.rng
    h = ctx.habits
    missing = missing_days(ctx, spec)
    drafts: list[_Draft] = []
    latest = ctx.end - END_MARGIN
    for d in range(ctx.n_days):
        if d in missing:
            continue
        first = _draw_time(ctx, d, h.hours)
        if first <= latest:
            drafts.append(_Draft(first, d))
            if spec.contradict_p and rng.random() < spec.contradict_p:
                second = first + timedelta(minutes=rng.randint(60, 240))
                if second <= latest and second.astimezone(ctx.tz).date() == first.astimezone(ctx.tz).date():
                    drafts.append(_Draft(second, d, contradictory=True))
        if h.second_p and rng.random() < h.second_p:
            lo = min(23, max(h.hours[1] + 2, 12))
            extra = _draw_time(ctx, d, (lo, min(23, lo + 4)))
            if extra <= latest and extra > first:
                drafts.append(_Draft(extra, d))
    drafts.sort(key=lambda x: x.at)

    pt_queue = sorted(ctx.pt_ends)
    pt_i = 0
    out: list[tuple[datetime, dict[str, Any]]] = []
    reported_pain: dict[int, int] = {}
    rf_event: str | None = None
    rf_at: datetime | None = None
    rf_done = False
    rep = ctx.reporter
    for draft in drafts:
        at = draft.at
        t = ctx.t_of(at)
        lv = latent(spec, t)
        pain = rep.report("pain", lv["pain"], rng)
        if not draft.contradictory:
            reported_pain[draft.day] = pain
        elif draft.day in reported_pain:
            first_pain = reported_pain[draft.day]
            pain = first_pain - rng.randint(3, 4) if first_pain >= 5 else first_pain + rng.randint(3, 4)
            pain = int(clamp(pain, 0, 10))
        event_id = new_uuid(rng)
        item: dict[str, Any] = {
            "event_id": event_id,
            "patient_id": ctx.patient_id,
            "recorded_at": iso(at, ctx.tz),
        }
        pain_obj: dict[str, Any] = {"current": pain}
        if rng.random() < h.p_worst:
            pain_obj["worst_24h"] = int(clamp(pain + rng.choice((0, 1, 1, 2)), 0, 10))
        if pain > 0 and rng.random() < h.p_quality:
            pain_obj["quality"] = sorted(rng.sample(ctx.profile.qualities, rng.randint(1, 2)))
        item["pain"] = pain_obj
        for s, p_present in zip(("tingling", "numbness", "weakness"), h.p_items, strict=True):
            if rng.random() < p_present:
                v = rep.report(s, lv[s], rng)
                if draft.contradictory:
                    v = int(clamp(v + (pain - reported_pain.get(draft.day, pain)) // 2, 0, 10))
                item[s] = v
        spreading = spec.spreading_from is not None and t >= spec.spreading_from
        if spreading:
            item["numbness_spreading"] = True
            item["numbness"] = max(int(item.get("numbness", 0)), rep.report("numbness", lv["numbness"], rng))
        elif rng.random() < h.p_spreading_false:
            item["numbness_spreading"] = False
        if rng.random() < h.p_night:
            item["night_wakings"] = int(clamp(round(lv["tingling"] / 2.5 + rng.gauss(0, 0.6)), 0, 20))
        if grip is not None and rng.random() < h.p_grip:
            g = grip.value(ctx, lv, t) + rng.gauss(0, 0.8)
            item["grip_strength_kg"] = round(clamp(g, 1.0, 80.0), 1)
        local_day = (ctx.start_date + timedelta(days=draft.day)).weekday()
        if local_day == h.function_dow and not draft.contradictory and rng.random() < h.p_function:
            worse = spec.function_delta(t) if spec.function_delta is not None else 0.0
            item["function"] = {"instrument": instrument, "score": function_score(instrument, lv, rng, worse)}
        if rng.random() < h.p_analgesic:
            item["analgesic_doses_24h"] = int(clamp(round(lv["pain"] / 2.5 + rng.gauss(0, 0.5)), 0, 8))
        # A PT session since the previous check-in (the latest one, if several).
        session: datetime | None = None
        while pt_i < len(pt_queue) and pt_queue[pt_i] < at:
            session = pt_queue[pt_i]
            pt_i += 1
        if session is not None:
            item["pt_session"] = {"ended_at": iso(session, ctx.tz), "intensity": ctx.pt_intensity[session]}
        if rng.random() < h.p_home:
            item["home_exercises_done"] = rng.random() < 0.8
        if spec.red_flag is not None and not rf_done and draft.day == spec.red_flag[0] and not draft.contradictory:
            flag = spec.red_flag[1]
            item["red_flags"] = [flag]
            item["notes"] = red_notes[flag]
            rf_event, rf_at, rf_done = event_id, at.astimezone(UTC), True
        else:
            if rng.random() < h.p_red_empty:
                item["red_flags"] = []
            if rng.random() < h.p_notes:
                pool = spec.notes if spec.notes and t >= spec.notes_from and rng.random() < 0.6 else common
                item["notes"] = rng.choice(pool)
        out.append((at.astimezone(UTC), item))
    return out, rf_event, rf_at


# --------------------------------------------------------------------------------------------
# Wearable and dynamometer


def _sync(
    ctx: Ctx,
    samples: list[tuple[datetime, dict[str, Any]]],
    device: dict[str, str],
    interval_h: tuple[float, float],
) -> list[tuple[datetime, dict[str, Any]]]:
    """Group (end instant, sample) into sync bursts; returns (sync instant, batch)."""
    rng = ctx.rng
    samples.sort(key=lambda x: x[0])
    batches: list[tuple[datetime, dict[str, Any]]] = []
    sync = ctx.t0 + timedelta(hours=rng.uniform(6.0, 60.0))
    i = 0
    while i < len(samples):
        sync_utc = sync.astimezone(UTC)
        if sync_utc > ctx.end:
            break
        chunk: list[dict[str, Any]] = []
        while i < len(samples) and samples[i][0] <= sync_utc:
            chunk.append(samples[i][1])
            i += 1
        if chunk:
            batches.append((sync_utc, {"patient_id": ctx.patient_id, "device": dict(device), "samples": chunk}))
        sync = sync + timedelta(hours=rng.uniform(*interval_h))
    return batches


def build_activity(ctx: Ctx, spec: Spec, steps_base: float) -> list[tuple[datetime, dict[str, Any]]]:
    """Daily wearable samples synced in bursts (every 0.5-4 days, per patient)."""
    rng = ctx.rng
    device = {"id": f"watch-{rng.getrandbits(32):08x}", "kind": rng.choice(("wrist", "wrist", "ring", "phone"))}
    not_worn = rng.uniform(0.0, 0.08)
    trend = rng.uniform(0.0, 0.3)
    day_sd = rng.uniform(0.08, 0.2)
    weekend = rng.uniform(0.75, 1.1)
    interval = rng.choice(((12.0, 36.0), (20.0, 96.0), (48.0, 96.0)))
    ctx.params["wearable"] = {
        "device": device["kind"],
        "not_worn_p": round(not_worn, 3),
        "steps_base": int(steps_base),
        "sync_hours": list(interval),
    }
    samples: list[tuple[datetime, dict[str, Any]]] = []  # (end instant, sample)
    hr_base = rng.uniform(56.0, 78.0)
    for d in range(ctx.n_days):
        if rng.random() < not_worn:
            continue
        day_start = ctx.midnight(d)
        day_end = ctx.midnight(d + 1)
        weekday = (ctx.start_date + timedelta(days=d)).weekday()
        factor = spec.steps_factor(d) if spec.steps_factor is not None else None
        if factor is None:
            factor = 0.9 + trend * min(1.0, d / ctx.n_days)
        noise = math.exp(rng.gauss(0.0, day_sd))
        steps = int(steps_base * factor * (weekend if weekday >= 5 else 1.0) * noise)
        active = int(clamp(steps / 140.0 + rng.gauss(0, 4), 0, 600))
        for kind, value, start, stop in (
            ("steps", steps, day_start, day_end),
            ("active_minutes", active, day_start, day_end),
        ):
            samples.append(
                (
                    stop.astimezone(UTC),
                    {
                        "event_id": new_uuid(rng),
                        "type": kind,
                        "start": iso(start, ctx.tz),
                        "end": iso(stop, ctx.tz),
                        "value": value,
                    },
                )
            )
        if d >= 1:
            bed = ctx.local(d - 1, 21, 0) + timedelta(minutes=rng.randint(0, 210))
            asleep = rng.randint(300, 500)
            interruptions = rng.randint(0, 4)
            wake = bed + timedelta(minutes=asleep + 5 * interruptions + rng.randint(5, 30))
            if wake > ctx.end:
                continue
            for kind, value in (("sleep_minutes", asleep), ("sleep_interruptions", interruptions)):
                samples.append(
                    (
                        wake.astimezone(UTC),
                        {
                            "event_id": new_uuid(rng),
                            "type": kind,
                            "start": iso(bed, ctx.tz),
                            "end": iso(wake, ctx.tz),
                            "value": value,
                        },
                    )
                )
            if rng.random() < 0.5:
                samples.append(
                    (
                        wake.astimezone(UTC),
                        {
                            "event_id": new_uuid(rng),
                            "type": "resting_heart_rate",
                            "start": iso(bed, ctx.tz),
                            "end": iso(wake, ctx.tz),
                            "value": round(hr_base + rng.gauss(0, 2.0), 1),
                        },
                    )
                )
    return _sync(ctx, samples, device, interval)


def build_dynamometer(ctx: Ctx, spec: Spec, grip: Grip) -> list[tuple[datetime, dict[str, Any]]]:
    """Grip measured on a connected dynamometer 2-6 times a week, synced through the phone."""
    rng = ctx.rng
    device = {"id": f"dyn-{rng.getrandbits(32):08x}", "kind": "dynamometer"}
    per_week = rng.randint(2, 6)
    ctx.params["dynamometer"] = {"per_week": per_week}
    samples: list[tuple[datetime, dict[str, Any]]] = []
    for d in range(ctx.n_days):
        if rng.random() >= per_week / 7.0:
            continue
        at = ctx.local(d, rng.randint(8, 20), rng.randrange(60), rng.randrange(60))
        if at > ctx.end - END_MARGIN:
            continue
        lv = latent(spec, ctx.t_of(at))
        value = round(clamp(grip.value(ctx, lv, ctx.t_of(at)) + rng.gauss(0, 0.6), 1.0, 80.0), 1)
        samples.append(
            (
                at,
                {
                    "event_id": new_uuid(rng),
                    "type": "grip_strength_kg",
                    "start": iso(at, ctx.tz),
                    "end": iso(at, ctx.tz),
                    "value": value,
                },
            )
        )
    return _sync(ctx, samples, device, (2.0, 30.0))
