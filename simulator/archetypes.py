"""Pure, seeded generation of labelled synthetic patients.

Every patient follows a latent symptom trajectory in continuous (event) time: a recovery curve
plus archetype-specific deltas (post-op dip, post-PT flares, regression, spreading numbness...).
Check-ins sample the latent curve with reporting noise; a wrist wearable produces daily samples
that sync in bursts. Nothing here does I/O or reads the clock: the same `seed` and `end` give the
same cohort, byte for byte.

Each patient is generated from its own `random.Random` seeded with `"{seed}/{archetype}/{i}"`, so a
patient does not change when other archetypes are added to or removed from the run.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from schemas.activity import ActivityBatch
from schemas.checkins import CheckIn
from schemas.common import INSTRUMENT_RANGES, FunctionInstrument
from schemas.patients import PatientIn

SYMPTOMS: tuple[str, ...] = ("pain", "tingling", "numbness", "weakness")

NORMAL_ARCHETYPES: tuple[str, ...] = ("steady_recovery", "slow_conservative", "settled_flares", "noisy_reporter")
ABNORMAL_ARCHETYPES: tuple[str, ...] = (
    "persistent_flare",
    "regression",
    "plateau",
    "red_flag",
    "spreading_numbness",
    "activity_decline",
    "disengagement",
)
ALL_ARCHETYPES: tuple[str, ...] = NORMAL_ARCHETYPES + ABNORMAL_ARCHETYPES


def parse_archetypes(value: str | None) -> list[str] | None:
    """A comma-separated subset of ALL_ARCHETYPES (None when empty); ValueError names unknown ones."""
    if not value:
        return None
    names = [a.strip() for a in value.split(",") if a.strip()]
    unknown = [a for a in names if a not in ALL_ARCHETYPES]
    if unknown:
        raise ValueError(f"unknown archetype(s): {', '.join(unknown)}; known: {', '.join(ALL_ARCHETYPES)}")
    return names


TIMEZONES: tuple[str, ...] = (
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Los_Angeles",
)

SURGICAL = frozenset({"surgical_decompression", "neurolysis", "nerve_repair"})
PROCEDURAL = SURGICAL | {"injection", "ablation"}

# A check-in is never recorded closer than this to `end` (keeps every recorded_at in the past).
_END_MARGIN = timedelta(minutes=2)


# --------------------------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one synthetic patient.

    `onset` is the event time at which the abnormal condition became observable (None for normal
    archetypes). `expected_alert_kinds` must be raised; `tolerated_alert_kinds` are clinically
    defensible side effects (e.g. a regression alert for a flare that never settles) and are
    reported separately from false alerts.
    """

    archetype: str
    onset: datetime | None
    expected_alert_kinds: frozenset[str]
    tolerated_alert_kinds: frozenset[str] = frozenset()
    history_start: datetime | None = None
    history_end: datetime | None = None
    history_days: int = 0
    red_flag_event_id: str | None = None
    red_flag_recorded_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduledPost:
    """One request the patient's app or wearable makes, at simulated instant `at`."""

    at: datetime
    kind: Literal["checkin", "activity"]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SimPatient:
    patient_id: str
    patient: dict[str, Any]  # PatientIn payload (JSON-ready)
    posts: list[ScheduledPost]  # time-ordered by `at`
    label: Label

    @property
    def checkins(self) -> list[dict[str, Any]]:
        return [p.payload for p in self.posts if p.kind == "checkin"]

    @property
    def activity_batches(self) -> list[dict[str, Any]]:
        return [p.payload for p in self.posts if p.kind == "activity"]


# --------------------------------------------------------------------------------------------
# Condition profiles


@dataclass(frozen=True, slots=True)
class _Profile:
    condition: str
    weight: float
    treatments: tuple[tuple[str, float], ...]
    sides: tuple[str, ...]
    instruments: tuple[str, ...]
    upper_limb: bool
    red_flags: tuple[str, ...]
    qualities: tuple[str, ...]
    steps_range: tuple[int, int]


