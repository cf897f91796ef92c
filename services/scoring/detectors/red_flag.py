"""Red flags: one `red_flag` signal per red-flag check-in version recorded within the window before as_of.

Contract (unchanged from engine v1, see docs/safety.md): for every RedFlagObs with
0 <= as_of - recorded_at <= red_flag_window_hours, one Signal with that observation's event_id,
event_time = recorded_at, flags and received_at, oldest day first. Overrides every other state,
including too few days. The state keeps the observations of the last few local days only: an
observation of an older day was recorded before the start of a day at least 3 days before the
newest day, so it can no longer be within 72 h of an as_of on or after that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from schemas.trajectory import Signal, SignalCode
from services.scoring.detectors.base import AssessCtx, Detector, Finding, Patient, StepCtx, day_of, fmt, reason
from services.scoring.model import RedFlagObs


@dataclass(frozen=True, slots=True)
class RedFlagState:
    # (ordinal of the local day, observation), oldest day first, within the window's reach.
    obs: tuple[tuple[int, RedFlagObs], ...] = ()


def initial(patient: Patient) -> RedFlagState:
    return RedFlagState()


def _keep_days(hours: float) -> int:
    # Observations of the newest `keep` days can still be inside the window (one spare day for DST).
    return int(hours // 24) + 2


def step(state: RedFlagState, ctx: StepCtx) -> RedFlagState:
    rec, o = ctx.rec, ctx.o
    keep = o - _keep_days(ctx.patient.clinical.red_flag_window_hours)
    obs = state.obs
    if obs and obs[0][0] < keep:
        obs = tuple(e for e in obs if e[0] >= keep)
    if rec.red_flags:
        observed = rec.red_flag_obs or (
            (
                RedFlagObs(
                    rec.red_flag_event_id or "", rec.red_flag_recorded_at, rec.red_flag_recorded_at, rec.red_flags
                ),
            )
            if rec.red_flag_recorded_at is not None
            else ()
        )
        obs = (*obs, *((o, ob) for ob in observed))
    return state if obs is state.obs else RedFlagState(obs)


def signals(state: RedFlagState, ctx: AssessCtx) -> list[Signal]:
    hours = ctx.patient.clinical.red_flag_window_hours
    window = timedelta(hours=hours)
    out: list[Signal] = []
    for o, ob in state.obs:
        age = ctx.as_of - ob.recorded_at
        if not timedelta(0) <= age <= window:
            continue
        why = reason(
            "red_flag_reported",
            f"red flag reported: {', '.join(ob.flags)} ({fmt(age.total_seconds() / 3600.0)} h before "
            f"as_of, window {fmt(hours)} h)",
        )
        out.append(
            Signal(
                code=SignalCode.red_flag,
                since=day_of(o),
                event_time=ob.recorded_at,
                event_id=ob.event_id or None,
                reasons=[why],
                flags=list(ob.flags),
                received_at=ob.received_at,
            )
        )
    return out


def findings(state: RedFlagState, ctx: AssessCtx) -> tuple[Finding, ...]:
    sigs = signals(state, ctx)
    if not sigs:
        return ()
    flags = sorted({f for sig in sigs for f in sig.flags})
    newest = max(sig.event_time for sig in sigs)
    hours = (ctx.as_of - newest).total_seconds() / 3600.0
    why = reason(
        "red_flag_reported",
        f"red flag reported: {', '.join(flags)} (latest {fmt(hours)} h before as_of, window "
        f"{fmt(ctx.patient.clinical.red_flag_window_hours)} h)",
    )
    first = Finding("red_flag", (why,), sigs[0], None)
    return (first, *(Finding("red_flag", (), s, None) for s in sigs[1:]))


DETECTOR: Detector[RedFlagState] = Detector("red_flag", initial, step, findings)
