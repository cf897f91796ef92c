"""Seeded clinical scenarios for the engine tests: each a patient built from a random draw of its
parameters (curve shapes, rates, noise, missed days, check-in times, timing of events), never one
hand-picked curve.

A case is the enrolment profile, the patient's local days (aggregated from check-ins as the shell
does) and the scenario's ground truth. `live(case)` replays it as the live stack does: each day
stepped into the incremental engine and assessed as of its newest check-in.

Item noise: typical reporters N(0, 0.45) clamped to +-1 before rounding; noisy reporters +-2 a day
(-2..2 with weights 1, 2, 3, 2, 1).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas.trajectory import Signal, SignalCode
from services.scoring.daily import aggregate_day
from services.scoring.engine import Engine
from services.scoring.model import Assessment, Baseline, CheckinObs, DayRecord, PatientProfile

Levels = dict[str, float]
Latent = Callable[[float], Levels]  # days since t0 -> item levels (0-10)
ITEMS = ("pain", "tingling", "numbness", "weakness")
ZONES = ("UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Sydney")
#: Signals that open an alert of medium severity or above (alerts maps them to kinds).
ALERTING = frozenset(
    {
        SignalCode.red_flag,
        SignalCode.regression,
        SignalCode.spreading_symptoms,
        SignalCode.persistent_flare,
        SignalCode.plateau,
    }
)
HIGH = frozenset({SignalCode.red_flag, SignalCode.regression, SignalCode.spreading_symptoms})


@dataclass
class Case:
    name: str
    profile: PatientProfile
    days: list[DayRecord]
    t0: datetime  # local midnight of day 0 (the procedure or the start of care), UTC
    truth: dict[str, Any] = field(default_factory=dict)

    def day(self, n: float) -> date:
        return (self.t0 + timedelta(days=n)).astimezone(ZoneInfo(self.profile.timezone)).date()


def clamp(x: float, lo: float = 0.0, hi: float = 10.0) -> float:
    return lo if x < lo else hi if x > hi else x


def report(level: float, rng: random.Random, noisy: bool) -> int:
    if noisy:
        return int(clamp(round(level) + rng.choices((-2, -1, 0, 1, 2), weights=(1, 2, 3, 2, 1))[0]))
    return int(clamp(round(level + clamp(rng.gauss(0.0, 0.45), -1.0, 1.0))))


def build(
    rng: random.Random,
    name: str,
    *,
    condition: str,
    treatment: str,
    latent: Latent,
    first_day: int,
    last_day: int,
    pre: Levels | None = None,
    grip: Callable[[float], float] | None = None,
    pt_at: list[float] | None = None,
    noisy: bool = False,
    missing_p: float | None = None,
    repair_distance_mm: float | None = None,
    truth: dict[str, Any] | None = None,
    enrol_p: float = 0.5,
    pre_grip: float | None = None,
) -> Case:
    """A patient whose day 0 is the procedure (procedural treatments) or the start of care.

    `pt_at` are PT session end times in days since t0 (local afternoon); the first check-in after
    a session reports it. Check-ins on days first_day..last_day: mostly one a day in the morning
    or evening, sometimes two, some days missed (never more than two in a row).
    """
    zone = rng.choice(ZONES)
    tz = ZoneInfo(zone)
    start = date(2026, 1, 5) + timedelta(days=rng.randrange(60))
    t0 = datetime.combine(start, time(0), tzinfo=tz).astimezone(UTC)
    enrol = pre is not None and rng.random() < enrol_p
    baseline = None
    if enrol and pre is not None:
        baseline = Baseline(
            pain=round(pre["pain"]),
            tingling=round(pre["tingling"]),
            numbness=round(pre["numbness"]),
            weakness=round(pre["weakness"]),
            grip_strength_kg=round(pre_grip, 1) if pre_grip is not None else None,
        )
    procedural = treatment != "conservative"
    profile = PatientProfile(
        patient_id=name,
        condition=condition,
        side="right",
        treatment=treatment,
        timezone=zone,
        procedure_date=start if procedural else None,
        repair_distance_mm=repair_distance_mm,
        baseline=baseline,
    )
    p_missing = missing_p if missing_p is not None else rng.uniform(0.0, 0.12)
    evening_p = rng.uniform(0.0, 0.4)
    sessions = sorted(pt_at or [])
    days: list[DayRecord] = []
    run = 0
    s_i = 0
    seq = 0
    for d in range(first_day, last_day + 1):
        if d > first_day and run < 2 and rng.random() < p_missing:
            run += 1
            continue
        run = 0
        local = start + timedelta(days=d)
        hours = [rng.uniform(18.0, 21.5) if rng.random() < evening_p else rng.uniform(7.0, 9.5)]
        if rng.random() < 0.1:
            hours.append(min(hours[0] + rng.uniform(2.0, 8.0), 23.5))
        obs: list[CheckinObs] = []
        for h in sorted(hours):
            at = datetime.combine(local, time(0), tzinfo=tz).astimezone(UTC) + timedelta(hours=h)
            t = (at - t0).total_seconds() / 86400.0
            lv = latent(t)
            ended: datetime | None = None
            while s_i < len(sessions) and sessions[s_i] < t:
                ended = t0 + timedelta(days=sessions[s_i])
                s_i += 1
            seq += 1
            g = None
            if grip is not None and rng.random() < 0.4:
                g = round(max(1.0, grip(t) + rng.gauss(0.0, 0.8)), 1)
            obs.append(
                CheckinObs(
                    event_id=f"{name}-{seq}",
                    recorded_at=at,
                    received_at=at,
                    pain=report(lv["pain"], rng, noisy),
                    tingling=report(lv["tingling"], rng, noisy),
                    numbness=report(lv["numbness"], rng, noisy),
                    weakness=report(lv["weakness"], rng, noisy),
                    grip_strength_kg=g,
                    pt_session_ended_at=ended,
                    pt_intensity="vigorous" if ended is not None else None,
                )
            )
        days.append(aggregate_day(local, obs, []))
    return Case(name, profile, days, t0, dict(truth or {}))


def pt_schedule(rng: random.Random, first: float, last: float, per_week: int) -> list[float]:
    """PT session end times (days since t0) on fixed weekdays, in the local afternoon."""
    weekdays = sorted(rng.sample(range(5), per_week)) if per_week else []
    out: list[float] = []
    d = math.ceil(first)
    while d <= last:
        if d % 7 in weekdays and rng.random() > 0.1:
            out.append(d + rng.uniform(13.0, 17.5) / 24.0)
        d += 1
    return out


def soreness(sessions: list[float], rng: random.Random) -> Callable[[float], float]:
    """Ordinary post-therapy soreness: under a point of pain, gone within a day and a half."""
    amps = [(s, rng.uniform(0.0, 0.8)) for s in sessions]

    def f(t: float) -> float:
        return sum(a * (1.0 - (t - s) * 24.0 / 36.0) for s, a in amps if 0.0 <= (t - s) * 24.0 <= 36.0)

    return f


def live(case: Case) -> list[Assessment]:
    """Each day stepped and assessed as of its newest event, as the live stack does."""
    eng = Engine.of(case.profile)
    state = eng.initial()
    out: list[Assessment] = []
    for d in case.days:
        state = eng.step(state, d)
        if d.last_recorded_at is not None:
            out.append(eng.assess(state, d.last_recorded_at))
    return out


def first_signal(assessments: list[Assessment], codes: frozenset[SignalCode]) -> Signal | None:
    for a in assessments:
        for s in a.signals:
            if s.code in codes:
                return s
    return None


def alerts(assessments: list[Assessment], codes: frozenset[SignalCode] = ALERTING) -> list[Signal]:
    """Signals that would open an alert: each code counted once per continuous run of assessments."""
    out: list[Signal] = []
    active: set[SignalCode] = set()
    for a in assessments:
        now = {s.code for s in a.signals if s.code in codes}
        out.extend(s for s in a.signals if s.code in now - active)
        active = now
    return out


# ----- scenarios -----------------------------------------------------------------------------------


def _toward(a: float, b: float, frac: float) -> float:
    return a + (b - a) * clamp(frac, 0.0, 1.0)


def slow_improver(rng: random.Random, i: int, noisy: bool = False) -> Case:
    """About 0.4 points better a week in pain (0.3-0.5), other items 0-0.5 a week, for 10-12 weeks
    of conservative care: below one MCID per three weeks, but never flat."""
    condition = rng.choice(("carpal_tunnel", "cubital_tunnel", "cervical_radiculopathy", "lumbar_radiculopathy"))
    start = {
        "pain": rng.uniform(5.5, 7.5),
        "tingling": rng.uniform(3.0, 6.0),
        "numbness": rng.uniform(2.5, 6.0),
        "weakness": rng.uniform(1.0, 3.0),
    }
    rates = {
        "pain": rng.uniform(0.3, 0.5),
        "tingling": rng.uniform(0.0, 0.5),
        "numbness": rng.uniform(0.0, 0.4),
        "weakness": rng.uniform(0.0, 0.2),
    }
    n_days = rng.randint(70, 84)
    sessions = pt_schedule(rng, 1, n_days, rng.choice((0, 2, 2, 3)))
    sore = soreness(sessions, rng)

    def latent(t: float) -> Levels:
        lv = {k: max(0.5, start[k] - rates[k] * t / 7.0) for k in ITEMS}
        lv["pain"] += sore(t)
        return lv

    return build(
        rng,
        f"slow-{i}",
        condition=condition,
        treatment="conservative",
        latent=latent,
        first_day=0,
        last_day=n_days,
        pre={k: start[k] for k in ITEMS},
        pt_at=sessions,
        noisy=noisy,
        truth={"rates": rates},
    )


def stall(rng: random.Random, i: int, noisy: bool = False) -> Case:
    """Improvement from the pre-treatment level over 2-3 weeks, then flat at moderate symptoms (pain
    3-4, tingling 2-3) for 5+ weeks: the 21st flat day falls 5-6 weeks after the procedure/onset."""
    condition, treatment = rng.choice(
        (
            ("carpal_tunnel", "surgical_decompression"),
            ("cubital_tunnel", "surgical_decompression"),
            ("carpal_tunnel", "conservative"),
            ("cubital_tunnel", "conservative"),
            ("cervical_radiculopathy", "conservative"),
            ("lumbar_radiculopathy", "injection"),
        )
    )
    pre = {
        "pain": rng.uniform(6.0, 8.0),
        "tingling": rng.uniform(5.0, 7.5),
        "numbness": rng.uniform(4.0, 7.0),
        "weakness": rng.uniform(2.0, 4.0),
    }
    flat = {
        "pain": rng.uniform(3.0, 4.0),
        "tingling": rng.uniform(2.0, 3.0),
        "numbness": rng.uniform(1.5, 3.0),
        "weakness": rng.uniform(0.5, 2.0),
    }
    flat_start = rng.uniform(14.0, 21.0)
    sessions = pt_schedule(rng, 3, flat_start + 42, rng.choice((0, 2, 2, 3)))
    sore = soreness(sessions, rng)
    curve = rng.choice(("linear", "exp"))

    def latent(t: float) -> Levels:
        frac = t / flat_start if curve == "linear" else (1 - math.exp(-3 * t / flat_start)) / (1 - math.exp(-3))
        lv = {k: _toward(pre[k], flat[k], frac) for k in ITEMS}
        lv["pain"] += sore(t)
        return lv

    return build(
        rng,
        f"stall-{i}",
        condition=condition,
        treatment=treatment,
        latent=latent,
        first_day=rng.randint(0, 3) if treatment != "conservative" else 0,
        last_day=int(flat_start) + 40,
        pre=pre,
        pt_at=sessions,
        noisy=noisy,
        truth={"flat_start": flat_start},
    )


def flare(rng: random.Random, i: int, persistent: bool, noisy: bool = False) -> Case:
    """A vigorous PT session in weeks 4-8 followed by a flare (pain +2.5-4, some tingling) that is
    still there 72 h later (persistent) or gone before then (settled)."""
    condition = rng.choice(("carpal_tunnel", "cubital_tunnel", "lumbar_radiculopathy", "radial_tunnel"))
    treatment = rng.choice(("conservative", "surgical_decompression", "injection"))
    base0 = {
        "pain": rng.uniform(2.0, 5.0),
        "tingling": rng.uniform(1.0, 4.0),
        "numbness": rng.uniform(1.0, 4.0),
        "weakness": rng.uniform(0.5, 2.5),
    }
    slope = rng.uniform(0.0, 0.3)  # background improvement, points a week
    session = rng.randint(28, 55) + rng.uniform(13.0, 18.0) / 24.0
    amp = rng.uniform(2.5, 4.0)
    ting = rng.uniform(0.3, 0.5) * amp
    rise_h = rng.uniform(2.0, 6.0)
    if persistent:
        hold_h = rng.uniform(84.0, 144.0)
        decay_h = rng.uniform(48.0, 96.0)
    else:
        hold_h = rng.uniform(8.0, 30.0)
        decay_h = rng.uniform(18.0, 66.0 - hold_h)
    others = [s for s in pt_schedule(rng, 3, 80, rng.choice((1, 2, 2, 3))) if abs(s - session) > 2.5]
    if persistent and rng.random() < 0.6:  # therapy paused while the flare lasts
        others = [s for s in others if not session < s < session + (hold_h + decay_h) / 24.0]
    sore = soreness(others, rng)

    def bump(t: float) -> float:
        h = (t - session) * 24.0
        if h < 0 or h > hold_h + decay_h:
            return 0.0
        if h < rise_h:
            return h / rise_h
        if h <= hold_h:
            return 1.0
        return 1.0 - (h - hold_h) / decay_h

    def latent(t: float) -> Levels:
        lv = {k: max(0.5, base0[k] - slope * t / 7.0) for k in ITEMS}
        b = bump(t)
        lv["pain"] += amp * b + sore(t)
        lv["tingling"] += ting * b
        return lv

    return build(
        rng,
        f"flare-{'p' if persistent else 's'}-{i}",
        condition=condition,
        treatment=treatment,
        latent=latent,
        first_day=0,
        last_day=int(session) + 16,
        pt_at=sorted([*others, session]),
        noisy=noisy,
        truth={"session": session, "persistent": persistent},
    )


def _post_release(rng: random.Random, pre: Levels, pillar: bool) -> tuple[Latent, Callable[[float], float], float]:
    """The usual course after carpal/cubital tunnel release: incision pain in the first 2 weeks
    (optionally pillar pain in weeks 2-8), tingling and night symptoms settling in 1-2 weeks,
    numbness over 6-8 weeks, grip down to 60-75% in weeks 1-3, back near baseline by week 6-8 and
    above it by week 12 (14.8 -> 13.0 at 6 weeks -> 16.2 at 3 months on average)."""
    res = {
        "pain": rng.uniform(0.5, 1.5),
        "tingling": rng.uniform(0.3, 1.2),
        "numbness": rng.uniform(0.5, 1.5),
        "weakness": rng.uniform(0.3, 1.2),
    }
    incision = rng.uniform(1.5, 3.0)
    tau_t = rng.uniform(3.0, 6.0)  # tingling/night symptoms: 1-2 weeks
    tau_n = rng.uniform(12.0, 20.0)  # numbness: 6-8 weeks
    tau_w = rng.uniform(15.0, 30.0)
    pillar_amp = rng.uniform(1.0, 2.0) if pillar else 0.0
    grip_pre = rng.uniform(10.0, 20.0)
    dip = rng.uniform(0.6, 0.75)

    def latent(t: float) -> Levels:
        t = max(t, 0.0)
        pain_pre_drop = res["pain"] + (pre["pain"] - res["pain"]) * math.exp(-t / tau_t)
        lv = {
            "pain": min(pre["pain"], pain_pre_drop) + incision * math.exp(-t / 5.0),
            "tingling": res["tingling"] + (pre["tingling"] - res["tingling"]) * math.exp(-t / tau_t),
            "numbness": res["numbness"] + (pre["numbness"] - res["numbness"]) * math.exp(-t / tau_n),
            "weakness": res["weakness"] + (pre["weakness"] - res["weakness"]) * math.exp(-t / tau_w),
        }
        if pillar and 14.0 <= t <= 56.0:
            lv["pain"] += pillar_amp * math.sin(math.pi * (t - 14.0) / 42.0)
        return lv

    def grip(t: float) -> float:
        # 14.8 -> ~0.65 at 1-3 weeks -> 0.88 at 6 weeks -> 1.09 at 12 weeks (relative to pre-op).
        knots = ((0.0, 1.0), (7.0, dip), (21.0, dip + 0.03), (42.0, 0.88), (84.0, 1.09), (120.0, 1.15))
        t = max(t, 0.0)
        for (a, va), (b, vb) in itertools.pairwise(knots):
            if t <= b:
                return grip_pre * (va + (vb - va) * (t - a) / (b - a))
        return grip_pre * knots[-1][1]

    return latent, grip, grip_pre


def _pre_release(rng: random.Random) -> Levels:
    return {
        "pain": rng.uniform(5.0, 7.5),
        "tingling": rng.uniform(5.5, 8.0),
        "numbness": rng.uniform(4.5, 7.0),
        "weakness": rng.uniform(2.0, 4.0),
    }


def typical_release(rng: random.Random, i: int, noisy: bool = False) -> Case:
    """A typical course after carpal (or cubital) tunnel release, data from day 0-7 to day 90-100."""
    condition = rng.choice(("carpal_tunnel", "carpal_tunnel", "carpal_tunnel", "cubital_tunnel"))
    pre = _pre_release(rng)
    latent, grip, grip_pre = _post_release(rng, pre, pillar=rng.random() < 0.35)
    last = rng.randint(90, 100)
    sessions = pt_schedule(rng, 14, last, rng.choice((0, 1, 2)))
    sore = soreness(sessions, rng)

    def with_pt(t: float) -> Levels:
        lv = latent(t)
        lv["pain"] += sore(t)
        return lv

    return build(
        rng,
        f"ctr-{i}",
        condition=condition,
        treatment="surgical_decompression",
        latent=with_pt,
        first_day=rng.randint(0, 7),
        last_day=last,
        pre=pre,
        grip=grip,
        pt_at=sessions,
        noisy=noisy,
        enrol_p=0.7,
        pre_grip=grip_pre,
    )


def recurrence(rng: random.Random, i: int) -> Case:
    """Early recurrence 33-38 days after carpal/cubital tunnel release: over 1-3 days pain returns to
    its pre-operative level, weakness rises 2 points and grip drops 6 kg (tingling and numbness
    partly return)."""
    condition = rng.choice(("carpal_tunnel", "cubital_tunnel"))
    pre = _pre_release(rng)
    latent, grip, grip_pre = _post_release(rng, pre, pillar=False)
    r = rng.uniform(33.0, 38.0)
    ramp = rng.uniform(1.0, 3.0)
    back = {"tingling": rng.uniform(0.0, 0.8), "numbness": rng.uniform(0.0, 0.8)}
    at_r = latent(r)

    def after(t: float) -> Levels:
        lv = latent(t)
        if t < r:
            return lv
        f = clamp((t - r) / ramp, 0.0, 1.0)
        lv["pain"] = _toward(lv["pain"], pre["pain"], f)
        lv["weakness"] = lv["weakness"] + 2.0 * f
        for k, share in back.items():
            lv[k] = _toward(lv[k], at_r[k] + share * (pre[k] - at_r[k]), f)
        return lv

    def grip_after(t: float) -> float:
        return grip(t) - (6.0 * clamp((t - r) / ramp, 0.0, 1.0) if t >= r else 0.0)

    return build(
        rng,
        f"recur-{i}",
        condition=condition,
        treatment="surgical_decompression",
        latent=after,
        first_day=rng.randint(0, 3),
        last_day=int(r + ramp) + 12,
        pre=pre,
        grip=grip_after,
        enrol_p=0.7,
        pre_grip=grip_pre,
        truth={"return": r + ramp, "start": r},
    )


def nerve_repair(rng: random.Random, i: int) -> Case:
    """After a nerve repair: dense numbness and weakness unchanged for weeks, incision pain settling
    to a stable level, tingling rising as regenerating axons advance (Tinel sign), until regrowth
    over the repair-to-target distance (60-250 mm at 1 mm/day after a ~4-week delay) is due."""
    given = rng.random() < 0.6
    distance = rng.uniform(60.0, 250.0) if given else 150.0  # the profile's default for the condition
    delay = 28.0
    due = delay + distance
    numb = rng.uniform(7.0, 9.0)
    weak = rng.uniform(6.0, 8.5)
    pain_rest = rng.uniform(2.0, 4.0)
    pain_post = pain_rest + rng.uniform(1.5, 3.0)
    ting0 = rng.uniform(0.5, 2.0)
    ting_max = rng.uniform(4.0, 7.0)

    def latent(t: float) -> Levels:
        t = max(t, 0.0)
        tinel = clamp((t - delay) / max(distance, 1.0), 0.0, 1.0)
        return {
            "pain": pain_rest + (pain_post - pain_rest) * math.exp(-t / 7.0),
            "tingling": ting0 + (ting_max - ting0) * tinel,
            "numbness": numb,
            "weakness": weak,
        }

    sessions = pt_schedule(rng, 21, due, rng.choice((0, 1, 2)))
    return build(
        rng,
        f"repair-{i}",
        condition="peripheral_nerve_injury",
        treatment="nerve_repair",
        latent=latent,
        first_day=rng.randint(1, 7),
        last_day=int(due) - 1,
        pt_at=sessions,
        repair_distance_mm=round(distance) if given else None,
        truth={"due": due},
    )
