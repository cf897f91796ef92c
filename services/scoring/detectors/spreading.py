"""Spreading numbness: open from the first check-in reporting it until `spreading_clear_days` later
check-in days without it; never expires with time and counts after a procedure too.

The `spreading_symptoms` signal names the first reporting check-in of the episode (event id and
recorded_at; since = its local date), on every assessment while the episode is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.trajectory import Signal, SignalCode
from services.scoring.detectors.base import AssessCtx, Detector, Finding, Patient, StepCtx, day_of, event_of, reason


@dataclass(frozen=True, slots=True)
class SpreadingState:
    start: int | None = None  # ordinal of the episode's first reporting day
    event_id: str | None = None
    event_time: datetime | None = None  # None: the assessment's as_of
    clear: int = 0  # check-in days without spreading since the last report


def initial(patient: Patient) -> SpreadingState:
    return SpreadingState()


def step(state: SpreadingState, ctx: StepCtx) -> SpreadingState:
    rec = ctx.rec
    if rec.numbness_spreading:
        if state.start is None:
            fallback, _ = event_of(rec)
            return SpreadingState(ctx.o, rec.spreading_event_id, rec.spreading_recorded_at or fallback, 0)
        return state if state.clear == 0 else SpreadingState(state.start, state.event_id, state.event_time, 0)
    if state.start is not None and rec.checkins > 0:
        clear = state.clear + 1
        if clear >= ctx.patient.clinical.spreading_clear_days:
            return SpreadingState()
        return SpreadingState(state.start, state.event_id, state.event_time, clear)
    return state


def findings(state: SpreadingState, ctx: AssessCtx) -> tuple[Finding, ...]:
    if state.start is None:
        return ()
    since = day_of(state.start)
    signal = Signal(
        code=SignalCode.spreading_symptoms,
        since=since,
        event_time=state.event_time or ctx.as_of,
        event_id=state.event_id,
        reasons=[
            reason(
                "numbness_spreading",
                f"numbness beyond the usual nerve territory reported on {since.isoformat()}",
            )
        ],
    )
    why = reason("numbness_spreading", "numbness spreading beyond one nerve territory")
    return (Finding("spreading_numbness", (why,), signal, state.start),)


DETECTOR: Detector[SpreadingState] = Detector("spreading", initial, step, findings)
