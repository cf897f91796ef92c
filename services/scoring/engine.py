"""The pure scoring engine: profile, daily series and event-time clock in; assessment out.

Skeleton version: symptom index, `red_flag` and `insufficient_data` only. Deterministic: the
result depends only on the arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from schemas.common import Reason
from schemas.trajectory import Signal, SignalCode, TrajectoryState
from services.scoring.model import Assessment, DayRecord, PatientProfile

RED_FLAG_WINDOW = timedelta(hours=72)


def symptom_index(day: DayRecord) -> float | None:
    """0-100 composite of the day's reported symptoms (mean of the 0-10 scales, times 10)."""
    parts = [v for v in (day.pain, day.tingling, day.numbness, day.weakness) if v is not None]
    return round(10.0 * sum(parts) / len(parts), 1) if parts else None


def score(profile: PatientProfile, days: Sequence[DayRecord], as_of: datetime) -> Assessment:
    ordered = sorted(days, key=lambda d: d.date)
    index = {d.date: si for d in ordered if (si := symptom_index(d)) is not None}
    latest = next((index[d.date] for d in reversed(ordered) if d.date in index), None)
    first = [index[d] for d in sorted(index)[:7]]
    baseline = round(sum(first) / len(first), 1) if first else None
    signals: list[Signal] = []
    reasons: list[Reason] = []
    for d in ordered:
        if d.red_flags and d.red_flag_recorded_at and as_of - d.red_flag_recorded_at <= RED_FLAG_WINDOW:
            detail = "red flag reported: " + ", ".join(d.red_flags)
            reasons.append(Reason(code="red_flag_reported", detail=detail))
            signals.append(
                Signal(
                    code=SignalCode.red_flag,
                    since=d.date,
                    event_time=d.red_flag_recorded_at,
                    event_id=d.red_flag_event_id,
                    reasons=[Reason(code="red_flag_reported", detail=detail)],
                )
            )
    state = TrajectoryState.red_flag if signals else TrajectoryState.insufficient_data
    if not signals:
        reasons.append(Reason(code="insufficient_data", detail=f"{len(index)} scored days"))
    change = None
    if latest is not None and baseline:
        change = round(100.0 * (latest - baseline) / baseline, 1)
    return Assessment(
        state=state,
        as_of=as_of,
        symptom_index=latest,
        baseline_symptom_index=baseline,
        change_from_baseline_pct=change,
        slope_per_week=None,
        reasons=tuple(reasons),
        signals=tuple(signals),
        day_index=index,
    )
