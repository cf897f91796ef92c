"""Where the patient is on the expected course: post-procedure window, nerve regrowth, expected level.

Findings (no signals):
- `postop_recovery_window`: the newest scored day is within the post-procedure window (state
  insufficient_data unless a stronger finding holds; worsening is judged with the expected dip);
- `regeneration_latent_phase`: after a nerve repair, regrowth is still on its way to the target
  (no plateau yet), with a note when tingling rises while pain is stable (advancing Tinel sign);
- a note comparing the smoothed index with the expected course (baseline x expected fraction
  remaining, and its tolerance band).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.scoring.detectors.base import (
    NOTE,
    AssessCtx,
    Detector,
    Finding,
    Patient,
    StepCtx,
    day_of,
    fmt,
    median,
    reason,
)
from services.scoring.detectors.symptoms import SymptomState


@dataclass(frozen=True, slots=True)
class CourseState:
    """No state of its own: the course is a function of the enrolment profile and the day."""


def initial(patient: Patient) -> CourseState:
    return CourseState()


def step(state: CourseState, ctx: StepCtx) -> CourseState:
    return state


def _median_item(sym: SymptomState, k: int, lo: int) -> float | None:
    vals = [v for e in sym.recent if e[0] >= lo and (v := e[2 + k]) is not None]
    return median(vals) if vals else None


def findings(state: CourseState, ctx: AssessCtx) -> tuple[Finding, ...]:
    sym: SymptomState = ctx.states.symptoms
    if sym.last is None:
        return ()
    patient, course, cp = ctx.patient, ctx.patient.course, ctx.patient.clinical
    out: list[Finding] = []
    last = sym.last
    if course.in_postop_window(last) and course.procedure is not None:
        detail = (
            f"day {last - course.procedure} of the {cp.postop_window_days}-day post-procedure recovery window; "
            "worsening is judged against the expected post-procedure course"
        )
        out.append(Finding("postop_recovery_window", (reason("postop_recovery_window", detail),)))
    if course.regenerating(last) and course.regen_end is not None:
        detail = (
            f"nerve repair: regrowth over {fmt(course.regen_distance_mm or 0)} mm at "
            f"{fmt(cp.regen_rate_mm_per_day)} mm/day after a {cp.regen_delay_days}-day delay is expected to reach "
            f"its target around {day_of(course.regen_end).isoformat()}; a flat course is expected until then"
        )
        reasons = [reason("regeneration_latent_phase", detail)]
        lo = last - cp.level_window_days + 1
        tingling_now, pain_now = _median_item(sym, 1, lo), _median_item(sym, 0, lo)
        tingling_then = sym.item_baseline(patient, 1)
        pain_then = sym.item_baseline(patient, 0)
        if (
            tingling_now is not None
            and tingling_then is not None
            and pain_now is not None
            and pain_then is not None
            and tingling_now >= tingling_then + 1.0
            and pain_now <= pain_then + 1.0
        ):
            reasons.append(
                reason(
                    "tingling_regeneration",
                    f"tingling {fmt(tingling_then)} -> {fmt(tingling_now)} with pain stable "
                    f"({fmt(pain_then)} -> {fmt(pain_now)}): consistent with regenerating axons (advancing "
                    "Tinel sign), not scored as worsening",
                )
            )
        out.append(Finding("regeneration_latent_phase", tuple(reasons)))
        out.append(Finding(NOTE, tuple(reasons)))  # reported whatever the state
    baseline, _ = sym.baseline(patient)
    remaining = course.expected_remaining(last, sym.first if sym.first is not None else last)
    if baseline is not None and remaining is not None and sym.ewma is not None:
        expected = baseline * remaining
        upper = baseline * min(1.0, remaining + cp.expected_tolerance)
        anchor = "procedure" if course.procedure is not None else "first check-in"
        t = last - (course.procedure if course.procedure is not None else (sym.first or last))
        code = "course_behind_expected" if sym.ewma > upper else "course_on_track"
        detail = (
            f"day {t} after the {anchor}: smoothed index {fmt(sym.ewma)}, expected about {fmt(expected)} "
            f"(on course up to {fmt(upper)})"
        )
        out.append(Finding(NOTE, (reason(code, detail),)))
    return tuple(out)


DETECTOR: Detector[CourseState] = Detector("course", initial, step, findings)