_PROFILES: tuple[_Profile, ...] = (
    _Profile(
        "carpal_tunnel",
        3.0,
        (("surgical_decompression", 0.6), ("injection", 0.2), ("conservative", 0.2)),
        ("right", "left", "right", "bilateral"),
        ("bctq_sss", "bctq_sss", "bctq_fss", "quickdash"),
        True,
        ("rapidly_progressive_weakness",),
        ("tingling", "burning", "electric", "dull_ache"),
        (5000, 9500),
    ),
    _Profile(
        "cubital_tunnel",
        1.5,
        (("surgical_decompression", 0.5), ("conservative", 0.5)),
        ("right", "left"),
        ("quickdash",),
        True,
        ("rapidly_progressive_weakness",),
        ("tingling", "electric", "dull_ache"),
        (5000, 9500),
    ),
    _Profile(
        "radial_tunnel",
        0.7,
        (("conservative", 0.5), ("injection", 0.2), ("neurolysis", 0.3)),
        ("right", "left"),
        ("quickdash", "psfs"),
        True,
        ("wrist_drop",),
        ("dull_ache", "sharp", "throbbing"),
        (5000, 9000),
    ),
    _Profile(
        "tarsal_tunnel",
        0.8,
        (("surgical_decompression", 0.5), ("conservative", 0.3), ("injection", 0.2)),
        ("right", "left"),
        ("lefs",),
        False,
        ("rapidly_progressive_weakness",),
        ("burning", "tingling", "shooting"),
        (3000, 6500),
    ),
    _Profile(
        "peroneal_entrapment",
        0.7,
        (("neurolysis", 0.5), ("conservative", 0.5)),
        ("right", "left"),
        ("lefs", "psfs"),
        False,
        ("foot_drop",),
        ("burning", "tingling", "sharp"),
        (3000, 7000),
    ),
    _Profile(
        "lumbar_radiculopathy",
        3.0,
        (("conservative", 0.5), ("injection", 0.25), ("surgical_decompression", 0.2), ("ablation", 0.05)),
        ("left", "right"),
        ("odi", "odi", "promis_pi"),
        False,
        ("bowel_bladder_dysfunction", "saddle_anesthesia", "bilateral_leg_symptoms", "foot_drop"),
        ("shooting", "electric", "burning", "dull_ache"),
        (2500, 6500),
    ),
    _Profile(
        "cervical_radiculopathy",
        1.5,
        (("conservative", 0.6), ("injection", 0.4)),
        ("left", "right"),
        ("quickdash", "promis_pi"),
        True,
        ("rapidly_progressive_weakness",),
        ("shooting", "electric", "tingling", "dull_ache"),
        (4500, 9000),
    ),
    _Profile(
        "peripheral_nerve_injury",
        0.8,
        (("nerve_repair", 0.8), ("neurolysis", 0.2)),
        ("left", "right"),
        ("quickdash",),
        True,
        ("rapidly_progressive_weakness",),
        ("electric", "burning", "tingling"),
        (4500, 9000),
    ),
    _Profile(
        "other_entrapment",
        0.5,
        (("conservative", 0.6), ("ablation", 0.4)),
        ("left", "right", "not_applicable"),
        ("psfs", "promis_pi"),
        False,
        ("rapidly_progressive_weakness",),
        ("burning", "dull_ache", "sharp"),
        (4000, 8000),
    ),
)

_POSTOP_RED_FLAGS: tuple[str, ...] = ("wound_infection_signs", "fever")

_NOTES_COMMON: tuple[str, ...] = (
    "felt better after walking",
    "slept badly, woke up twice",
    "did my exercises before breakfast",
    "busy day at work, typed a lot",
    "a bit stiff this morning",
    "weather is cold, symptoms about the same",
    "forgot my exercises yesterday",
    "good day overall",
)
_NOTES_FLARE: tuple[str, ...] = ("sore after PT yesterday", "PT was tough, aching tonight", "flared up after therapy")
_NOTES_WORSE: tuple[str, ...] = ("symptoms creeping back", "worse again this week", "numb again at night")
_NOTES_SPREAD_UPPER: tuple[str, ...] = ("numbness now goes up into my forearm", "whole hand feels numb now")
_NOTES_SPREAD_LOWER: tuple[str, ...] = ("numb patch spreading up my shin", "numbness moving into the other toes")
_NOTES_RED_FLAG: dict[str, str] = {
    "bowel_bladder_dysfunction": "trouble controlling my bladder since last night",
    "saddle_anesthesia": "numb when sitting, around the groin",
    "bilateral_leg_symptoms": "now both legs are tingling",
    "foot_drop": "my foot slaps when I walk",
    "wrist_drop": "cannot lift my wrist properly",
    "rapidly_progressive_weakness": "dropping things, hand much weaker",
    "fever": "feeling feverish and shivery",
    "wound_infection_signs": "scar is red, warm and oozing",
}


# --------------------------------------------------------------------------------------------
# Per-patient generation context

Curve = Callable[[str, float], float]
Delta = Callable[[float], dict[str, float]]


