"""Engagement: enough scored days, and recent ones (disengagement alerts belong to the alerts service).

Findings: `too_few_days` (fewer than min_scored_days scored days) and `no_recent_checkins` (the
newest scored day is more than stale_after_days before the local date of as_of; active signals
are still reported).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.scoring.detectors.base import AssessCtx, Detector, Finding, Patient, StepCtx, reason
from services.scoring.detectors.symptoms import SymptomState


@dataclass(frozen=True, slots=True)
class EngagementState:
    checkin_days: int = 0  # local days with at least one check-in (scored or not)
    last_checkin: int | None = None  # ordinal of the newest such day


def initial(patient: Patient) -> EngagementState:
    return EngagementState()


def step(state: EngagementState, ctx: StepCtx) -> EngagementState:
    if ctx.rec.checkins <= 0:
        return state
    return EngagementState(state.checkin_days + 1, ctx.o)


def findings(state: EngagementState, ctx: AssessCtx) -> tuple[Finding, ...]:
    sym: SymptomState = ctx.states.symptoms
    cp = ctx.patient.clinical
    out: list[Finding] = []
    if sym.n < cp.min_scored_days:
        detail = f"{sym.n} scored days (need {cp.min_scored_days})"
        out.append(Finding("too_few_days", (reason("insufficient_data", detail),)))
    if sym.last is not None and ctx.today - sym.last > cp.stale_after_days:
        detail = f"last check-in {ctx.today - sym.last} days ago (limit {cp.stale_after_days})"
        out.append(Finding("no_recent_checkins", (reason("no_recent_checkins", detail),)))
    return tuple(out)


DETECTOR: Detector[EngagementState] = Detector("engagement", initial, step, findings)
