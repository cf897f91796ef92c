"""Patient enrolment payloads (`POST /v1/patients`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AnyHttpUrl, BeforeValidator, Field, Strict, UrlConstraints, model_validator

from schemas.common import (
    CalendarDate,
    Condition,
    Email,
    Float,
    FunctionScore,
    MemberId,
    PatientId,
    Role,
    Score0to10,
    Severity,
    Side,
    StrictModel,
    Text,
    Treatment,
    UtcDatetime,
    integer,
)


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: "Europe" is a directory of tzdata
        raise ValueError("must be an IANA time zone name such as America/New_York") from exc
    return value


DailySteps = Annotated[Annotated[int, Strict(), Field(ge=0, le=200_000)], BeforeValidator(integer)]
Timezone = Annotated[Text, Field(max_length=64), AfterValidator(check_timezone)]


class Baseline(StrictModel):
    """Pre-treatment levels. Without it, the median of the first 7 days of check-ins is used."""

    pain: Score0to10 | None = None
    tingling: Score0to10 | None = None
    numbness: Score0to10 | None = None
    weakness: Score0to10 | None = None
    grip_strength_kg: Float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    daily_steps: DailySteps | None = None
    function: FunctionScore | None = None


MAX_URL = 2048
WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=MAX_URL)]


class Notify(StrictModel):
    webhook_url: WebhookUrl | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _some_channel(self) -> Notify:
        if self.webhook_url is None and self.email is None:
            raise ValueError("at least one of webhook_url or email is required")
        if self.webhook_url is not None and len(str(self.webhook_url)) > MAX_URL:  # once normalised
            raise ValueError("webhook_url is too long")
        return self


class CareTeamMember(StrictModel):
    member_id: MemberId
    role: Role
    min_severity: Severity = Severity.medium
    notify: Notify


class PatientIn(StrictModel):
    """Enrol or update a patient. The whole record is replaced on update."""

    patient_id: PatientId
    condition: Condition
    side: Side = Side.not_applicable
    treatment: Treatment
    onset_date: CalendarDate | None = None
    procedure_date: CalendarDate | None = None
    # Nerve repair: distance from the repair site to the target (muscle or skin territory) in mm.
    # Axons regrow at about 1 mm a day, so this sets the expected latent phase; without it the
    # scoring profile's default for the condition applies. Ignored for other treatments.
    repair_distance_mm: Float | None = Field(default=None, gt=0, le=1500, allow_inf_nan=False)
    timezone: Timezone
    baseline: Baseline | None = None
    care_team: list[CareTeamMember] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _unique_members(self) -> PatientIn:
        ids = [m.member_id for m in self.care_team]
        if len(ids) != len(set(ids)):
            raise ValueError("care_team member_id values must be unique")
        return self


class Patient(PatientIn):
    """A stored patient, as returned by the API and carried on the patients topic."""

    created_at: UtcDatetime
    updated_at: UtcDatetime


class PatientRecord(Patient):
    """`GET /v1/patients/{patient_id}`: the stored patient plus `enrolled_at` (when it was first
    enrolled: the same instant as `created_at`, named as in the patient list)."""

    enrolled_at: UtcDatetime


def patient_from_input(data: PatientIn, created_at: datetime, updated_at: datetime) -> Patient:
    return Patient(**data.model_dump(), created_at=created_at, updated_at=updated_at)
