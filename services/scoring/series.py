"""Pure helpers that turn a patient's daily series and assessments into triggers and API trajectories.

Shared by the scoring shell and the offline replay (`simulator/offline.py`) so both publish exactly
the same trajectories.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from schemas.events import TriggerRef
from schemas.trajectory import Trajectory, TrajectoryDay
from services.scoring.model import Assessment, DayRecord

API_DAYS = 28


def day_trigger(day: DayRecord) -> TriggerRef | None:
    """The newest observation of a day, as the trigger of an evaluation as of that day."""
    if day.last_event_id and day.last_recorded_at:
        return TriggerRef(
            event_id=day.last_event_id,
            recorded_at=day.last_recorded_at,
            received_at=day.last_received_at or day.last_recorded_at,
        )
    return None


def last_checkin(days: Sequence[DayRecord]) -> datetime | None:
    """The newest check-in event time of `days` (None without one)."""
    return max((d.last_recorded_at for d in days if d.last_recorded_at), default=None)


def has_data(d: DayRecord) -> bool:
    """Whether a day is shown in a trajectory's `days` (a check-in or a step count)."""
    return bool(d.checkins) or d.steps is not None


def api_day(d: DayRecord, symptom_index: float | None) -> TrajectoryDay:
    return TrajectoryDay(
        date=d.date,
        symptom_index=symptom_index,
        pain=d.pain,
        tingling=d.tingling,
        numbness=d.numbness,
        weakness=d.weakness,
        grip_strength_kg=d.grip_strength_kg if d.grip_strength_kg is not None else d.device_grip_strength_kg,
        steps=d.steps,
        active_minutes=d.active_minutes,
        sleep_minutes=d.sleep_minutes,
        pt_session=d.pt_session,
        checkins=d.checkins,
    )


def merge_api_days(
    prev: Sequence[dict[str, Any]], days: Sequence[DayRecord], day_index: dict[date, float]
) -> list[dict[str, Any]]:
    """A trajectory's `days` (JSON) after `days` changed: `prev` (the previous trajectory's days, the
    newest API_DAYS data days of the series then) with `days` replacing or adding theirs, the newest
    API_DAYS kept, each with its index from `day_index`. Equals `to_trajectory(...).days` over the
    whole series when every changed day is in `days`."""
    merged: dict[str, dict[str, Any]] = {str(d["date"]): d for d in prev if isinstance(d, dict) and "date" in d}
    for rec in days:
        iso = rec.date.isoformat()
        if has_data(rec):
            merged[iso] = api_day(rec, None).model_dump(mode="json")
        else:
            merged.pop(iso, None)
    index = {k.isoformat(): v for k, v in day_index.items()}
    out = [merged[k] for k in sorted(merged)[-API_DAYS:]]
    for d in out:
        d["symptom_index"] = index.get(str(d["date"]))
    return out


def to_trajectory(patient_id: str, a: Assessment, days: list[DayRecord]) -> Trajectory:
    recent = [d for d in days if has_data(d)][-API_DAYS:]
    return Trajectory(
        patient_id=patient_id,
        state=a.state,
        as_of=a.as_of,
        symptom_index=a.symptom_index,
        baseline_symptom_index=a.baseline_symptom_index,
        change_from_baseline_pct=a.change_from_baseline_pct,
        slope_per_week=a.slope_per_week,
        reasons=list(a.reasons),
        engine_version=a.engine_version or None,
        profile_version=a.profile_version or None,
        days=[api_day(d, a.day_index.get(d.date)) for d in recent],
    )
