"""Value types of the pure scoring core. No I/O here; the service shell converts rows to these.

All datetimes are timezone-aware UTC. Dates are the patient's local calendar dates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from schemas.common import Reason
from schemas.trajectory import Signal, TrajectoryState


@dataclass(frozen=True, slots=True)
class CheckinObs:
    """One stored check-in, reduced to what scoring needs (no free text)."""

    event_id: str
    recorded_at: datetime
    received_at: datetime
    pain: int
    pain_worst: int | None = None
    tingling: int | None = None
    numbness: int | None = None
    weakness: int | None = None
    numbness_spreading: bool | None = None
    night_wakings: int | None = None
    grip_strength_kg: float | None = None
    function_instrument: str | None = None
    function_score: float | None = None
    analgesic_doses: int | None = None
    pt_session_ended_at: datetime | None = None
    pt_intensity: str | None = None
    red_flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RedFlagObs:
    """One check-in version reporting red flags: what alerts needs to page it exactly once."""

    event_id: str
    recorded_at: datetime
    received_at: datetime
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ActivityObs:
    """One wearable sample. `device_id` lets aggregation avoid double counting across devices."""

    event_id: str
    type: str
    start: datetime
    end: datetime
    value: float
    device_id: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Baseline:
    pain: float | None = None
    tingling: float | None = None
    numbness: float | None = None
    weakness: float | None = None
    grip_strength_kg: float | None = None
    daily_steps: float | None = None
    function_instrument: str | None = None
    function_score: float | None = None


@dataclass(frozen=True, slots=True)
class PatientProfile:
    patient_id: str
    condition: str
    side: str
    treatment: str
    timezone: str
    onset_date: date | None = None
    procedure_date: date | None = None
    repair_distance_mm: float | None = None
    baseline: Baseline | None = None


@dataclass(frozen=True, slots=True)
class DayRecord:
    """One local day of a patient's series, aggregated from that day's observations.

    Symptom fields are the day's aggregate (see `daily.aggregate_day`); None means not reported.
    `red_flag_obs` lists every check-in of the day that reported a red flag, oldest first (an
    event id may appear twice when a conflicting version of it reported other flags).
    `device_grip_recorded_at` is the end of the dynamometer sample behind `device_grip_strength_kg`;
    `last_sample_end` the newest wearable sample end of the day (event times for signals raised by
    device data).
    """

    date: date
    checkins: int = 0
    pain: float | None = None
    pain_worst: float | None = None
    tingling: float | None = None
    numbness: float | None = None
    weakness: float | None = None
    night_wakings: float | None = None
    grip_strength_kg: float | None = None
    function_instrument: str | None = None
    function_score: float | None = None
    analgesic_doses: float | None = None
    numbness_spreading: bool = False
    spreading_event_id: str | None = None
    spreading_recorded_at: datetime | None = None
    red_flags: tuple[str, ...] = ()
    red_flag_event_id: str | None = None
    red_flag_recorded_at: datetime | None = None
    red_flag_obs: tuple[RedFlagObs, ...] = ()
    pt_session: bool = False
    pt_session_ended_at: datetime | None = None
    pt_intensity: str | None = None
    steps: int | None = None
    active_minutes: int | None = None
    sleep_minutes: int | None = None
    sleep_interruptions: int | None = None
    resting_heart_rate: float | None = None
    device_grip_strength_kg: float | None = None
    last_event_id: str | None = None
    last_recorded_at: datetime | None = None
    last_received_at: datetime | None = None
    device_grip_recorded_at: datetime | None = None
    last_sample_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Assessment:
    """The engine's output for one patient as of `as_of` (event time)."""

    state: TrajectoryState
    as_of: datetime
    symptom_index: float | None
    baseline_symptom_index: float | None
    change_from_baseline_pct: float | None
    slope_per_week: float | None
    reasons: tuple[Reason, ...]
    signals: tuple[Signal, ...]
    day_index: dict[date, float] = field(default_factory=dict)
    engine_version: str = ""  # services.scoring.profile.ENGINE_VERSION of the engine that produced it
    profile_version: str = ""  # ClinicalProfile.version of the thresholds it used
