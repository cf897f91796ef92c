"""Pure, seeded generation of labelled synthetic patients.

Every patient follows a latent symptom course in continuous (event) time: a recovery curve plus
archetype-specific changes (post-operative dip, post-therapy flares, recurrence, stall, nerve
regrowth...). Check-ins sample the latent course with the patient's own reporting noise and habits;
a wearable produces daily samples that sync in bursts (`simulator.render`). Nothing here does I/O
or reads the clock: the same `seed` and `end` give the same cohort, byte for byte.

Parameters are drawn from wide ranges rather than fixed values (curve family and pace per
`simulator.shapes`, noise, missed days, reporting times, time zones, timing of procedures, sessions
and events, condition and treatment, baseline or not, wearable or not), and every patient's draws
are recorded in `label.detail["params"]`, so that a missed or false alert can be diagnosed.

Each patient is generated from its own `random.Random` seeded with `"{seed}/{archetype}/{i}"`, so a
patient does not change when other archetypes are added to or removed from the run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from schemas.activity import ActivityBatch
from schemas.checkins import CheckIn
from schemas.patients import PatientIn
from simulator.courses import ARCHETYPE_FUNCS, NOTES_COMMON, NOTES_RED_FLAG
from simulator.render import (
    SYMPTOMS,
    ConditionProfile,
    Ctx,
    Grip,
    Spec,
    build_activity,
    build_checkins,
    build_dynamometer,
    clamp,
    draw_habits,
    draw_reporter,
    function_score,
    latent,
)

NORMAL_ARCHETYPES: tuple[str, ...] = (
    "steady_recovery",
    "slow_conservative",
    "settled_flares",
    "noisy_reporter",
    "slow_steady_improver",
    "flare_settled",
    "postop_dip",
    "nerve_repair",
    "typical_ctr",
)
ABNORMAL_ARCHETYPES: tuple[str, ...] = (
    "persistent_flare",
    "regression",
    "plateau",
    "red_flag",
    "spreading_numbness",
    "activity_decline",
    "disengagement",
    "stall_moderate",
    "flare_unsettled",
    "early_recurrence",
)
ALL_ARCHETYPES: tuple[str, ...] = NORMAL_ARCHETYPES + ABNORMAL_ARCHETYPES

#: Normal archetypes on which nothing above low severity may be raised (the typical course).
LOW_ONLY_ARCHETYPES: frozenset[str] = frozenset({"typical_ctr"})


def parse_archetypes(value: str | None) -> list[str] | None:
    """A comma-separated subset of ALL_ARCHETYPES (None when empty); ValueError names unknown ones."""
    if not value:
        return None
    names = [a.strip() for a in value.split(",") if a.strip()]
    unknown = [a for a in names if a not in ALL_ARCHETYPES]
    if unknown:
        raise ValueError(f"unknown archetype(s): {', '.join(unknown)}; known: {', '.join(ALL_ARCHETYPES)}")
    return names


# Zones with DST changes at night (never at midnight), whole, half- and quarter-hour offsets.
TIMEZONES: tuple[str, ...] = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Helsinki",
    "Africa/Johannesburg",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Auckland",
)

SURGICAL = frozenset({"surgical_decompression", "neurolysis", "nerve_repair"})
PROCEDURAL = SURGICAL | {"injection", "ablation"}


# --------------------------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one synthetic patient.

    `onset` is the event time at which the abnormal condition became observable (None for normal
    archetypes); delays are measured from it. `earliest` is the time before which an alert of an
    expected kind is premature (None: onset minus the evaluation's day of grace). `due` is the
    latest `event_time` of a timely detection (None: any detection counts). For a plateau,
    `onset` is the 21st flat day and `earliest` the start of the flat period. `expected_alert_kinds`
    must be raised; `tolerated_alert_kinds` are clinically defensible side effects (e.g. a
    regression alert for a flare that never settles) and are reported separately from false alerts.
    `detail["params"]` holds every parameter drawn for the patient.
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
    earliest: datetime | None = None
    due: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduledPost:
    """One request the patient's app or wearable makes, at simulated instant `at`."""

    at: datetime
    kind: Literal["checkin", "activity"]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SimPatient:
    """A patient: enrolment payload, posts in posting order, ground truth, and the latent course.

    `latent` has one entry per history day: the latent symptom values (and `grip_kg` for a grip
    channel) at 12:00 local, for tests and diagnosis; it is never posted.
    """

    patient_id: str
    patient: dict[str, Any]  # PatientIn payload (JSON-ready)
    posts: list[ScheduledPost]  # time-ordered by `at`
    label: Label
    latent: list[dict[str, float]] = field(default_factory=list)

    @property
    def checkins(self) -> list[dict[str, Any]]:
        return [p.payload for p in self.posts if p.kind == "checkin"]

    @property
    def activity_batches(self) -> list[dict[str, Any]]:
        return [p.payload for p in self.posts if p.kind == "activity"]


