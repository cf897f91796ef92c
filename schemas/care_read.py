"""Payloads of the care read API (scope `care`): lists that page with an opaque `next_cursor`."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.checkins import CheckIn
from schemas.common import Condition, PatientId, Side, Treatment, UtcDatetime


class PatientSummary(BaseModel):
    """One enrolled patient in `GET /v1/patients`."""

    patient_id: PatientId
    condition: Condition
    side: Side
    treatment: Treatment
    timezone: str
    enrolled_at: UtcDatetime
    updated_at: UtcDatetime


class PatientPage(BaseModel):
    items: list[PatientSummary]
    next_cursor: str | None = None


class SeverityCounts(BaseModel):
    critical: int = 0
    high: int = 0
    medium: int = 0
    low: int = 0


class AlertCount(BaseModel):
    key: str
    severity: SeverityCounts


class AlertCounts(BaseModel):
    """`GET /v1/alerts/counts`: alerts per group (patient, severity or kind), split by severity."""

    counts: list[AlertCount]


class TrajectorySummary(BaseModel):
    """One patient's current trajectory in `GET /v1/trajectories`."""

    patient_id: PatientId
    condition: Condition | None
    state: str
    as_of: UtcDatetime
    last_data_at: UtcDatetime | None
    symptom_index: float | None
    change_from_baseline_pct: float | None


class TrajectoryPage(BaseModel):
    items: list[TrajectorySummary]
    next_cursor: str | None = None


class StoredCheckin(CheckIn):
    """A stored check-in as received (notes included), with when ingest received it."""

    received_at: UtcDatetime


class CheckinPage(BaseModel):
    """`GET /v1/patients/{patient_id}/checkins`: newest first."""

    items: list[StoredCheckin]
    next_cursor: str | None = None