@dataclass(slots=True)
class _Ctx:
    rng: random.Random
    archetype: str
    patient_id: str
    profile: _Profile
    treatment: str
    tz: ZoneInfo
    tz_name: str
    start_date: date
    n_days: int
    end: datetime
    t0: datetime
    postop: bool
    pre: dict[str, float]
    start: dict[str, float]
    floor: dict[str, float]
    pt_ends: list[datetime]
    pt_intensity: dict[datetime, str]

    def t_of(self, instant: datetime) -> float:
        """Simulated time in days since local midnight of the first day."""
        return (instant - self.t0).total_seconds() / 86400.0

    def local(self, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
        """The instant (in UTC) of a local wall-clock time on history day `day`.

        Instants are kept in UTC so that arithmetic is elapsed time, also across DST changes.
        """
        wall = datetime.combine(self.start_date + timedelta(days=day), time(hour, minute, second), tzinfo=self.tz)
        return wall.astimezone(UTC)

    def midnight(self, day: int) -> datetime:
        return self.local(day, 0)


@dataclass(slots=True)
class _Spec:
    """What an archetype function decides; rendering into payloads is shared."""

    base: Curve
    deltas: list[Delta] = field(default_factory=list)
    expected: frozenset[str] = frozenset()
    tolerated: frozenset[str] = frozenset()
    onset_from: float | None = None  # onset = first check-in at or after this simulated time
    onset_fixed: datetime | None = None  # onset given directly (activity decline)
    onset_last_before_gap: bool = False  # onset = last check-in before the gap (disengagement)
    spreading_from: float | None = None
    red_flag: tuple[int, str] | None = None
    gap: tuple[int, int] | None = None  # days [first, stop) without check-ins
    steps_factor: Callable[[int], float | None] | None = None
    noisy: bool = False
    contradict_p: float = 0.0
    force_days: set[int] = field(default_factory=set)
    wearable_required: bool = False
    notes: tuple[str, ...] = ()
    notes_from: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _new_ctx(archetype: str, index: int, seed: int, end: datetime, rng: random.Random) -> _Ctx:
    profile = rng.choices(_PROFILES, weights=[p.weight for p in _PROFILES])[0]
    treatment = rng.choices([t for t, _ in profile.treatments], weights=[w for _, w in profile.treatments])[0]
    tz_name = TIMEZONES[(index + rng.randrange(len(TIMEZONES))) % len(TIMEZONES)]
    tz = ZoneInfo(tz_name)
    n_days = rng.randint(70, 90)
    end_local = end.astimezone(tz)
    start_date = end_local.date() - timedelta(days=n_days - 1)
    t0 = datetime.combine(start_date, time(0), tzinfo=tz).astimezone(UTC)
    postop = treatment in SURGICAL
    pre = {
        "pain": rng.uniform(6.2, 8.5),
        "tingling": rng.uniform(4.5, 8.0),
        "numbness": rng.uniform(3.0, 7.0),
        "weakness": rng.uniform(1.5, 5.0),
    }
    if postop:
        relief = {
            "pain": rng.uniform(1.2, 2.2),
            "tingling": rng.uniform(1.2, 2.5),
            "numbness": rng.uniform(0.3, 1.2),
            "weakness": rng.uniform(0.0, 0.8),
        }
    elif treatment in ("injection", "ablation"):
        relief = {"pain": rng.uniform(0.5, 1.5), "tingling": rng.uniform(0.2, 1.0), "numbness": 0.0, "weakness": 0.0}
    else:
        relief = dict.fromkeys(SYMPTOMS, 0.0)
    start = {s: pre[s] - relief[s] for s in SYMPTOMS}
    floor = {
        "pain": rng.uniform(0.3, 1.4),
        "tingling": rng.uniform(0.3, 1.4),
        "numbness": rng.uniform(0.5, 1.8),
        "weakness": rng.uniform(0.2, 1.0),
    }
    for s in SYMPTOMS:
        floor[s] = min(floor[s], start[s] - 0.5)

    pid = f"sim-{archetype}-{index:03d}-{seed}"
    ctx = _Ctx(
        rng,
        archetype,
        pid,
        profile,
        treatment,
        tz,
        tz_name,
        start_date,
        n_days,
        end,
        t0,
        postop,
        pre,
        start,
        floor,
        [],
        {},
    )
    _schedule_pt(ctx)
    return ctx


def _schedule_pt(ctx: _Ctx) -> None:
    """PT 2-3 times a week on fixed weekdays, in the local afternoon; ~10% of sessions skipped."""
    rng = ctx.rng
    per_week = rng.choice((2, 3, 3))
    days = sorted(rng.sample(range(5), per_week))  # Monday=0 .. Friday=4
    first = rng.randint(1, 4)
    for d in range(first, ctx.n_days):
        day = ctx.start_date + timedelta(days=d)
        if day.weekday() not in days or rng.random() < 0.1:
            continue
        ended = ctx.local(d, rng.randint(13, 17), rng.choice((0, 15, 30, 45)))
        if ended > ctx.end - timedelta(hours=1):
            continue
        ctx.pt_ends.append(ended)
        ctx.pt_intensity[ended] = rng.choices(("light", "moderate", "vigorous"), weights=(3, 5, 2))[0]


# --------------------------------------------------------------------------------------------
# Curves and deltas


def _exp_recovery(ctx: _Ctx, tau: float) -> Curve:
    def curve(s: str, t: float) -> float:
        return ctx.floor[s] + (ctx.start[s] - ctx.floor[s]) * math.exp(-max(t, 0.0) / tau)

    return curve


def _linear_recovery(ctx: _Ctx, span_days: float) -> Curve:
    def curve(s: str, t: float) -> float:
        frac = _clamp(t / span_days, 0.0, 1.0)
        return ctx.start[s] - (ctx.start[s] - ctx.floor[s]) * frac

    return curve


def _postop_dip(ctx: _Ctx) -> Delta:
    """Mild, transient worsening in the first 1-2 weeks after enrolment (swelling, scar pain)."""
    length = ctx.rng.uniform(7.0, 12.0)
    amp = ctx.rng.uniform(0.7, 1.3)

    def delta(t: float) -> dict[str, float]:
        if not 0.0 <= t <= length:
            return {}
        v = amp * math.sin(math.pi * t / length)
        return {"pain": v, "tingling": 0.6 * v}

    return delta


def _pt_soreness(ctx: _Ctx, ends: Sequence[datetime]) -> Delta:
    """Ordinary post-therapy soreness: under a point, gone within a day and a half."""
    items = [(ctx.t_of(e), ctx.rng.uniform(0.0, 0.8)) for e in ends]

    def delta(t: float) -> dict[str, float]:
        v = 0.0
        for te, amp in items:
            h = (t - te) * 24.0
            if 0.0 <= h <= 36.0:
                v += amp * (1.0 - h / 36.0)
        return {"pain": v} if v else {}

    return delta


def _flare(te: float, amp: float, hold_h: float, decay_h: float) -> Delta:
    """A post-PT flare: rises within 3 h of the session, holds `hold_h`, then decays linearly."""

    def delta(t: float) -> dict[str, float]:
        h = (t - te) * 24.0
        if h < 0.0 or h > hold_h + decay_h:
            return {}
        v = amp * min(1.0, h / 3.0) if h <= hold_h else amp * (1.0 - (h - hold_h) / decay_h)
        return {"pain": v, "tingling": 0.4 * v}

    return delta


def _pick_flare_sessions(ctx: _Ctx, count: int, t_min: float, t_max: float, spacing: float) -> list[datetime]:
    candidates = [e for e in ctx.pt_ends if t_min <= ctx.t_of(e) <= t_max]
    ctx.rng.shuffle(candidates)
    chosen: list[datetime] = []
    for e in candidates:
        if all(abs(ctx.t_of(e) - ctx.t_of(c)) >= spacing for c in chosen):
            chosen.append(e)
        if len(chosen) == count:
            break
    return sorted(chosen)


def _common_deltas(ctx: _Ctx, exclude: Sequence[datetime] = ()) -> list[Delta]:
    out: list[Delta] = []
    if ctx.postop:
        out.append(_postop_dip(ctx))
    out.append(_pt_soreness(ctx, [e for e in ctx.pt_ends if e not in exclude]))
    return out


# --------------------------------------------------------------------------------------------
# Archetypes (each a function of the per-patient context, drawing only from ctx.rng)


def steady_recovery(ctx: _Ctx) -> _Spec:
    return _Spec(base=_exp_recovery(ctx, ctx.rng.uniform(16.0, 28.0)), deltas=_common_deltas(ctx))


def slow_conservative(ctx: _Ctx) -> _Spec:
    # Steady linear improvement of roughly 0.4-0.6 pain points a week: slow, but never flat.
    ctx.start["pain"] = max(ctx.start["pain"], 6.5)
    return _Spec(base=_linear_recovery(ctx, ctx.n_days * ctx.rng.uniform(1.0, 1.25)), deltas=_common_deltas(ctx))


def settled_flares(ctx: _Ctx) -> _Spec:
    sessions = _pick_flare_sessions(ctx, ctx.rng.randint(3, 5), 10.0, ctx.n_days - 1.0, 7.0)
    deltas = _common_deltas(ctx, exclude=sessions)
    for e in sessions:
        # +2-3 the next morning, back to the trend before 72 h after the session.
        deltas.append(
            _flare(ctx.t_of(e), ctx.rng.uniform(2.2, 3.0), ctx.rng.uniform(16.0, 22.0), ctx.rng.uniform(36.0, 46.0))
        )
    return _Spec(
        base=_exp_recovery(ctx, ctx.rng.uniform(16.0, 28.0)),
        deltas=deltas,
        notes=_NOTES_FLARE,
        notes_from=10.0,
        detail={"flares": [e.astimezone(UTC).isoformat() for e in sessions]},
    )


def persistent_flare(ctx: _Ctx) -> _Spec:
    rng = ctx.rng
    sessions = _pick_flare_sessions(ctx, 1, 25.0, ctx.n_days - 14.0, 1.0)
    if not sessions:  # no PT on the right days: add one
        d = rng.randint(25, ctx.n_days - 14)
        e = ctx.local(d, 16)
        ctx.pt_ends.append(e)
        ctx.pt_ends.sort()
        ctx.pt_intensity[e] = "vigorous"
        sessions = [e]
    te_dt = sessions[0]
    ctx.pt_intensity[te_dt] = "vigorous"
    te = ctx.t_of(te_dt)
    hold_h = rng.uniform(6.0, 9.0) * 24.0
    decay_h = rng.uniform(72.0, 120.0)
    # Therapy is paused while the flare lasts.
    ctx.pt_ends[:] = [e for e in ctx.pt_ends if not te < ctx.t_of(e) < te + (hold_h + decay_h) / 24.0]
    earlier = _pick_flare_sessions(ctx, rng.randint(0, 2), 10.0, te - 7.0, 7.0)
    deltas = _common_deltas(ctx, exclude=[*earlier, te_dt])
    for e in earlier:
        deltas.append(_flare(ctx.t_of(e), rng.uniform(2.0, 2.8), 18.0, 40.0))
    deltas.append(_flare(te, rng.uniform(2.6, 3.5), hold_h, decay_h))
    return _Spec(
        base=_exp_recovery(ctx, rng.uniform(16.0, 28.0)),
        deltas=deltas,
        expected=frozenset({"persistent_flare"}),
        tolerated=frozenset({"regression"}),
        onset_from=te + 3.0,  # a flare becomes abnormal when it has not settled 72 h after the session
        notes=_NOTES_FLARE,
        notes_from=te,
        detail={"flare_session_end": te_dt.astimezone(UTC).isoformat(), "flare_hold_days": round(hold_h / 24, 1)},
    )


def regression(ctx: _Ctx) -> _Spec:
    rng = ctx.rng
    base = _exp_recovery(ctx, rng.uniform(12.0, 20.0))
    r = rng.uniform(30.0, ctx.n_days - 16.0)
    ramp = rng.uniform(0.5, 1.5)
    mode = rng.choices(("pain", "numbness", "both"), weights=(4, 2.5, 3.5))[0]
    if mode == "numbness" and ctx.pre["numbness"] < 4.5:
        mode = "pain"
    syms = ("pain", "numbness") if mode == "both" else (mode,)
    amps: dict[str, float] = {}
    for s in syms:
        amps[s] = _clamp(0.8 * (ctx.pre[s] - base(s, r)), 2.6, 4.5)
    if "numbness" in amps:
        amps["tingling"] = 0.5 * amps["numbness"]
    if ctx.profile.upper_limb and rng.random() < 0.5:
        amps["weakness"] = rng.uniform(1.0, 2.0)  # grip strength drops with it

    def delta(t: float) -> dict[str, float]:
        if t < r:
            return {}
        frac = min(1.0, (t - r) / ramp)
        return {s: a * frac for s, a in amps.items()}

    # Observable once the rise reaches the MCID (2 points) in the leading symptom.
    lead = max(amps[s] for s in syms)
    onset_t = r + ramp * min(1.0, 2.0 / lead)
    # Avoid confounding with a post-PT flare: no PT in the two days before the turn.
    ctx.pt_ends[:] = [e for e in ctx.pt_ends if not r - 2.0 < ctx.t_of(e) < r + 1.0]
    return _Spec(
        base=base,
        deltas=[*_common_deltas(ctx), delta],
        expected=frozenset({"regression"}),
        tolerated=frozenset({"persistent_flare"}),
        onset_from=onset_t,
        notes=_NOTES_WORSE,
        notes_from=r,
        detail={"mode": mode, "amplitude": {s: round(a, 2) for s, a in amps.items()}},
    )


def plateau(ctx: _Ctx) -> _Spec:
    rng = ctx.rng
    p = rng.uniform(21.0, 35.0)
    level = {
        "pain": rng.uniform(4.0, 5.2),
        "tingling": rng.uniform(3.0, 4.5),
        "numbness": rng.uniform(2.5, 4.0),
        "weakness": rng.uniform(1.2, 2.5),
    }
    ctx.start["pain"] = max(ctx.start["pain"], level["pain"] + 2.3)
    for s in ("tingling", "numbness", "weakness"):
        level[s] = min(level[s], ctx.start[s])

    def curve(s: str, t: float) -> float:
        frac = _clamp(t / p, 0.0, 1.0)
        return ctx.start[s] - (ctx.start[s] - level[s]) * frac

    return _Spec(
        base=curve,
        deltas=_common_deltas(ctx),
        expected=frozenset({"plateau"}),
        onset_from=p,
        detail={"plateau_pain": round(level["pain"], 2)},
    )


def red_flag(ctx: _Ctx) -> _Spec:
    rng = ctx.rng
    choices = ctx.profile.red_flags + (_POSTOP_RED_FLAGS if ctx.postop else ())
    flag = rng.choice(choices)
    day = rng.randint(14, ctx.n_days - 3)
    return _Spec(
        base=_exp_recovery(ctx, rng.uniform(16.0, 28.0)),
        deltas=_common_deltas(ctx),
        expected=frozenset({"red_flag"}),
        red_flag=(day, flag),
        force_days={day},
        detail={"red_flag": flag},
    )


def spreading_numbness(ctx: _Ctx) -> _Spec:
    rng = ctx.rng
    s0 = rng.uniform(20.0, ctx.n_days - 14.0)
    rise = rng.uniform(2.0, 3.0)
    rise_days = rng.uniform(5.0, 7.0)

    def delta(t: float) -> dict[str, float]:
        if t < s0:
            return {}
        v = rise * min(1.0, (t - s0) / rise_days)
        return {"numbness": v, "tingling": 0.5 * v}

    notes = _NOTES_SPREAD_UPPER if ctx.profile.upper_limb else _NOTES_SPREAD_LOWER
    return _Spec(
        base=_exp_recovery(ctx, rng.uniform(16.0, 28.0)),
        deltas=[*_common_deltas(ctx), delta],
        expected=frozenset({"spreading_symptoms"}),
        tolerated=frozenset({"regression"}),
        onset_from=s0,
        spreading_from=s0,
        notes=notes,
        notes_from=s0,
    )


def activity_decline(ctx: _Ctx) -> _Spec:
    rng = ctx.rng
    a = rng.randint(25, ctx.n_days - 16)
    # Early steps run at ~0.9-0.95 of `steps_base`: this is a >= 45% drop against the patient's baseline.
    level = rng.uniform(0.30, 0.50)

    def steps_factor(day: int) -> float | None:
        return level if day >= a else None

    return _Spec(
        base=_exp_recovery(ctx, rng.uniform(16.0, 28.0)),
        deltas=_common_deltas(ctx),
        expected=frozenset({"activity_decline"}),
        onset_fixed=ctx.midnight(a).astimezone(UTC),
        steps_factor=steps_factor,
        wearable_required=True,
        detail={"decline_day": a, "steps_level": round(level, 2)},
    )


def disengagement(ctx: _Ctx) -> _Spec:
    rng = ctx.rng
    if rng.random() < 0.6:
        length = rng.randint(7, 12)
        first = rng.randint(25, ctx.n_days - length - 5)
        variant = "mid_history"
    else:
        length = rng.randint(7, 10)
        first = ctx.n_days - length
        # The last check-in (up to 22:00 local the day before the gap) is >= `length` days before `end`.
        while ctx.local(first - 1, 22) + timedelta(days=length) > ctx.end:
            first -= 1
        variant = "until_end"
    return _Spec(
        base=_exp_recovery(ctx, rng.uniform(16.0, 28.0)),
        deltas=_common_deltas(ctx),
        expected=frozenset({"disengagement"}),
        gap=(first, first + length),
        onset_last_before_gap=True,
        force_days={first - 1},
        detail={"variant": variant, "gap_days": length},
    )


def noisy_reporter(ctx: _Ctx) -> _Spec:
    return _Spec(
        base=_exp_recovery(ctx, ctx.rng.uniform(16.0, 28.0)),
        deltas=_common_deltas(ctx),
        noisy=True,
        contradict_p=0.1,
    )


ARCHETYPE_FUNCS: dict[str, Callable[[_Ctx], _Spec]] = {
    "steady_recovery": steady_recovery,
    "slow_conservative": slow_conservative,
    "settled_flares": settled_flares,
    "persistent_flare": persistent_flare,
    "regression": regression,
    "plateau": plateau,
    "red_flag": red_flag,
    "spreading_numbness": spreading_numbness,
    "activity_decline": activity_decline,
    "disengagement": disengagement,
    "noisy_reporter": noisy_reporter,
}


# --------------------------------------------------------------------------------------------
# Rendering a spec into payloads


def _latent(spec: _Spec, t: float) -> dict[str, float]:
    out = {s: spec.base(s, t) for s in SYMPTOMS}
    for d in spec.deltas:
        for s, v in d(t).items():
            out[s] += v
    return {s: _clamp(v, 0.0, 10.0) for s, v in out.items()}


def _function_score(instrument: str, lv: dict[str, float], rng: random.Random) -> float:
    severity = (0.4 * lv["pain"] + 0.25 * lv["tingling"] + 0.2 * lv["numbness"] + 0.15 * lv["weakness"]) / 10.0
    severity = _clamp(severity + rng.gauss(0.0, 0.03), 0.0, 1.0)
    low, high, higher_worse = INSTRUMENT_RANGES[FunctionInstrument(instrument)]
    if instrument == "promis_pi":
        score = 40.0 + 35.0 * severity
    elif higher_worse:
        score = low + (high - low) * severity
    else:
        score = high - (high - low) * severity
    digits = 2 if high - low <= 10 else 1
    return round(_clamp(score, low, high), digits)


def _iso(dt: datetime, tz: ZoneInfo) -> str:
    """RFC 3339 with the patient's local offset, whole seconds."""
    return dt.astimezone(tz).replace(microsecond=0).isoformat()


def _missing_days(ctx: _Ctx, spec: _Spec) -> set[int]:
    """~10-15% of days without any check-in, never more than two in a row (outside a gap)."""
    rng = ctx.rng
    p = rng.uniform(0.10, 0.15)
    missing: set[int] = set()
    run = 0
    for d in range(1, ctx.n_days):
        if d in spec.force_days or run >= 2 or rng.random() >= p:
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


def _report(lv: float, spec: _Spec, rng: random.Random) -> int:
    noise: float
    if spec.noisy:
        noise = float(rng.choices((-2, -1, 0, 1, 2), weights=(1, 2, 3, 2, 1))[0])
        return int(_clamp(round(lv) + noise, 0, 10))
    noise = _clamp(rng.gauss(0.0, 0.45), -1.0, 1.0)
    return int(_clamp(round(lv + noise), 0, 10))


@dataclass(slots=True)
class _Draft:
    at: datetime
    day: int
    contradictory: bool = False  # a second same-day report that contradicts the first


def _build_checkins(
    ctx: _Ctx, spec: _Spec, grip: tuple[float, float] | None, instrument: str
) -> tuple[list[tuple[datetime, dict[str, Any]]], str | None, datetime | None]:
    """Returns (recorded_at, payload) in recorded order, plus the red-flag event id and time."""
    rng = ctx.rng
    missing = _missing_days(ctx, spec)
    function_dow = rng.randrange(7)
    evening_p = rng.uniform(0.1, 0.3)
    drafts: list[_Draft] = []
    latest = ctx.end - _END_MARGIN
    for d in range(ctx.n_days):
        if d in missing:
            continue
        morning = ctx.local(d, rng.randint(7, 9), rng.randrange(60), rng.randrange(60))
        if morning <= latest:
            drafts.append(_Draft(morning, d))
            if spec.contradict_p and rng.random() < spec.contradict_p:
                second = morning + timedelta(minutes=rng.randint(60, 240))
                if second <= latest:
                    drafts.append(_Draft(second, d, contradictory=True))
        if rng.random() < evening_p:
            evening = ctx.local(d, rng.randint(18, 21), rng.randrange(60), rng.randrange(60))
            if evening <= latest:
                drafts.append(_Draft(evening, d))
    drafts.sort(key=lambda x: x.at)

    pt_queue = sorted(ctx.pt_ends)
    pt_i = 0
    out: list[tuple[datetime, dict[str, Any]]] = []
    reported_pain: dict[int, int] = {}
    rf_event: str | None = None
    rf_at: datetime | None = None
    rf_done = False
    for draft in drafts:
        at = draft.at
        t = ctx.t_of(at)
        lv = _latent(spec, t)
        pain = _report(lv["pain"], spec, rng)
        if not draft.contradictory:
            reported_pain[draft.day] = pain
        elif draft.day in reported_pain:
            first = reported_pain[draft.day]
            pain = first - rng.randint(3, 4) if first >= 5 else first + rng.randint(3, 4)
            pain = int(_clamp(pain, 0, 10))
        event_id = _uuid(rng)
        item: dict[str, Any] = {
            "event_id": event_id,
            "patient_id": ctx.patient_id,
            "recorded_at": _iso(at, ctx.tz),
        }
        worst = int(_clamp(pain + rng.choice((0, 1, 1, 2)), 0, 10))
        pain_obj: dict[str, Any] = {"current": pain}
        if rng.random() < 0.8:
            pain_obj["worst_24h"] = worst
        if pain > 0 and rng.random() < 0.6:
            pain_obj["quality"] = sorted(rng.sample(ctx.profile.qualities, rng.randint(1, 2)))
        item["pain"] = pain_obj
        for s, p_present in (("tingling", 0.95), ("numbness", 0.95), ("weakness", 0.85)):
            if rng.random() < p_present:
                v = _report(lv[s], spec, rng)
                if draft.contradictory:
                    v = int(_clamp(v + (pain - reported_pain.get(draft.day, pain)) // 2, 0, 10))
                item[s] = v
        spreading = spec.spreading_from is not None and t >= spec.spreading_from
        if spreading:
            item["numbness_spreading"] = True
            item["numbness"] = max(int(item.get("numbness", 0)), _report(lv["numbness"], spec, rng))
        elif rng.random() < 0.7:
            item["numbness_spreading"] = False
        if rng.random() < 0.6:
            item["night_wakings"] = int(_clamp(round(lv["tingling"] / 2.5 + rng.gauss(0, 0.6)), 0, 20))
        if grip is not None and rng.random() < 0.5:
            g_pre, g_max = grip
            frac = _clamp(lv["weakness"] / max(ctx.pre["weakness"], 0.5), 0.0, 1.5)
            g = g_max - (g_max - g_pre) * frac + rng.gauss(0, 1.0)
            item["grip_strength_kg"] = round(_clamp(g, 1.0, 80.0), 1)
        local_day = (ctx.start_date + timedelta(days=draft.day)).weekday()
        if local_day == function_dow and at.astimezone(ctx.tz).hour < 12 and rng.random() < 0.85:
            item["function"] = {"instrument": instrument, "score": _function_score(instrument, lv, rng)}
        if rng.random() < 0.6:
            item["analgesic_doses_24h"] = int(_clamp(round(lv["pain"] / 2.5 + rng.gauss(0, 0.5)), 0, 8))
        # A PT session since the previous check-in (the latest one, if several).
        session: datetime | None = None
        while pt_i < len(pt_queue) and pt_queue[pt_i] < at:
            session = pt_queue[pt_i]
            pt_i += 1
        if session is not None:
            item["pt_session"] = {"ended_at": _iso(session, ctx.tz), "intensity": ctx.pt_intensity[session]}
        if rng.random() < 0.7:
            item["home_exercises_done"] = rng.random() < 0.8
        if spec.red_flag is not None and not rf_done and draft.day == spec.red_flag[0] and not draft.contradictory:
            flag = spec.red_flag[1]
            item["red_flags"] = [flag]
            item["notes"] = _NOTES_RED_FLAG[flag]
            rf_event, rf_at, rf_done = event_id, at.astimezone(UTC), True
        else:
            if rng.random() < 0.5:
                item["red_flags"] = []
            if rng.random() < 0.12:
                pool = spec.notes if spec.notes and t >= spec.notes_from and rng.random() < 0.6 else _NOTES_COMMON
                item["notes"] = rng.choice(pool)
        out.append((at.astimezone(UTC), item))
    return out, rf_event, rf_at


def _build_activity(ctx: _Ctx, spec: _Spec, steps_base: float) -> list[tuple[datetime, dict[str, Any]]]:
    """Daily wearable samples, synced in bursts every 1-4 days; returns (sync instant, batch)."""
    rng = ctx.rng
    device = {"id": f"watch-{rng.getrandbits(32):08x}", "kind": rng.choice(("wrist", "wrist", "ring"))}
    samples: list[tuple[datetime, dict[str, Any]]] = []  # (end instant, sample)
    hr_base = rng.uniform(58.0, 74.0)
    for d in range(ctx.n_days):
        if rng.random() < 0.03:  # not worn that day
            continue
        day_start = ctx.midnight(d)
        day_end = ctx.midnight(d + 1)
        weekday = (ctx.start_date + timedelta(days=d)).weekday()
        factor = spec.steps_factor(d) if spec.steps_factor is not None else None
        if factor is None:
            factor = 0.9 + 0.2 * min(1.0, d / ctx.n_days)
        noise = math.exp(rng.gauss(0.0, 0.12))
        weekend = 0.85 if weekday >= 5 else 1.0
        steps = int(steps_base * factor * weekend * noise)
        active = int(_clamp(steps / 140.0 + rng.gauss(0, 4), 0, 600))
        for kind, value, start, end in (
            ("steps", steps, day_start, day_end),
            ("active_minutes", active, day_start, day_end),
        ):
            samples.append(
                (
                    end.astimezone(UTC),
                    {
                        "event_id": _uuid(rng),
                        "type": kind,
                        "start": _iso(start, ctx.tz),
                        "end": _iso(end, ctx.tz),
                        "value": value,
                    },
                )
            )
        if d >= 1:
            bed = ctx.local(d - 1, 22, 0) + timedelta(minutes=rng.randint(0, 150))
            asleep = rng.randint(330, 480)
            interruptions = rng.randint(0, 4)
            wake = bed + timedelta(minutes=asleep + 5 * interruptions + rng.randint(5, 30))
            for kind, value in (("sleep_minutes", asleep), ("sleep_interruptions", interruptions)):
                samples.append(
                    (
                        wake.astimezone(UTC),
                        {
                            "event_id": _uuid(rng),
                            "type": kind,
                            "start": _iso(bed, ctx.tz),
                            "end": _iso(wake, ctx.tz),
                            "value": value,
                        },
                    )
                )
            if rng.random() < 0.5:
                samples.append(
                    (
                        wake.astimezone(UTC),
                        {
                            "event_id": _uuid(rng),
                            "type": "resting_heart_rate",
                            "start": _iso(bed, ctx.tz),
                            "end": _iso(wake, ctx.tz),
                            "value": round(hr_base + rng.gauss(0, 2.0), 1),
                        },
                    )
                )
    samples.sort(key=lambda x: x[0])

    batches: list[tuple[datetime, dict[str, Any]]] = []
    sync = ctx.t0 + timedelta(hours=rng.uniform(30.0, 60.0))
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
        sync = sync + timedelta(hours=rng.uniform(20.0, 96.0))
    return batches


def _make_patient(archetype: str, index: int, seed: int, end: datetime, webhook_url: str | None) -> SimPatient:
    rng = random.Random(f"{seed}/{archetype}/{index}")
    ctx = _new_ctx(archetype, index, seed, end, rng)
    spec = ARCHETYPE_FUNCS[archetype](ctx)
    profile = ctx.profile

    instrument = rng.choice(profile.instruments)
    grip = (rng.uniform(10.0, 20.0), rng.uniform(24.0, 36.0)) if profile.upper_limb else None
    steps_base = float(rng.randint(*profile.steps_range))
    has_wearable = spec.wearable_required or rng.random() < 0.9

    patient: dict[str, Any] = {
        "patient_id": ctx.patient_id,
        "condition": profile.condition,
        "side": rng.choice(profile.sides),
        "treatment": ctx.treatment,
        "onset_date": (ctx.start_date - timedelta(days=rng.randint(45, 400))).isoformat(),
        "timezone": ctx.tz_name,
    }
    if ctx.treatment in PROCEDURAL:
        lag = rng.randint(7, 14) if ctx.postop else rng.randint(2, 10)
        patient["procedure_date"] = (ctx.start_date - timedelta(days=lag)).isoformat()
    if rng.random() < 0.5:
        baseline: dict[str, Any] = {s: round(ctx.pre[s]) for s in SYMPTOMS}
        baseline["function"] = {"instrument": instrument, "score": _function_score(instrument, ctx.pre, rng)}
        if grip is not None:
            baseline["grip_strength_kg"] = round(grip[0], 1)
        if has_wearable:
            baseline["daily_steps"] = int(round(steps_base * 0.95, -1))
        patient["baseline"] = baseline
    if webhook_url:
        patient["care_team"] = [
            {
                "member_id": "sim-care-team",
                "role": "physical_therapist",
                "min_severity": "low",
                "notify": {"webhook_url": webhook_url},
            }
        ]

    checkins, rf_event, rf_at = _build_checkins(ctx, spec, grip, instrument)
    posts: list[ScheduledPost] = []
    late = 0
    for at, item in checkins:
        if rng.random() < 0.03:
            post_at = at + timedelta(days=rng.uniform(1.0, 3.0))
            late += 1
        else:
            post_at = at + timedelta(seconds=rng.uniform(2.0, 300.0))
        posts.append(ScheduledPost(min(post_at, end), "checkin", item))
    if has_wearable:
        for at, batch in _build_activity(ctx, spec, steps_base):
            posts.append(ScheduledPost(at, "activity", batch))
    posts.sort(key=lambda p: p.at)

    onset: datetime | None = None
    if spec.onset_fixed is not None:
        onset = spec.onset_fixed
    elif spec.red_flag is not None:
        onset = rf_at
    elif spec.onset_last_before_gap and spec.gap is not None:
        gap_start = ctx.midnight(spec.gap[0]).astimezone(UTC)
        before = [at for at, _ in checkins if at < gap_start]
        onset = before[-1] if before else None
    elif spec.onset_from is not None:
        after = [at for at, _ in checkins if ctx.t_of(at) >= spec.onset_from]
        onset = after[0] if after else None

    history_start = ctx.t0.astimezone(UTC)
    detail = dict(spec.detail)
    detail.update(
        {
            "condition": profile.condition,
            "treatment": ctx.treatment,
            "timezone": ctx.tz_name,
            "late_uploads": late,
            "wearable": has_wearable,
        }
    )
    label = Label(
        archetype=archetype,
        onset=onset,
        expected_alert_kinds=spec.expected,
        tolerated_alert_kinds=spec.tolerated,
        history_start=history_start,
        history_end=end,
        history_days=ctx.n_days,
        red_flag_event_id=rf_event,
        red_flag_recorded_at=rf_at,
        detail=detail,
    )
    return SimPatient(ctx.patient_id, patient, posts, label)


def generate_cohort(
    per_archetype: int,
    seed: int,
    end: datetime | None = None,
    archetypes: Sequence[str] | None = None,
    webhook_url: str | None = None,
) -> list[SimPatient]:
    """`per_archetype` patients of each archetype, histories ending at `end` (default: now, UTC)."""
    if end is None:
        end = datetime.now(UTC).replace(microsecond=0)
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    names = list(archetypes) if archetypes is not None else list(ALL_ARCHETYPES)
    unknown = [a for a in names if a not in ARCHETYPE_FUNCS]
    if unknown:
        raise ValueError(f"unknown archetypes: {', '.join(unknown)}")
    if per_archetype < 0:
        raise ValueError("per_archetype must be >= 0")
    return [_make_patient(name, i, seed, end, webhook_url) for name in names for i in range(per_archetype)]


def validate_patient(p: SimPatient, now: datetime) -> tuple[int, int]:
    """Validate every payload of `p` against the contract models (raises pydantic's ValidationError).

    `now` is the validating clock (payloads more than 10 minutes ahead of it are rejected, as by
    ingest). Returns (check-ins, activity samples) validated.
    """
    ctx = {"now": now}
    PatientIn.model_validate(p.patient, context=ctx)
    checkins = samples = 0
    for post in p.posts:
        if post.kind == "checkin":
            CheckIn.model_validate(post.payload, context=ctx)
            checkins += 1
        else:
            samples += len(ActivityBatch.model_validate(post.payload, context=ctx).samples)
    return checkins, samples