# --------------------------------------------------------------------------------------------
# Condition profiles

_PROFILES: tuple[ConditionProfile, ...] = (
    ConditionProfile(
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
    ConditionProfile(
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
    ConditionProfile(
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
    ConditionProfile(
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
    ConditionProfile(
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
    ConditionProfile(
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
    ConditionProfile(
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
    ConditionProfile(
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
    ConditionProfile(
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
_BY_CONDITION = {p.condition: p for p in _PROFILES}

# --------------------------------------------------------------------------------------------
# Set-up: who the patient is and when things happen (drawn before the archetype's course)


@dataclass(frozen=True, slots=True)
class _Setup:
    profile: ConditionProfile
    treatment: str
    n_days: int
    proc_lag: int | None  # procedure_date = first history day - proc_lag days
    onset_lag: int  # onset_date = first history day - onset_lag days
    timing: dict[str, float] = field(default_factory=dict)


def _pick_profile(rng: random.Random, conditions: Sequence[str] | None = None) -> ConditionProfile:
    pool = [p for p in _PROFILES if conditions is None or p.condition in conditions]
    return rng.choices(pool, weights=[p.weight for p in pool])[0]


def _pick_treatment(
    rng: random.Random, profile: ConditionProfile, exclude: Sequence[str] = (), prefer: str | None = None
) -> str:
    options = [(t, w) for t, w in profile.treatments if t not in exclude] or [("conservative", 1.0)]
    if prefer is not None and prefer in {t for t, _ in options} and rng.random() < 0.5:
        return prefer
    return rng.choices([t for t, _ in options], weights=[w for _, w in options])[0]


def _proc_lag(rng: random.Random, treatment: str) -> int | None:
    if treatment in SURGICAL:
        return rng.choice((rng.randint(1, 7), rng.randint(7, 15), rng.randint(15, 35)))
    if treatment in PROCEDURAL:
        return rng.randint(1, 14)
    return None


def _onset_lag(rng: random.Random, proc_lag: int | None) -> int:
    return (proc_lag or 0) + rng.choice((rng.randint(14, 60), rng.randint(60, 400)))


def _setup_default(
    rng: random.Random,
    *,
    conditions: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    prefer: str | None = None,
    n_days: tuple[int, int] = (70, 90),
) -> _Setup:
    profile = _pick_profile(rng, conditions)
    treatment = _pick_treatment(rng, profile, exclude, prefer)
    lag = _proc_lag(rng, treatment)
    return _Setup(profile, treatment, rng.randint(*n_days), lag, _onset_lag(rng, lag))


def _setup_no_repair(rng: random.Random) -> _Setup:
    # A nerve repair has its own expected course (regrowth): no plateau or regression is judged
    # while it lasts, so archetypes expecting those kinds use other treatments.
    return _setup_default(rng, exclude=("nerve_repair",))


def _setup_slow(rng: random.Random) -> _Setup:
    return _setup_default(rng, prefer="conservative")


def _setup_stall(rng: random.Random) -> _Setup:
    profile = _pick_profile(rng)
    treatment = _pick_treatment(rng, profile, exclude=("nerve_repair",))
    flat_after = rng.uniform(35.0, 42.0)  # 5-6 weeks after the procedure or onset
    lag = _proc_lag(rng, treatment)
    if lag is not None:
        lag = min(lag, 20)
        onset_lag = _onset_lag(rng, lag)
        flat_t = flat_after - lag
    else:
        onset_lag = rng.randint(5, min(28, int(flat_after) - 12))
        flat_t = flat_after - onset_lag
    n = rng.randint(max(70, math.ceil(flat_t + 33)), 92)
    return _Setup(profile, treatment, n, lag, onset_lag, {"flat_after_days": flat_after, "flat_t": flat_t})


def _setup_recurrence(rng: random.Random) -> _Setup:
    profile = _BY_CONDITION[rng.choices(("carpal_tunnel", "cubital_tunnel"), weights=(7, 3))[0]]
    lag = rng.randint(2, 12)
    recur_after = rng.uniform(31.0, 40.0)  # about 5 weeks after the release
    ramp = rng.uniform(1.5, 7.0)
    need = math.ceil(recur_after - lag + ramp + 14)
    n = rng.randint(max(56, need), max(90, need))
    return _Setup(
        profile,
        "surgical_decompression",
        n,
        lag,
        _onset_lag(rng, lag),
        {"recur_after_days": recur_after, "ramp_days": ramp},
    )


def _setup_postop(rng: random.Random) -> _Setup:
    profile = _pick_profile(
        rng, ("carpal_tunnel", "cubital_tunnel", "tarsal_tunnel", "lumbar_radiculopathy", "radial_tunnel")
    )
    surgical = [t for t, _ in profile.treatments if t in SURGICAL]
    treatment = rng.choice(surgical)
    lag = rng.randint(1, 6)
    return _Setup(profile, treatment, rng.randint(70, 90), lag, _onset_lag(rng, lag))


def _setup_nerve_repair(rng: random.Random) -> _Setup:
    lag = rng.randint(7, 42)
    return _Setup(_BY_CONDITION["peripheral_nerve_injury"], "nerve_repair", rng.randint(70, 90), lag, lag)


def _setup_ctr(rng: random.Random) -> _Setup:
    lag = rng.randint(1, 5)
    # Long enough to reach 3 months after the release (the published 12-week grip figure).
    return _Setup(
        _BY_CONDITION["carpal_tunnel"],
        "surgical_decompression",
        rng.randint(92 - lag, 100 - lag),
        lag,
        _onset_lag(rng, lag),
    )


def _new_ctx(archetype: str, index: int, seed: int, end: datetime, rng: random.Random, setup: _Setup) -> Ctx:
    tz_name = TIMEZONES[(index + rng.randrange(len(TIMEZONES))) % len(TIMEZONES)]
    tz = ZoneInfo(tz_name)
    end_local = end.astimezone(tz)
    start_date = end_local.date() - timedelta(days=setup.n_days - 1)
    t0 = datetime.combine(start_date, time(0), tzinfo=tz).astimezone(UTC)
    treatment = setup.treatment
    postop = treatment in SURGICAL
    proc_date: date | None = None
    t_proc: float | None = None
    if setup.proc_lag is not None:
        proc_date = start_date - timedelta(days=setup.proc_lag)
        t_proc = -float(setup.proc_lag) + rng.uniform(8.0, 15.0) / 24.0
    pre = {
        "pain": rng.uniform(5.0, 8.5),
        "tingling": rng.uniform(4.0, 8.0),
        "numbness": rng.uniform(3.0, 7.0),
        "weakness": rng.uniform(1.5, 5.0),
    }
    if postop:
        relief = {
            "pain": rng.uniform(0.8, 2.4),
            "tingling": rng.uniform(1.0, 3.0),
            "numbness": rng.uniform(0.2, 1.4),
            "weakness": rng.uniform(0.0, 0.8),
        }
    elif treatment in ("injection", "ablation"):
        relief = {"pain": rng.uniform(0.3, 1.8), "tingling": rng.uniform(0.0, 1.0), "numbness": 0.0, "weakness": 0.0}
    else:
        relief = dict.fromkeys(SYMPTOMS, 0.0)
    start = {s: pre[s] - relief[s] for s in SYMPTOMS}
    floor = {
        "pain": rng.uniform(0.2, 1.6),
        "tingling": rng.uniform(0.2, 1.6),
        "numbness": rng.uniform(0.4, 2.0),
        "weakness": rng.uniform(0.1, 1.2),
    }
    for s in SYMPTOMS:
        floor[s] = min(floor[s], start[s] - 0.5)
    noisy_p = 1.0 if archetype == "noisy_reporter" else 0.1
    ctx = Ctx(
        rng=rng,
        archetype=archetype,
        patient_id=f"sim-{archetype}-{index:03d}-{seed}",
        profile=setup.profile,
        treatment=treatment,
        tz=tz,
        tz_name=tz_name,
        start_date=start_date,
        n_days=setup.n_days,
        end=end,
        t0=t0,
        postop=postop,
        proc_date=proc_date,
        t_proc=t_proc,
        onset_date=start_date - timedelta(days=setup.onset_lag),
        pre=pre,
        start=start,
        floor=floor,
        habits=draw_habits(rng),
        reporter=draw_reporter(rng, noisy_p),
    )
    ctx.params["timing"] = {k: round(v, 2) for k, v in setup.timing.items()}
    return ctx


_SETUPS: dict[str, Callable[[random.Random], _Setup]] = {
    "slow_steady_improver": _setup_slow,
    "slow_conservative": _setup_slow,
    "regression": _setup_no_repair,
    "plateau": _setup_no_repair,
    "stall_moderate": _setup_stall,
    "early_recurrence": _setup_recurrence,
    "postop_dip": _setup_postop,
    "nerve_repair": _setup_nerve_repair,
    "typical_ctr": _setup_ctr,
}


# --------------------------------------------------------------------------------------------
# Assembling a patient


def _baseline(ctx: Ctx, spec: Spec, instrument: str, grip: Grip | None, wearable: bool, steps: float) -> Any:
    rng = ctx.rng
    p = 0.55 if spec.baseline_p is None else spec.baseline_p
    if rng.random() >= p:
        return None
    items = list(SYMPTOMS)
    if rng.random() < 0.3:  # a partial baseline
        items = ["pain", *rng.sample(SYMPTOMS[1:], rng.randint(0, 3))]
    baseline: dict[str, Any] = {s: int(clamp(round(ctx.pre[s]), 0, 10)) for s in items}
    if rng.random() < 0.8:
        baseline["function"] = {"instrument": instrument, "score": function_score(instrument, ctx.pre, rng)}
    if grip is not None and rng.random() < 0.85:
        baseline["grip_strength_kg"] = round(grip.pre, 1)
    if wearable and rng.random() < 0.8:
        baseline["daily_steps"] = int(round(steps * 0.95, -1))
    return baseline


def _latent_days(ctx: Ctx, spec: Spec, grip: Grip | None) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    for d in range(ctx.n_days):
        t = ctx.t_of(ctx.local(d, 12))
        lv = latent(spec, t)
        row = {s: round(v, 3) for s, v in lv.items()}
        if grip is not None:
            row["grip_kg"] = round(grip.value(ctx, lv, t), 2)
        out.append(row)
    return out


def _first_checkin_at_or_after(ctx: Ctx, checkins: Sequence[tuple[datetime, Any]], t: float) -> datetime | None:
    after = [at for at, _ in checkins if ctx.t_of(at) >= t]
    return after[0] if after else None


def _make_patient(archetype: str, index: int, seed: int, end: datetime, webhook_url: str | None) -> SimPatient:
    rng = random.Random(f"{seed}/{archetype}/{index}")
    setup = _SETUPS.get(archetype, _setup_default)(rng)
    ctx = _new_ctx(archetype, index, seed, end, rng, setup)
    spec = ARCHETYPE_FUNCS[archetype](ctx)
    profile = ctx.profile

    instrument = rng.choice(profile.instruments)
    steps_base = float(rng.randint(*profile.steps_range))
    has_wearable = spec.wearable_required or rng.random() < 0.75
    grip: Grip | None = None
    dynamometer = False
    if profile.upper_limb:
        g_pre = spec.grip_pre if spec.grip_pre is not None else rng.uniform(8.0, 24.0)
        grip = Grip(g_pre, g_pre * rng.uniform(1.3, 2.0), spec.grip)
        dynamometer = rng.random() < 0.15

    patient: dict[str, Any] = {
        "patient_id": ctx.patient_id,
        "condition": profile.condition,
        "side": rng.choice(profile.sides),
        "treatment": ctx.treatment,
        "onset_date": ctx.onset_date.isoformat(),
        "timezone": ctx.tz_name,
    }
    if ctx.proc_date is not None:
        patient["procedure_date"] = ctx.proc_date.isoformat()
    if spec.repair_distance_mm is not None:
        patient["repair_distance_mm"] = float(spec.repair_distance_mm)
    baseline = _baseline(ctx, spec, instrument, grip, has_wearable, steps_base)
    if baseline is not None:
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

    checkins, rf_event, rf_at = build_checkins(
        ctx, spec, None if dynamometer else grip, instrument, NOTES_COMMON, NOTES_RED_FLAG
    )
    posts: list[ScheduledPost] = []
    late = 0
    for at, item in checkins:
        if rng.random() < ctx.habits.late_p:
            post_at = at + timedelta(days=rng.uniform(1.0, 3.0))
            late += 1
        else:
            post_at = at + timedelta(seconds=rng.uniform(2.0, 300.0))
        posts.append(ScheduledPost(min(post_at, end), "checkin", item))
    if has_wearable:
        for at, batch in build_activity(ctx, spec, steps_base):
            posts.append(ScheduledPost(at, "activity", batch))
    if dynamometer and grip is not None:
        for at, batch in build_dynamometer(ctx, spec, grip):
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
        onset = _first_checkin_at_or_after(ctx, checkins, spec.onset_from)
    earliest = ctx.at(spec.earliest_from) if spec.earliest_from is not None else None
    due: datetime | None = None
    if spec.due_from is not None:
        due = ctx.at(spec.due_from)
    elif spec.due_days is not None and onset is not None:
        due = onset + timedelta(days=spec.due_days)

    detail = dict(spec.detail)
    params = dict(ctx.params)
    params.update(
        {
            "reporter": ctx.reporter.describe(),
            "habits": ctx.habits.describe(),
            "pre": {s: round(v, 2) for s, v in ctx.pre.items()},
            "start": {s: round(v, 2) for s, v in ctx.start.items()},
            "floor": {s: round(v, 2) for s, v in ctx.floor.items()},
            "procedure_t": None if ctx.t_proc is None else round(ctx.t_proc, 2),
            "baseline": baseline is not None,
            "grip_channel": None if grip is None else ("dynamometer" if dynamometer else "checkin"),
        }
    )
    detail.update(
        {
            "condition": profile.condition,
            "treatment": ctx.treatment,
            "timezone": ctx.tz_name,
            "late_uploads": late,
            "wearable": has_wearable,
            "params": params,
        }
    )
    label = Label(
        archetype=archetype,
        onset=onset,
        expected_alert_kinds=spec.expected,
        tolerated_alert_kinds=spec.tolerated,
        history_start=ctx.t0.astimezone(UTC),
        history_end=end,
        history_days=ctx.n_days,
        red_flag_event_id=rf_event,
        red_flag_recorded_at=rf_at,
        earliest=earliest,
        due=due,
        detail=detail,
    )
    return SimPatient(ctx.patient_id, patient, posts, label, _latent_days(ctx, spec, grip))


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
