"""Trajectory payloads (`GET /v1/patients/{id}/trajectory`) and the trajectory signals alerts act on."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, Field

from schemas.common import PatientId, Reason, UtcDatetime


class TrajectoryState(StrEnum):
    insufficient_data = "insufficient_data"
    improving = "improving"
    plateau = "plateau"
    worsening = "worsening"
    flare = "flare"
    recovered = "recovered"
    red_flag = "red_flag"


class SignalCode(StrEnum):
    """Conditions the scoring engine reports while they hold; alert kinds map onto them."""

    red_flag = "red_flag"
    regression = "regression"
    spreading_symptoms = "spreading_symptoms"
    persistent_flare = "persistent_flare"
    plateau = "plateau"
    activity_decline = "activity_decline"
    flare_window = "flare_window"


class Signal(BaseModel):
    """One condition that holds as of the trajectory's `as_of`.

    `event_time` is the event time of the observation that raised it (for a red flag, the
    reporting check-in's `recorded_at`); `since` is the local date the condition started.

    Red flags are reported per observation: one `red_flag` signal for every check-in version
    reporting a red flag within the window, with its `event_id`, `flags` and `received_at`
    (arrival time, which decides whether it is backfill). Alerts pages every (event id, flag)
    pair it has not paged before; see docs/safety.md.
    """

    code: SignalCode
    since: date | None = None
    event_time: UtcDatetime
    event_id: str | None = None
    reasons: list[Reason] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    received_at: UtcDatetime | None = None


class TrajectoryDay(BaseModel):
    date: date
    symptom_index: float | None = None
    pain: float | None = None
    tingling: float | None = None
    numbness: float | None = None
    weakness: float | None = None
    grip_strength_kg: float | None = None
    steps: int | None = None
    active_minutes: int | None = None
    sleep_minutes: int | None = None
    pt_session: bool = False
    checkins: int = 0


class Trajectory(BaseModel):
    """A patient's trajectory as of `as_of`.

    `engine_version` and `profile_version` name the scoring engine and the clinical profile version
    that produced it (absent on trajectories computed before they were recorded).
    """

    patient_id: PatientId
    state: TrajectoryState
    as_of: UtcDatetime
    symptom_index: float | None = None
    baseline_symptom_index: float | None = None
    change_from_baseline_pct: float | None = None
    slope_per_week: float | None = None
    reasons: list[Reason] = Field(default_factory=list)
    days: list[TrajectoryDay] = Field(default_factory=list)
    engine_version: str | None = None
    profile_version: str | None = None
