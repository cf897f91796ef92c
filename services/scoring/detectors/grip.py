"""Grip strength drop: the current grip (median of the last grip_readings readings within 7 days, at
least grip_min_readings) >= grip_mcid_kg below the reference (the highest weekly median at
reference_gap_days + 7k days back, k < reference_weeks). It ends when grip is back within half the
MCID of the reference, and raises the regression signal with reason `grip_drop`.

Expected course after a decompression: grip is not assessed in the first grip_quiet_days, and
while the grip_floor curve is below 1 a drop must also take grip below that fraction of the
pre-operative grip (when the enrolment baseline gives it). Readings: the dynamometer, else the
check-in value.
"""

from __future__ import annotations

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
    event_of,
    fmt,
    median,
    reason,
)

KEEP_DAYS = 32


@dataclass(frozen=True, slots=True)
class GripEpisode:
    start: int
    detected: int
    ref: float
    current: float
    floor: float | None
    event_time: datetime | None
    event_id: str | None


@dataclass(frozen=True, slots=True)
class GripState:
    readings: tuple[tuple[int, float], ...] = ()  # (ordinal, kg) of the last KEEP_DAYS days
    head: tuple[float, ...] = ()  # the first baseline_days readings
    last: tuple[float, ...] = ()  # the newest grip_readings readings, whenever they were
    episode: GripEpisode | None = None

    def baseline(self, patient: Patient) -> float | None:
        b = patient.profile.baseline
        if b is not None and b.grip_strength_kg is not None:
            return b.grip_strength_kg
        return median(self.head) if self.head else None


def initial(patient: Patient) -> GripState:
    return GripState()


def step(state: GripState, ctx: StepCtx) -> GripState:
    rec, cp, o = ctx.rec, ctx.patient.clinical, ctx.o
    g = rec.device_grip_strength_kg if rec.device_grip_strength_kg is not None else rec.grip_strength_kg
    if g is None:
        return state
    readings = (*(r for r in state.readings if r[0] > o - KEEP_DAYS), (o, g))
    head = state.head if len(state.head) >= cp.baseline_days else (*state.head, g)
    last = (*state.last, g)[-cp.grip_readings :]
    course = ctx.patient.course
    if course.grip_quiet(o):
        return GripState(readings, head, last, None)
    window = [r for r in readings if r[0] >= o - 6][-cp.grip_readings :]
    if len(window) < cp.grip_min_readings:
        return GripState(readings, head, last, state.episode)
    cur = median([kg for _, kg in window])
    ep = state.episode
    if ep is not None:
        return GripState(readings, head, last, None if cur >= ep.ref - cp.grip_mcid_kg / 2 else ep)
    # After a decompression the readings of the quiet weeks (the expected dip, and the first days
    # before it deepens) are not a reference.
    floor_ord = course.procedure + cp.grip_quiet_days if course.procedure is not None else None
    weekly: list[float] = []
    for w in range(cp.reference_weeks):
        hi = o - cp.reference_gap_days - 7 * w
        vals = [kg for ro, kg in readings if hi - 6 <= ro <= hi and (floor_ord is None or ro >= floor_ord)]
        if vals:
            weekly.append(median(vals))
    if not weekly or cur > max(weekly) - cp.grip_mcid_kg:
        return GripState(readings, head, last, None)
    floor_frac = course.grip_floor(o)
    pre = ctx.patient.profile.baseline.grip_strength_kg if ctx.patient.profile.baseline is not None else None
    floor = pre * floor_frac if floor_frac is not None and pre is not None else None
    if floor is not None and cur >= floor:
        return GripState(readings, head, last, None)  # within the expected post-operative dip
    t, eid = event_of(rec)
    return GripState(readings, head, last, GripEpisode(window[0][0], o, max(weekly), cur, floor, t, eid))


def note(state: GripState, patient: Patient) -> Reason | None:
    """Grip now (median of the newest readings) against baseline, in grip MCIDs."""
    gb = state.baseline(patient)
    if gb is None or not state.last:
        return None
    mcid = patient.clinical.grip_mcid_kg
    cur = median(state.last)
    tail = f"grip {fmt(gb)} -> {fmt(cur)} kg (MCID {fmt(mcid)} kg)"
    if cur - gb >= mcid:
        return reason("grip_improved_mcid", tail)
    if gb - cur >= mcid:
        return reason("grip_declined_mcid", tail)
    return reason("grip_unchanged", tail)


def findings(state: GripState, ctx: AssessCtx) -> tuple[Finding, ...]:
    measure = note(state, ctx.patient)
    notes = (Finding(NOTE, (measure,)),) if measure is not None else ()
    ep = state.episode
    if ep is None:
        return notes
    detail = f"grip {fmt(ep.ref)} -> {fmt(ep.current)} kg (MCID {fmt(ctx.patient.clinical.grip_mcid_kg)} kg"
    detail += f", below the expected post-operative {fmt(ep.floor)} kg)" if ep.floor is not None else ")"
    why = reason("grip_drop", detail)
    signal = Signal(
        code=SignalCode.regression,
        since=day_of(ep.start),
        event_time=ep.event_time or ctx.as_of,
        event_id=ep.event_id,
        reasons=[why],
    )
    return (Finding("grip_drop", (why,), signal, ep.detected), *notes)


DETECTOR: Detector[GripState] = Detector("grip", initial, step, findings)
