"""The archetypes' latent courses: what happens to a patient, and its ground truth.

Each archetype is a function of the per-patient context (`simulator.render.Ctx`) returning a
`Spec` (latent symptom curves, events, expected and tolerated alert kinds, onset, deadline). Every
draw comes from `ctx.rng` and every drawn parameter goes into `ctx.params` (the label's
`detail["params"]`). Pure: no clock, no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator import shapes
from simulator.render import (
    SYMPTOMS,
    Ctx,
    Curve,
    Delta,
    Spec,
    add_session,
    clamp,
    schedule_pt,
)

#: Axonal regrowth after a nerve repair, mm per day (Seddon, Medawar & Smith, J Physiol 1943).
REGROWTH_MM_PER_DAY = 1.0

_INDEX_WEIGHTS = {"pain": 0.35, "tingling": 0.2, "numbness": 0.25, "weakness": 0.2}

_POSTOP_RED_FLAGS: tuple[str, ...] = ("wound_infection_signs", "fever")

NOTES_COMMON: tuple[str, ...] = (
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
_NOTES_POSTOP: tuple[str, ...] = ("scar is sore", "hand swollen after the operation", "stitches out today")
_NOTES_REGROWTH: tuple[str, ...] = ("pins and needles further down the arm", "tapping the scar zings into my fingers")
NOTES_RED_FLAG: dict[str, str] = {
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
# Curves and deltas


def _index(lv: dict[str, float]) -> float:
    """Weighted mean item (0-10), the scale on which flatness is judged here."""
    return sum(_INDEX_WEIGHTS[s] * lv[s] for s in SYMPTOMS)


def _anchor(ctx: Ctx) -> float:
    return ctx.t_proc if ctx.t_proc is not None else 0.0


def _recovery(
    ctx: Ctx,
    t90: tuple[float, float] = (18.0, 70.0),
    *,
    kinds: Sequence[str] = shapes.SHAPE_KINDS,
    pause_max: float = 8.0,
) -> Curve:
    """Recovery from `ctx.start` to `ctx.floor`, from the procedure (or day 0), of a random shape.

    Each symptom runs the same family at its own pace (speed 0.6-1.5).
    """
    rng = ctx.rng
    pace = rng.uniform(*t90)
    shape = shapes.draw(rng, pace, kinds=kinds, pause_max=pause_max)
    speeds = {s: rng.uniform(0.6, 1.5) for s in SYMPTOMS}
    anchor = _anchor(ctx)
    ctx.params["recovery"] = {
        "t90_days": round(pace, 1),
        "shape": shape.describe(),
        "speeds": {s: round(v, 2) for s, v in speeds.items()},
        "anchor_t": round(anchor, 2),
    }

    def curve(s: str, t: float) -> float:
        return ctx.floor[s] + (ctx.start[s] - ctx.floor[s]) * (1.0 - shape((t - anchor) * speeds[s]))

    return curve


def _flat_free(ctx: Ctx, curve: Curve, until: float | None = None, level: float = 2.5, gain: float = 0.5) -> bool:
    """No 21-day stretch above `level` (weighted mean item) with less than `gain` improvement."""
    stop = ctx.n_days if until is None else min(ctx.n_days, int(until))
    idx = [_index({s: curve(s, d + 0.5) for s in SYMPTOMS}) for d in range(stop)]
    return all(not (idx[i] >= level and idx[i - 21] - idx[i] < gain) for i in range(21, len(idx)))


def _normal_recovery(ctx: Ctx, t90: tuple[float, float] = (18.0, 70.0), until: float | None = None) -> Curve:
    """A recovery of a random shape, redrawn until no hidden plateau is in it (deterministic)."""
    for attempt in range(40):
        curve = _recovery(ctx, t90)
        if _flat_free(ctx, curve, until):
            ctx.params["recovery"]["attempts"] = attempt + 1
            return curve
    curve = _recovery(ctx, (t90[0], t90[0] + 1.0), kinds=("exponential",), pause_max=0.0)
    ctx.params["recovery"]["attempts"] = 41
    return curve


def _postop_dip(ctx: Ctx, amp: tuple[float, float] = (0.4, 1.5)) -> Delta | None:
    """Incision pain and swelling after an operation: peaks 1-4 days after, gone by 10-28 days."""
    if not ctx.postop or ctx.t_proc is None:
        return None
    rng = ctx.rng
    tp = ctx.t_proc
    peak = rng.uniform(1.0, 4.0)
    length = rng.uniform(10.0, 28.0)
    a = rng.uniform(*amp)
    ratio = rng.uniform(0.2, 0.7)
    ctx.params["postop_dip"] = {"peak_day": round(peak, 1), "length_days": round(length, 1), "amp": round(a, 2)}

    def delta(t: float) -> dict[str, float]:
        x = t - tp
        if not 0.0 <= x <= length:
            return {}
        v = a * (x / peak if x < peak else 0.5 * (1.0 + math.cos(math.pi * (x - peak) / (length - peak))))
        return {"pain": v, "tingling": ratio * v}

    return delta


def _pt_soreness(ctx: Ctx, exclude: Sequence[datetime] = ()) -> Delta:
    """Ordinary post-therapy soreness: under a point, gone within 12-40 hours."""
    rng = ctx.rng
    hours = rng.uniform(12.0, 40.0)
    top = rng.uniform(0.2, 0.9)
    items = [(ctx.t_of(e), rng.uniform(0.0, top)) for e in ctx.pt_ends if e not in exclude]

    def delta(t: float) -> dict[str, float]:
        v = 0.0
        for te, amp in items:
            h = (t - te) * 24.0
            if 0.0 <= h <= hours:
                v += amp * (1.0 - h / hours)
        return {"pain": v} if v else {}

    return delta


def _flare(
    te: float,
    amp: float,
    hold_h: float,
    decay_h: float,
    *,
    rise_h: float = 3.0,
    tingle: float = 0.4,
    weak: float = 0.0,
    smooth: bool = False,
) -> Delta:
    """A post-PT flare: rises over `rise_h` after the session, holds until `hold_h`, then decays
    to nothing over `decay_h` (linearly, or along a cosine when `smooth`)."""

    def delta(t: float) -> dict[str, float]:
        h = (t - te) * 24.0
        if h < 0.0 or h > hold_h + decay_h:
            return {}
        if h <= hold_h:
            v = amp * min(1.0, h / rise_h)
        else:
            x = (h - hold_h) / decay_h
            v = amp * (0.5 * (1.0 + math.cos(math.pi * x)) if smooth else 1.0 - x)
        out = {"pain": v, "tingling": tingle * v}
        if weak:
            out["weakness"] = weak * v
        return out

    return delta


def _pick_sessions(ctx: Ctx, count: int, t_min: float, t_max: float, spacing: float) -> list[datetime]:
    if count <= 0:
        return []
    candidates = [e for e in ctx.pt_ends if t_min <= ctx.t_of(e) <= t_max]
    ctx.rng.shuffle(candidates)
    chosen: list[datetime] = []
    for e in candidates:
        if all(abs(ctx.t_of(e) - ctx.t_of(c)) >= spacing for c in chosen):
            chosen.append(e)
        if len(chosen) == count:
            break
    return sorted(chosen)


def _common_deltas(ctx: Ctx, exclude: Sequence[datetime] = ()) -> list[Delta]:
    out: list[Delta] = []
    dip = _postop_dip(ctx)
    if dip is not None:
        out.append(dip)
    out.append(_pt_soreness(ctx, exclude))
    return out


def _pl(x: float, knots: Sequence[tuple[float, float]]) -> float:
    """Piecewise-linear interpolation through sorted (x, y) knots, flat outside."""
    if x <= knots[0][0]:
        return knots[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(knots):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return knots[-1][1]


def _day_of(t: float) -> int:
    """History day of simulated time `t` (to within the hour of a DST change)."""
    return math.floor(t)


# --------------------------------------------------------------------------------------------
# Archetypes: normal courses (each a function of the per-patient context, drawing only from ctx.rng)


def steady_recovery(ctx: Ctx) -> Spec:
    schedule_pt(ctx)
    return Spec(base=_normal_recovery(ctx), deltas=_common_deltas(ctx))


def slow_conservative(ctx: Ctx) -> Spec:
    # Steady improvement over the whole history: slow, but never flat.
    schedule_pt(ctx)
    ctx.start["pain"] = max(ctx.start["pain"], 6.5)
    ctx.pre["pain"] = max(ctx.pre["pain"], ctx.start["pain"])
    span = ctx.n_days * ctx.rng.uniform(1.0, 1.4)
    return Spec(base=_normal_recovery(ctx, (0.9 * span, span)), deltas=_common_deltas(ctx))


def settled_flares(ctx: Ctx) -> Spec:
    rng = ctx.rng
    schedule_pt(ctx, min_per_week=2)
    sessions = _pick_sessions(ctx, rng.randint(3, 5), 10.0, ctx.n_days - 1.0, 7.0)
    deltas = _common_deltas(ctx, exclude=sessions)
    flares = []
    for e in sessions:
        # +2-3 the next morning, back to the trend before 72 h after the session.
        amp, hold, decay = rng.uniform(2.0, 3.2), rng.uniform(12.0, 24.0), rng.uniform(24.0, 42.0)
        deltas.append(_flare(ctx.t_of(e), amp, hold, decay, rise_h=rng.uniform(2.0, 8.0)))
        flares.append({"session_end": e.isoformat(), "amp": round(amp, 2), "settled_h": round(hold + decay, 1)})
    ctx.params["flares"] = flares
    return Spec(
        base=_normal_recovery(ctx),
        deltas=deltas,
        notes=_NOTES_FLARE,
        notes_from=10.0,
        detail={"flares": [e.astimezone(UTC).isoformat() for e in sessions]},
    )


def noisy_reporter(ctx: Ctx) -> Spec:
    schedule_pt(ctx)
    return Spec(
        base=_normal_recovery(ctx),
        deltas=_common_deltas(ctx),
        contradict_p=ctx.rng.uniform(0.04, 0.15),
    )


def slow_steady_improver(ctx: Ctx) -> Spec:
    """About 0.4 points better every week (0.25-0.6), week after week: below one MCID per 3 weeks."""
    rng = ctx.rng
    schedule_pt(ctx)
    weeks = ctx.n_days / 7.0
    start_pain = rng.uniform(max(5.0, 1.4 + 0.25 * weeks), 8.8)
    rate = rng.uniform(0.25, min(0.6, (start_pain - 1.4) / weeks))
    rates = {"pain": rate}
    starts = {"pain": start_pain}
    for s in ("tingling", "numbness", "weakness"):
        v0 = clamp(ctx.start[s], 1.5, 8.0)
        starts[s] = v0
        rates[s] = 0.0 if rng.random() < 0.2 else rng.uniform(0.1, min(0.6, max(0.1, (v0 - 0.5) / weeks)))
    for s, v in starts.items():
        ctx.pre[s] = max(ctx.pre[s], v)
    form = rng.choices(("linear", "weekly_steps", "wavy", "bent"), weights=(4, 3, 2, 2))[0]
    wobble_amp = rng.uniform(0.1, 0.3) if form == "wavy" else 0.0
    period = rng.uniform(10.0, 20.0)
    phase = rng.uniform(0.0, 2 * math.pi)
    bend = rng.uniform(-0.25, 0.25) if form == "bent" else 0.0  # slope varies within ±25%
    step_every = rng.uniform(5.0, 8.0)
    t_end = float(ctx.n_days)
    # Keep every 3-week window below one MCID (2 points), whatever the form.
    steps_in_21 = math.floor(21.0 / step_every) + 1 if form == "weekly_steps" else 21.0 / step_every
    worst_21 = {"linear": 3.0, "wavy": 3.0, "bent": 3.0 * (1 + abs(bend))}.get(form, steps_in_21 * step_every / 7.0)
    rate = min(rate, (1.85 - 2 * wobble_amp) / worst_21)
    if rate < 0.25:
        rate = 0.25
    rates["pain"] = rate

    def progress(t: float) -> float:
        """Weeks of improvement accrued by time t (linear in t on average)."""
        x = clamp(t, 0.0, t_end)
        if form == "weekly_steps":
            k = math.floor(x / step_every)
            frac = clamp((x - k * step_every) / 1.5, 0.0, 1.0)
            x = (k + frac) * step_every
        elif form == "bent":
            x = x + bend * x * (t_end - x) / t_end
        return x / 7.0

    def curve(s: str, t: float) -> float:
        v = starts[s] - rates[s] * progress(t)
        if wobble_amp and s == "pain":
            v += wobble_amp * math.sin(2 * math.pi * t / period + phase)
        return max(0.3, v)

    ctx.params["slow"] = {
        "form": form,
        "rates_per_week": {s: round(v, 3) for s, v in rates.items()},
        "start": {s: round(v, 2) for s, v in starts.items()},
        "wobble": round(wobble_amp, 2),
        "step_every_days": round(step_every, 2),
        "bend": round(bend, 3),
    }
    return Spec(base=curve, deltas=_common_deltas(ctx), detail={"pain_rate_per_week": round(rate, 3)})


def flare_settled(ctx: Ctx) -> Spec:
    """Flares after sessions (mostly vigorous) that settle within 72 h: nothing to alert."""
    rng = ctx.rng
    schedule_pt(ctx, min_per_week=2)
    sessions = _pick_sessions(ctx, rng.randint(2, 6), 7.0, ctx.n_days - 1.0, rng.uniform(5.0, 9.0))
    deltas = _common_deltas(ctx, exclude=sessions)
    flares = []
    for e in sessions:
        ctx.pt_intensity[e] = rng.choices(("vigorous", "moderate"), weights=(3, 1))[0]
        amp = rng.uniform(1.5, 4.0)
        rise = rng.uniform(1.5, 10.0)
        total = rng.uniform(max(rise + 8.0, 18.0), 62.0)  # settled well before 72 h
        hold = rng.uniform(rise, rise + 0.5 * (total - rise))
        smooth = rng.random() < 0.5
        deltas.append(
            _flare(
                ctx.t_of(e),
                amp,
                hold,
                total - hold,
                rise_h=rise,
                tingle=rng.uniform(0.0, 0.7),
                smooth=smooth,
            )
        )
        flares.append({"session_end": e.isoformat(), "amp": round(amp, 2), "settled_h": round(total, 1)})
    ctx.params["flares"] = flares
    return Spec(
        base=_normal_recovery(ctx),
        deltas=deltas,
        notes=_NOTES_FLARE,
        notes_from=7.0,
        detail={"flares": [e.astimezone(UTC).isoformat() for e in sessions]},
    )


def postop_dip(ctx: Ctx) -> Spec:
    """The normal post-operative dip: incision pain, grip and function worse for the first weeks."""
    rng = ctx.rng
    assert ctx.t_proc is not None
    schedule_pt(ctx)
    tp = ctx.t_proc
    base = _normal_recovery(ctx, (20.0, 60.0))
    lag = -tp
    # Incision pain peaks a few days after the operation, mostly after enrolment (so the rise is seen).
    peak = rng.uniform(lag + 0.5, lag + 6.0) if rng.random() < 0.8 else rng.uniform(1.0, max(1.5, lag))
    length = peak + rng.uniform(12.0, 30.0)
    amp = rng.uniform(1.5, 3.5)
    weak_amp = rng.uniform(0.3, 1.5)

    def incision(t: float) -> dict[str, float]:
        x = t - tp
        if not 0.0 <= x <= length:
            return {}
        v = x / peak if x < peak else 0.5 * (1.0 + math.cos(math.pi * (x - peak) / (length - peak)))
        return {"pain": amp * v, "weakness": weak_amp * v}

    grip: Callable[[float], float] | None = None
    g_pre = rng.uniform(9.0, 28.0)
    if ctx.profile.upper_limb:
        trough_day, trough = rng.uniform(5.0, 16.0), rng.uniform(0.5, 0.8)
        back_day = rng.uniform(42.0, 70.0)
        later = rng.uniform(1.05, 1.3)
        knots = [(0.0, rng.uniform(0.7, 0.95)), (trough_day, trough), (back_day, 1.0), (back_day + 42.0, later)]

        def grip_curve(t: float) -> float:
            return g_pre * _pl(t - tp, knots)

        grip = grip_curve
        ctx.params["grip"] = {"pre": round(g_pre, 1), "knots": [[round(a, 1), round(b, 3)] for a, b in knots]}
    fn_amp, fn_len = rng.uniform(0.08, 0.25), rng.uniform(21.0, 42.0)

    def function_delta(t: float) -> float:
        x = t - tp
        return fn_amp * max(0.0, 1.0 - x / fn_len) if x >= 0 else 0.0

    steps_low, steps_back = rng.uniform(0.55, 0.9), rng.uniform(10.0, 28.0)

    def steps_factor(day: int) -> float:
        x = day + 0.5 - tp
        return steps_low + (0.95 - steps_low) * clamp(x / steps_back, 0.0, 1.0)

    ctx.params["postop"] = {
        "incision_peak_day": round(peak, 1),
        "incision_length_days": round(length, 1),
        "incision_amp": round(amp, 2),
        "weakness_amp": round(weak_amp, 2),
        "function_amp": round(fn_amp, 3),
        "steps_low": round(steps_low, 2),
    }
    return Spec(
        base=base,
        deltas=[incision, _pt_soreness(ctx)],
        grip=grip,
        grip_pre=g_pre,
        function_delta=function_delta,
        steps_factor=steps_factor,
        notes=_NOTES_POSTOP,
        notes_from=0.0,
    )


def nerve_repair(ctx: Ctx) -> Spec:
    """After a nerve repair, the latent phase: dense unchanged numbness while axons regrow at about
    1 mm/day, tingling rising as the Tinel sign advances, pain stable. Nothing to alert."""
    rng = ctx.rng
    assert ctx.t_proc is not None
    schedule_pt(ctx, min_per_week=1)
    tp = ctx.t_proc
    band = rng.choices(((25.0, 60.0), (60.0, 150.0), (150.0, 250.0), (250.0, 380.0)), weights=(2, 3, 3, 2))[0]
    distance = rng.uniform(*band)
    rate = rng.uniform(0.8, 1.2) * REGROWTH_MM_PER_DAY
    delay = rng.uniform(14.0, 35.0)  # before axons cross the repair site
    latent_days = delay + distance / rate
    given: float | None = None
    if rng.random() < 0.5:
        given = round(distance * rng.uniform(0.9, 1.1) / 5.0) * 5.0 or 5.0
    numb = rng.uniform(6.0, 9.0)
    numb_gain = rng.uniform(0.2, 0.7) / 7.0  # per day once sensation returns
    ting0 = rng.uniform(0.5, 3.0)
    ting_rise = rng.uniform(2.0, 4.5)
    ting_span = rng.uniform(30.0, max(35.0, min(latent_days - delay, 120.0)))
    ting_kind = rng.choice(("linear", "logistic", "exponential"))
    pain0 = rng.uniform(2.0, 5.0)
    pain_slope = rng.uniform(0.0, 0.08) / 7.0
    weak = rng.uniform(4.0, 8.0)
    wobble = {s: (rng.uniform(0.0, 0.25), rng.uniform(9.0, 25.0), rng.uniform(0.0, 6.3)) for s in SYMPTOMS}

    def tinel(x: float) -> float:
        if x <= delay:
            return 0.0
        u = (x - delay) / ting_span
        if ting_kind == "linear":
            return min(1.0, u)
        if ting_kind == "exponential":
            return 1.0 - math.exp(-2.5 * u)
        return 1.0 / (1.0 + math.exp(-6.0 * (u - 0.5)))

    def curve(s: str, t: float) -> float:
        x = t - tp
        a, per, ph = wobble[s]
        w = a * math.sin(2 * math.pi * x / per + ph)
        if s == "numbness":
            return numb - numb_gain * max(0.0, x - latent_days) + w
        if s == "tingling":
            return min(8.5, ting0 + ting_rise * tinel(x)) + w
        if s == "pain":
            return max(1.0, pain0 - pain_slope * max(0.0, x)) + w
        return weak + w

    g_low = rng.uniform(3.0, 12.0)
    grip = (lambda t: g_low) if ctx.profile.upper_limb else None
    ctx.params["nerve_repair"] = {
        "distance_mm": round(distance, 1),
        "regrowth_mm_per_day": round(rate, 2),
        "delay_days": round(delay, 1),
        "latent_days": round(latent_days, 1),
        "given_distance_mm": given,
        "numbness": round(numb, 2),
        "tingling": {"start": round(ting0, 2), "rise": round(ting_rise, 2), "span_days": round(ting_span, 1)},
        "tingling_kind": ting_kind,
        "pain": round(pain0, 2),
        "weakness": round(weak, 2),
    }
    ctx.pre.update({"numbness": numb, "tingling": ting0, "pain": pain0 + rng.uniform(0.0, 1.5), "weakness": weak})
    return Spec(
        base=curve,
        deltas=[_pt_soreness(ctx)],
        grip=grip,
        grip_pre=g_low,
        repair_distance_mm=given,
        notes=_NOTES_REGROWTH,
        notes_from=0.0,
        detail={"latent_phase_end": ctx.at(tp + latent_days).isoformat()},
    )


def typical_ctr(ctx: Ctx) -> Spec:
    """A typical carpal tunnel release course, from published figures.

    - Tingling and night symptoms settle within 1-2 weeks, numbness over 6-8 weeks (the time course
      given in the issue; consistent with most hands improving within a month after release,
      Park et al., J Korean Neurosurg Soc 2014;56(5):390-394).
    - Grip 14.8 kg before surgery, 13.0 kg at 6 weeks, 16.2 kg at 3 months (means of 50 hands:
      Heo YM et al., J Korean Orthop Assoc 2011;46(2):99-106, doi:10.4055/jkoa.2011.46.2.99), with
      a trough in the first 2-3 weeks (grip falls by about a third right after open release).
    Each patient is scaled around those means.
    """
    rng = ctx.rng
    assert ctx.t_proc is not None
    if rng.random() < 0.4:  # most patients need no therapy after a release
        schedule_pt(ctx)
    tp = ctx.t_proc
    pre = {
        "pain": rng.uniform(3.5, 6.5),
        "tingling": rng.uniform(5.0, 8.0),
        "numbness": rng.uniform(4.0, 7.0),
        "weakness": rng.uniform(1.5, 4.0),
    }
    ctx.pre.update(pre)
    ting_floor, ting_t90 = rng.uniform(0.3, 1.5), rng.uniform(7.0, 14.0)
    numb_floor, numb_t90 = rng.uniform(0.5, 2.0), rng.uniform(42.0, 56.0)
    pain_start, pain_floor, pain_t90 = rng.uniform(3.0, 5.5), rng.uniform(0.5, 2.0), rng.uniform(18.0, 35.0)
    weak_bump, weak_floor, weak_t90 = rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.5), rng.uniform(50.0, 84.0)
    kinds = ("exponential", "linear", "logistic", "power")
    ting = shapes.draw(rng, ting_t90, kinds=kinds)
    numb = shapes.draw(rng, numb_t90, kinds=kinds)
    pain = shapes.draw(rng, pain_t90, kinds=kinds)
    weak = shapes.draw(rng, weak_t90, kinds=kinds)

    def curve(s: str, t: float) -> float:
        x = max(0.0, t - tp)
        if s == "tingling":
            return ting_floor + (pre["tingling"] - ting_floor) * (1.0 - ting(x))
        if s == "numbness":
            return numb_floor + (pre["numbness"] - numb_floor) * (1.0 - numb(x))
        if s == "pain":
            return pain_floor + (pain_start - pain_floor) * (1.0 - pain(x))
        bump = weak_bump * max(0.0, 1.0 - x / 14.0)
        return weak_floor + (pre["weakness"] - weak_floor) * (1.0 - weak(x)) + bump

    g_pre = clamp(rng.gauss(14.8, 3.5), 7.0, 28.0)
    r6 = 13.0 / 14.8 * rng.uniform(0.93, 1.07)
    r12 = 16.2 / 14.8 * rng.uniform(0.93, 1.07)
    r26 = 18.7 / 14.8 * rng.uniform(0.93, 1.07)
    trough_day, trough = rng.uniform(7.0, 18.0), rng.uniform(0.6, 0.8)
    knots = [(0.0, rng.uniform(0.65, 0.9)), (trough_day, trough), (42.0, r6), (84.0, r12), (182.0, r26)]

    def grip(t: float) -> float:
        return g_pre * _pl(t - tp, knots)

    fn_amp, fn_len = rng.uniform(0.05, 0.15), rng.uniform(14.0, 28.0)

    def function_delta(t: float) -> float:
        x = t - tp
        return fn_amp * max(0.0, 1.0 - x / fn_len) if x >= 0 else 0.0

    ctx.params["ctr"] = {
        "pre": {s: round(v, 2) for s, v in pre.items()},
        "tingling": {"floor": round(ting_floor, 2), "t90_days": round(ting_t90, 1), "shape": ting.describe()},
        "numbness": {"floor": round(numb_floor, 2), "t90_days": round(numb_t90, 1), "shape": numb.describe()},
        "pain": {"start": round(pain_start, 2), "floor": round(pain_floor, 2), "t90_days": round(pain_t90, 1)},
        "weakness": {"bump": round(weak_bump, 2), "floor": round(weak_floor, 2)},
        "grip": {"pre": round(g_pre, 1), "knots": [[round(a, 1), round(b, 3)] for a, b in knots]},
    }
    return Spec(
        base=curve,
        deltas=[_pt_soreness(ctx)],
        grip=grip,
        grip_pre=g_pre,
        function_delta=function_delta,
        baseline_p=0.8,
        notes=_NOTES_POSTOP,
        notes_from=0.0,
    )


# --------------------------------------------------------------------------------------------
# Archetypes: abnormal courses


def persistent_flare(ctx: Ctx) -> Spec:
    rng = ctx.rng
    schedule_pt(ctx, min_per_week=1)
    sessions = _pick_sessions(ctx, 1, 25.0, ctx.n_days - 14.0, 1.0)
    te_dt = sessions[0] if sessions else add_session(ctx, rng.randint(25, ctx.n_days - 14), "vigorous")
    ctx.pt_intensity[te_dt] = "vigorous"
    te = ctx.t_of(te_dt)
    hold_h = rng.uniform(4.5, 9.0) * 24.0
    decay_h = rng.uniform(48.0, 144.0)
    # Therapy is paused while the flare lasts.
    ctx.pt_ends[:] = [e for e in ctx.pt_ends if not te < ctx.t_of(e) < te + (hold_h + decay_h) / 24.0]
    earlier = _pick_sessions(ctx, rng.randint(0, 2), 10.0, te - 7.0, 7.0)
    deltas = _common_deltas(ctx, exclude=[*earlier, te_dt])
    for e in earlier:
        deltas.append(_flare(ctx.t_of(e), rng.uniform(2.0, 2.8), rng.uniform(12.0, 20.0), rng.uniform(24.0, 40.0)))
    amp = rng.uniform(2.5, 4.0)
    deltas.append(_flare(te, amp, hold_h, decay_h, rise_h=rng.uniform(2.0, 10.0), tingle=rng.uniform(0.2, 0.6)))
    d_s = ctx.start_date.toordinal()
    session_day = te_dt.astimezone(ctx.tz).date().toordinal() - d_s
    ctx.params["flare"] = {"amp": round(amp, 2), "hold_h": round(hold_h, 1), "decay_h": round(decay_h, 1)}
    return Spec(
        base=_normal_recovery(ctx, until=te),
        deltas=deltas,
        expected=frozenset({"persistent_flare"}),
        tolerated=frozenset({"regression"}),
        onset_from=te + 3.0,  # a flare becomes abnormal when it has not settled 72 h after the session
        force_days={session_day + 3, session_day + 4},
        notes=_NOTES_FLARE,
        notes_from=te,
        detail={"flare_session_end": te_dt.astimezone(UTC).isoformat(), "flare_hold_days": round(hold_h / 24, 1)},
    )


def flare_unsettled(ctx: Ctx) -> Spec:
    """A flare after a vigorous session still there 72 h later: persistent_flare within 5 days."""
    rng = ctx.rng
    schedule_pt(ctx, min_per_week=1)
    sessions = _pick_sessions(ctx, 1, 12.0, ctx.n_days - 10.0, 1.0)
    te_dt = sessions[0] if sessions else add_session(ctx, rng.randint(12, ctx.n_days - 10), "vigorous")
    ctx.pt_intensity[te_dt] = "vigorous"
    te = ctx.t_of(te_dt)
    amp = rng.uniform(2.5, 4.5)
    rise_h = rng.uniform(2.0, 16.0)
    hold_h = rng.uniform(3.6, 8.0) * 24.0
    decay_h = rng.uniform(36.0, 144.0)
    continued = rng.random() < 0.3
    if continued:  # light sessions carry on during the flare
        for e in ctx.pt_ends:
            if te < ctx.t_of(e) < te + (hold_h + decay_h) / 24.0:
                ctx.pt_intensity[e] = "light"
    else:
        ctx.pt_ends[:] = [e for e in ctx.pt_ends if not te < ctx.t_of(e) < te + (hold_h + decay_h) / 24.0]
    earlier = _pick_sessions(ctx, rng.randint(0, 2), 7.0, te - 6.0, 6.0)
    deltas = _common_deltas(ctx, exclude=[*earlier, te_dt])
    for e in earlier:
        deltas.append(_flare(ctx.t_of(e), rng.uniform(1.5, 3.0), rng.uniform(8.0, 20.0), rng.uniform(20.0, 40.0)))
    tingle, weak = rng.uniform(0.2, 0.8), rng.choice((0.0, rng.uniform(0.1, 0.3)))
    deltas.append(_flare(te, amp, hold_h, decay_h, rise_h=rise_h, tingle=tingle, weak=weak, smooth=rng.random() < 0.5))
    session_day = te_dt.astimezone(ctx.tz).date().toordinal() - ctx.start_date.toordinal()
    ctx.params["flare"] = {
        "amp": round(amp, 2),
        "rise_h": round(rise_h, 1),
        "hold_h": round(hold_h, 1),
        "decay_h": round(decay_h, 1),
        "tingling_ratio": round(tingle, 2),
        "weakness_ratio": round(weak, 2),
        "therapy_continued": continued,
        "earlier_settled_flares": len(earlier),
    }
    return Spec(
        base=_normal_recovery(ctx, until=te),
        deltas=deltas,
        expected=frozenset({"persistent_flare"}),
        tolerated=frozenset({"regression"}),
        onset_from=te + 3.0,
        due_from=te + 5.0,  # no later than 5 days after the session
        force_days={session_day + 3, session_day + 4},
        notes=_NOTES_FLARE,
        notes_from=te,
        detail={"flare_session_end": te_dt.astimezone(UTC).isoformat(), "flare_hold_days": round(hold_h / 24, 1)},
    )


def regression(ctx: Ctx) -> Spec:
    rng = ctx.rng
    schedule_pt(ctx)
    r = rng.uniform(25.0, ctx.n_days - 14.0)
    base = _normal_recovery(ctx, (12.0, 45.0), until=r)
    ramp = rng.uniform(0.5, 4.0)
    mode = rng.choices(("pain", "numbness", "both"), weights=(4, 2.5, 3.5))[0]
    if mode == "numbness" and ctx.pre["numbness"] < 4.5:
        mode = "pain"
    syms = ("pain", "numbness") if mode == "both" else (mode,)
    amps: dict[str, float] = {}
    for s in syms:
        amps[s] = clamp(rng.uniform(0.7, 1.0) * (ctx.pre[s] - base(s, r)), 2.6, 4.8)
    if "numbness" in amps:
        amps["tingling"] = rng.uniform(0.3, 0.7) * amps["numbness"]
    if ctx.profile.upper_limb and rng.random() < 0.5:
        amps["weakness"] = rng.uniform(1.0, 2.0)  # grip strength drops with it
    form = rng.choice(("linear", "smooth"))

    def delta(t: float) -> dict[str, float]:
        if t < r:
            return {}
        x = min(1.0, (t - r) / ramp)
        frac = x if form == "linear" else 0.5 * (1.0 - math.cos(math.pi * x))
        return {s: a * frac for s, a in amps.items()}

    # Observable once the rise reaches the MCID (2 points) in the leading symptom.
    lead = max(amps[s] for s in syms)
    x2 = min(1.0, 2.0 / lead)
    if form == "smooth":
        x2 = math.acos(1.0 - 2.0 * x2) / math.pi
    onset_t = r + ramp * x2
    # Avoid confounding with a post-PT flare: no PT in the two days before the turn.
    ctx.pt_ends[:] = [e for e in ctx.pt_ends if not r - 2.0 < ctx.t_of(e) < r + 1.0]
    ctx.params["regression"] = {"turn_t": round(r, 2), "ramp_days": round(ramp, 2), "form": form}
    return Spec(
        base=base,
        deltas=[*_common_deltas(ctx), delta],
        expected=frozenset({"regression"}),
        tolerated=frozenset({"persistent_flare"}),
        onset_from=onset_t,
        notes=_NOTES_WORSE,
        notes_from=r,
        detail={"mode": mode, "amplitude": {s: round(a, 2) for s, a in amps.items()}},
    )


def _approach(ctx: Ctx, t_to: float, kinds: Sequence[str]) -> tuple[Callable[[float], float], dict[str, Any]]:
    """Progress from 0 at t = 0 to exactly 1 at `t_to`, of a random shape."""
    shape = shapes.draw(ctx.rng, t_to * ctx.rng.uniform(0.6, 1.0), kinds=kinds)
    norm = shape(t_to) or 1.0

    def q(t: float) -> float:
        if t <= 0.0:
            return 0.0
        if t >= t_to:
            return 1.0
        return min(1.0, shape(t) / norm)

    return q, shape.describe()


def _stall(ctx: Ctx, flat_t: float, level: dict[str, float]) -> Spec:
    """Improvement to `level` by `flat_t`, then flat (within a small wobble) to the end."""
    rng = ctx.rng
    for s in SYMPTOMS:
        level[s] = min(level[s], ctx.start[s])
    ctx.start["pain"] = max(ctx.start["pain"], level["pain"] + rng.uniform(2.0, 3.5))
    ctx.pre["pain"] = max(ctx.pre["pain"], ctx.start["pain"])
    q, desc = _approach(ctx, flat_t, ("exponential", "linear", "power", "logistic", "steps"))
    drift = rng.uniform(-0.07, 0.07) / 7.0  # points per day, either way: flat within noise
    wob_amp, wob_per, wob_ph = rng.uniform(0.0, 0.25), rng.uniform(8.0, 20.0), rng.uniform(0.0, 6.3)
    start = dict(ctx.start)

    def curve(s: str, t: float) -> float:
        if t < flat_t:
            return start[s] - (start[s] - level[s]) * q(t)
        return level[s] + drift * (t - flat_t) + wob_amp * math.sin(2 * math.pi * (t - flat_t) / wob_per + wob_ph)

    ctx.params["stall"] = {
        "flat_t": round(flat_t, 2),
        "level": {s: round(v, 2) for s, v in level.items()},
        "approach": desc,
        "drift_per_week": round(drift * 7.0, 3),
        "wobble": round(wob_amp, 2),
    }
    onset_t = flat_t + 21.0
    return Spec(
        base=curve,
        deltas=_common_deltas(ctx),
        expected=frozenset({"plateau"}),
        onset_from=onset_t,  # the 21st flat day
        earliest_from=flat_t - 1.0,
        due_days=7.0,
        detail={"flat_start": ctx.at(flat_t).isoformat(), "plateau_pain": round(level["pain"], 2)},
    )


def plateau(ctx: Ctx) -> Spec:
    rng = ctx.rng
    schedule_pt(ctx)
    p = rng.uniform(21.0, 35.0)
    level = {
        "pain": rng.uniform(3.8, 5.5),
        "tingling": rng.uniform(2.8, 4.5),
        "numbness": rng.uniform(2.5, 4.0),
        "weakness": rng.uniform(1.2, 2.5),
    }
    return _stall(ctx, p, level)


def stall_moderate(ctx: Ctx) -> Spec:
    """Pain 3-4/10 with tingling 2-3/10, flat for 3+ weeks from 5-6 weeks after procedure/onset."""
    rng = ctx.rng
    schedule_pt(ctx)
    flat_t = float(ctx.params["timing"]["flat_t"])
    level = {
        "pain": rng.uniform(3.0, 4.0),
        "tingling": rng.uniform(2.0, 3.0),
        "numbness": rng.uniform(1.0, 3.5),
        "weakness": rng.uniform(0.5, 2.5),
    }
    return _stall(ctx, flat_t, level)


def early_recurrence(ctx: Ctx) -> Spec:
    """About 5 weeks after carpal or cubital tunnel release: pain back to its pre-operative level,
    weakness up 2 points, grip down 6 kg. Regression within 3 days of the return to pre-op level."""
    rng = ctx.rng
    assert ctx.t_proc is not None
    schedule_pt(ctx)
    tp = ctx.t_proc
    r0 = tp + float(ctx.params["timing"]["recur_after_days"])
    ramp = float(ctx.params["timing"]["ramp_days"])
    # Recovered by the turn: pain at least 2.5 below its pre-operative level.
    ctx.floor["pain"] = min(ctx.floor["pain"], ctx.pre["pain"] - 3.0)
    base = _normal_recovery(ctx, (10.0, 30.0), until=r0)
    at_turn = {s: base(s, r0) for s in SYMPTOMS}
    pain_target = ctx.pre["pain"] + rng.uniform(-0.1, 0.5)
    back = {
        "pain": pain_target - at_turn["pain"],
        "tingling": rng.uniform(0.6, 1.0) * max(0.0, ctx.pre["tingling"] - at_turn["tingling"]),
        "numbness": rng.uniform(0.3, 0.9) * max(0.0, ctx.pre["numbness"] - at_turn["numbness"]),
        "weakness": rng.uniform(2.0, 2.6),
    }
    form = rng.choice(("linear", "smooth", "logistic"))

    def frac(t: float) -> float:
        x = clamp((t - r0) / ramp, 0.0, 1.0)
        if form == "linear":
            return x
        if form == "smooth":
            return 0.5 * (1.0 - math.cos(math.pi * x))
        lo, hi = 1.0 / (1.0 + math.exp(6.0)), 1.0 / (1.0 + math.exp(-6.0))
        return (1.0 / (1.0 + math.exp(-12.0 * (x - 0.5))) - lo) / (hi - lo)

    def delta(t: float) -> dict[str, float]:
        if t < r0:
            return {}
        f = frac(t)
        out = {s: v * f for s, v in back.items()}
        out["pain"] = (pain_target - base("pain", t)) * f  # lands on the target whatever the trend
        return out

    dip = _postop_dip(ctx, amp=(0.3, 1.2))
    g_pre = rng.uniform(9.0, 26.0)
    trough_day, trough = rng.uniform(5.0, 14.0), rng.uniform(0.6, 0.85)
    knots = [(0.0, rng.uniform(0.7, 0.9)), (trough_day, trough), (42.0, rng.uniform(0.85, 1.0)), (84.0, 1.1)]
    drop = rng.uniform(5.5, 7.0)

    def grip(t: float) -> float:
        # The post-operative recovery of grip stops at the turn; from there it falls by `drop`.
        return max(2.0, g_pre * _pl(min(t, r0) - tp, knots) - drop * frac(t))

    # The time symptoms return to the pre-operative level (latent pain within 0.25 of it).
    def back_to_pre(t: float) -> bool:
        return base("pain", t) + delta(t)["pain"] >= ctx.pre["pain"] - 0.25

    lo_t, hi_t = r0, r0 + ramp
    for _ in range(40):
        mid = 0.5 * (lo_t + hi_t)
        lo_t, hi_t = (lo_t, mid) if back_to_pre(mid) else (mid, hi_t)
    returned_t = hi_t
    ctx.pt_ends[:] = [e for e in ctx.pt_ends if not r0 - 2.0 < ctx.t_of(e) < returned_t + 1.0]
    ctx.params["recurrence"] = {
        "turn_t": round(r0, 2),
        "ramp_days": round(ramp, 2),
        "form": form,
        "returned_t": round(returned_t, 2),
        "rise": {s: round(v, 2) for s, v in back.items()},
        "grip_pre": round(g_pre, 1),
        "grip_drop_kg": round(drop, 2),
    }
    deltas: list[Delta] = [delta, _pt_soreness(ctx)]
    if dip is not None:
        deltas.insert(0, dip)
    return Spec(
        base=base,
        deltas=deltas,
        expected=frozenset({"regression"}),
        tolerated=frozenset({"persistent_flare"}),
        onset_from=returned_t,
        earliest_from=r0 - 1.0,
        due_days=3.0,
        grip=grip,
        grip_pre=g_pre,
        baseline_p=0.7,
        force_days={_day_of(returned_t), _day_of(returned_t) + 1},
        notes=_NOTES_WORSE,
        notes_from=r0,
        detail={"turn": ctx.at(r0).isoformat(), "pre_op_pain": round(ctx.pre["pain"], 2)},
    )


def red_flag(ctx: Ctx) -> Spec:
    rng = ctx.rng
    schedule_pt(ctx)
    choices = ctx.profile.red_flags + (_POSTOP_RED_FLAGS if ctx.postop else ())
    flag = rng.choice(choices)
    day = rng.randint(3, ctx.n_days - 2)
    return Spec(
        base=_normal_recovery(ctx),
        deltas=_common_deltas(ctx),
        expected=frozenset({"red_flag"}),
        red_flag=(day, flag),
        force_days={day},
        detail={"red_flag": flag},
    )


def spreading_numbness(ctx: Ctx) -> Spec:
    rng = ctx.rng
    schedule_pt(ctx)
    s0 = rng.uniform(14.0, ctx.n_days - 10.0)
    rise = rng.uniform(2.0, 3.5)
    rise_days = rng.uniform(3.0, 9.0)

    def delta(t: float) -> dict[str, float]:
        if t < s0:
            return {}
        v = rise * min(1.0, (t - s0) / rise_days)
        return {"numbness": v, "tingling": 0.5 * v}

    notes = _NOTES_SPREAD_UPPER if ctx.profile.upper_limb else _NOTES_SPREAD_LOWER
    ctx.params["spreading"] = {"start_t": round(s0, 2), "rise": round(rise, 2), "rise_days": round(rise_days, 2)}
    return Spec(
        base=_normal_recovery(ctx, until=s0),
        deltas=[*_common_deltas(ctx), delta],
        expected=frozenset({"spreading_symptoms"}),
        tolerated=frozenset({"regression"}),
        onset_from=s0,
        spreading_from=s0,
        notes=notes,
        notes_from=s0,
    )


def activity_decline(ctx: Ctx) -> Spec:
    rng = ctx.rng
    schedule_pt(ctx)
    a = rng.randint(25, ctx.n_days - 16)
    # Early steps run at ~0.9-1.0 of `steps_base`: this is a >= 45% drop against the patient's baseline.
    level = rng.uniform(0.25, 0.5)
    ramp = rng.choice((0, 0, rng.randint(1, 5)))

    def steps_factor(day: int) -> float | None:
        if day < a:
            return None
        return 0.95 - (0.95 - level) * min(1.0, (day - a + 1) / (ramp + 1))

    # Onset: the local midnight starting the first day at or below 60% of the usual level.
    first_low = next(d for d in range(a, ctx.n_days) if (steps_factor(d) or 1.0) <= 0.6)
    ctx.params["activity"] = {"decline_day": a, "ramp_days": ramp, "level": round(level, 2)}
    return Spec(
        base=_normal_recovery(ctx),
        deltas=_common_deltas(ctx),
        expected=frozenset({"activity_decline"}),
        onset_fixed=ctx.midnight(first_low).astimezone(UTC),
        steps_factor=steps_factor,
        wearable_required=True,
        detail={"decline_day": a, "steps_level": round(level, 2)},
    )


def disengagement(ctx: Ctx) -> Spec:
    rng = ctx.rng
    schedule_pt(ctx)
    if rng.random() < 0.6:
        length = rng.randint(7, 14)
        first = rng.randint(20, ctx.n_days - length - 5)
        variant = "mid_history"
    else:
        length = rng.randint(7, 12)
        first = ctx.n_days - length
        # The last check-in (up to 23:59 local the day before the gap) is >= `length` days before `end`.
        while ctx.local(first - 1, 23, 59) + timedelta(days=length) > ctx.end:
            first -= 1
        variant = "until_end"
    return Spec(
        base=_normal_recovery(ctx),
        deltas=_common_deltas(ctx),
        expected=frozenset({"disengagement"}),
        gap=(first, first + length),
        onset_last_before_gap=True,
        force_days={first - 1},
        detail={"variant": variant, "gap_days": length},
    )


ARCHETYPE_FUNCS: dict[str, Callable[[Ctx], Spec]] = {
    "steady_recovery": steady_recovery,
    "slow_conservative": slow_conservative,
    "settled_flares": settled_flares,
    "noisy_reporter": noisy_reporter,
    "slow_steady_improver": slow_steady_improver,
    "flare_settled": flare_settled,
    "postop_dip": postop_dip,
    "nerve_repair": nerve_repair,
    "typical_ctr": typical_ctr,
    "persistent_flare": persistent_flare,
    "regression": regression,
    "plateau": plateau,
    "red_flag": red_flag,
    "spreading_numbness": spreading_numbness,
    "activity_decline": activity_decline,
    "disengagement": disengagement,
    "stall_moderate": stall_moderate,
    "flare_unsettled": flare_unsettled,
    "early_recurrence": early_recurrence,
}
