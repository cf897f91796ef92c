"""Events on the log. Every event carries `schema_version`; consumers reject versions they do not know.

Keys are `<tenant_id>:<patient_id>` so one patient's events stay ordered on one partition.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Annotated, Literal, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.activity import ActivitySample, Device
from schemas.alerts import Alert
from schemas.checkins import CheckIn
from schemas.common import PatientId, UtcDatetime
from schemas.patients import Patient
from schemas.trajectory import Signal, Trajectory, TrajectoryState

SCHEMA_VERSION: Literal[1] = 1


class Topics:
    """Versioned topic names. A breaking event change gets a new topic version, never an edit."""

    patients = "nervewatch.patients.v1"
    checkins = "nervewatch.checkins.v1"
    activity = "nervewatch.activity.v1"
    trajectories = "nervewatch.trajectories.v1"
    alerts = "nervewatch.alerts.v1"
    billing = "nervewatch.billing.v1"
    dead_letters = "nervewatch.deadletters.v1"

    @classmethod
    def all(cls) -> list[str]:
        return [cls.patients, cls.checkins, cls.activity, cls.trajectories, cls.alerts, cls.billing, cls.dead_letters]


def event_key(tenant_id: str, patient_id: str) -> bytes:
    return f"{tenant_id}:{patient_id}".encode()


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: Literal[1] = SCHEMA_VERSION
    tenant_id: str = Field(min_length=1, max_length=64)


class PatientUpserted(_Event):
    type: Literal["patient.upserted"] = "patient.upserted"
    patient: Patient


class CheckInRecorded(_Event):
    type: Literal["checkin.recorded"] = "checkin.recorded"
    received_at: UtcDatetime
    checkin: CheckIn


class ActivityRecorded(_Event):
    type: Literal["activity.recorded"] = "activity.recorded"
    received_at: UtcDatetime
    patient_id: PatientId
    device: Device
    samples: list[ActivitySample]


class TriggerRef(BaseModel):
    """The newest observation behind a trajectory update."""

    event_id: str
    recorded_at: UtcDatetime
    received_at: UtcDatetime


class TrajectoryUpdated(_Event):
    """Published after every trajectory recomputation; `state_changed` marks contract state changes.

    `rescore_run` (additive, optional) is set on updates published by a retrospective re-scoring
    (`nervewatch rescore`): alerts records and changes alerts from them but pages nobody.
    """

    type: Literal["trajectory.updated"] = "trajectory.updated"
    event_id: UUID
    trajectory: Trajectory
    previous_state: TrajectoryState | None = None
    state_changed: bool
    signals: list[Signal] = Field(default_factory=list)
    trigger: TriggerRef | None = None
    last_checkin_at: UtcDatetime | None = None
    computed_at: UtcDatetime
    rescore_run: str | None = Field(default=None, max_length=64)


class AlertChanged(_Event):
    type: Literal["alert.changed"] = "alert.changed"
    event_id: UUID
    action: str
    actor: str
    at: UtcDatetime
    alert: Alert


class DataDaysAtRisk(_Event):
    """Published by scoring once per patient and device-supply period when the open period can
    reach 16 data days only if the patient reports on (nearly) every remaining day
    (docs/billing.md, "Data days at risk"). A platform may nudge the patient in its app.

    `needed` data days are still missing for 16 (98977) with `data_days_possible - data_days`
    days of the period left without data (today included); `raised_at` is scoring's processing
    time and identifies this raise (the matching `DataDaysRiskEnded` carries it too)."""

    type: Literal["billing.data_days_at_risk"] = "billing.data_days_at_risk"
    event_id: UUID
    patient_id: PatientId
    period_start: date
    period_end: date
    data_days: int = Field(ge=0, le=30)
    data_days_possible: int = Field(ge=0, le=30)
    needed: int = Field(ge=1, le=16)
    lead_days: int = Field(ge=0, le=29)
    raised_at: UtcDatetime


class DataDaysRiskEnded(_Event):
    """Published by scoring when a raised risk ends: the period closed (`period_closed`), reached
    16 data days (`reached`), gained slack again through late data or a larger lead (`on_track`),
    can no longer reach 16 (`unreachable`), or is no longer judged (`not_judged`: 98977 disabled, or
    the period moved because earlier data arrived before the first period closed)."""

    type: Literal["billing.data_days_at_risk_ended"] = "billing.data_days_at_risk_ended"
    event_id: UUID
    patient_id: PatientId
    period_start: date
    period_end: date
    raised_at: UtcDatetime
    reason: Literal["period_closed", "reached", "on_track", "unreachable", "not_judged"]
    ended_at: UtcDatetime


BillingEvent = Annotated[DataDaysAtRisk | DataDaysRiskEnded, Field(discriminator="type")]

IngestEvent = Annotated[PatientUpserted | CheckInRecorded | ActivityRecorded, Field(discriminator="type")]


class DeadLetter(BaseModel):
    """A message a consumer could not process. `value_b64` keeps the original bytes: nothing vanishes."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["dead_letter"] = "dead_letter"
    consumer_group: str
    source_topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str | None
    reason: str
    error: str
    failed_at: UtcDatetime


class DeadLetterFields(Protocol):
    """What a consumer knows of a record it gives up on (plumbing's `nervewatch.kafka.Letter` has these)."""

    @property
    def consumer_group(self) -> str: ...
    @property
    def source_topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def failed_at(self) -> datetime: ...


def dead_letter_json(letter: DeadLetterFields) -> bytes:
    """The dead-letter topic's wire format (`DeadLetter`) of one letter."""
    return (
        DeadLetter(
            consumer_group=letter.consumer_group,
            source_topic=letter.source_topic,
            partition=letter.partition,
            offset=letter.offset,
            key_b64=base64.b64encode(letter.key).decode() if letter.key is not None else None,
            value_b64=base64.b64encode(letter.value).decode() if letter.value is not None else None,
            reason=letter.reason,
            error=letter.error,
            failed_at=letter.failed_at,
        )
        .model_dump_json()
        .encode()
    )
