"""Pure helpers that turn a patient's daily series into engine windows, triggers and API trajectories.

Shared by the scoring shell and the offline replay (`simulator/offline.py`) so both evaluate exactly
the same windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from schemas.events import TriggerRef
from schemas.trajectory import Trajectory, TrajectoryDay
from services.scoring.model import Assessment, DayRecord

HISTORY_DAYS = 180
BASELINE_DAYS = 14
API_DAYS = 28


def last_checkin(days: Sequence[DayRecord]) -> datetime | None:
    return max((d.last_recorded_at for d in days if d.last_recorded_at), default=None)


def with_baseline(all_days: Sequence[DayRecord], window: list[DayRecord]) -> list[DayRecord]:
    """The window plus the patient's earliest days (the engine's baseline), without repeats."""
    head = [d for d in all_days[:BASELINE_DAYS] if not window or d.date < window[0].date]
    return head + window


def window_upto(days: Sequence[DayRecord], point: date) -> list[DayRecord]:
    """What the engine sees when scoring as of local day `point`: the history window plus the baseline."""
    return with_baseline(days, [d for d in days if point - timedelta(days=HISTORY_DAYS) <= d.date <= point])


def day_trigger(day: DayRecord) -> TriggerRef | None:
    """The newest observation of a day, as the trigger of an evaluation as of that day."""
    if day.last_event_id and day.last_recorded_at:
        return TriggerRef(
            event_id=day.last_event_id,
            recorded_at=day.last_recorded_at,
            received_at=day.last_received_at or day.last_recorded_at,
        )
    return None


def to_trajectory(patient_id: str, a: Assessment, days: list[DayRecord]) -> Trajectory:
    recent = [d for d in days if d.checkins or d.steps is not None][-API_DAYS:]
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
        days=[
            TrajectoryDay(
                date=d.date,
                symptom_index=a.day_index.get(d.date),
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
            for d in recent
        ],
    )
