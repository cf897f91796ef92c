"""Remote therapeutic monitoring (RTM) billing payloads (scoring service; docs/billing.md).

Inbound bodies (time entries, their corrections and deletions, billing settings) are parsed
strictly with the types of `schemas/common.py`. A time entry's `note` is free text: stored and
returned to the care team, never logged, never in an error, never in the audit trail.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, Strict, model_serializer, model_validator
from pydantic.functional_validators import BeforeValidator

from schemas.common import Bool, MemberId, PatientId, StrictModel, Text, UtcDatetime, integer

MAX_NOTE = 2000
MIN_MINUTES = 1
MAX_MINUTES = 240
MAX_GRACE_DAYS = 31
MAX_LEAD_DAYS = 29
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
ENTRY_ID_PATTERN = r"^te_[0-9a-f]{24}$"


class BillingCode(StrEnum):
    """CPT codes of remote therapeutic monitoring (CY2026 Medicare Physician Fee Schedule)."""

    setup = "98975"
    supply_16_30 = "98977"
    supply_2_15 = "98985"
    management_10 = "98979"
    management_20 = "98980"
    management_addon = "98981"


class DataDaySource(StrEnum):
    """Which patient-transmitted data make a data day."""

    checkins = "checkins"
    checkins_and_wearables = "checkins_and_wearables"


class TimeEntryActivity(StrEnum):
    data_review = "data_review"
    program_change = "program_change"
    patient_call = "patient_call"
    patient_video = "patient_video"
    message = "message"
    other = "other"


class VersionReason(StrEnum):
    """Why a closed period got a (new) version of its figures."""

    initial = "initial"  # the first figures recorded after the period closed
    late_data = "late_data"  # only days added, each first stored after the previous version was recorded
    recomputed = "recomputed"  # anything else: settings, enabled codes, the patient's time zone changed


Minutes = Annotated[Annotated[int, Strict(), Field(ge=MIN_MINUTES, le=MAX_MINUTES)], BeforeValidator(integer)]
Note = Annotated[Text, Field(max_length=MAX_NOTE)]
GraceDays = Annotated[Annotated[int, Strict(), Field(ge=0, le=MAX_GRACE_DAYS)], BeforeValidator(integer)]
LeadDays = Annotated[Annotated[int, Strict(), Field(ge=0, le=MAX_LEAD_DAYS)], BeforeValidator(integer)]
MonthText = Annotated[str, Field(pattern=MONTH_PATTERN)]

# -- time entries ---------------------------------------------------------------------------------


class TimeEntryIn(StrictModel):
    """Body of `POST /v1/patients/{patient_id}/time-entries`.

    `started_at` not in the future and the entry ended by now (`started_at` + `minutes`, 10 minutes
    of clock skew allowed); `interactive` only for a `patient_call` or `patient_video`."""

    member_id: MemberId
    started_at: UtcDatetime
    minutes: Minutes
    activity: TimeEntryActivity
    interactive: Bool = False
    note: Note | None = None


_PATCHABLE = ("member_id", "started_at", "minutes", "activity", "interactive", "note")


class TimeEntryPatch(StrictModel):
    """Body of `PATCH .../time-entries/{id}`: `by` (who corrects) and the fields to change; only
    `note` may be set to null (removed)."""

    by: MemberId
    member_id: MemberId | None = None
    started_at: UtcDatetime | None = None
    minutes: Minutes | None = None
    activity: TimeEntryActivity | None = None
    interactive: Bool | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _fields(self) -> TimeEntryPatch:
        given = self.model_fields_set & set(_PATCHABLE)
        if not given:
            raise ValueError(f"name at least one field to change: {', '.join(_PATCHABLE)}")
        nulls = sorted(f for f in given if f != "note" and getattr(self, f) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the body sets (`note` may be None)."""
        return {f: getattr(self, f) for f in _PATCHABLE if f in self.model_fields_set}


class TimeEntryDelete(StrictModel):
    """Body of `DELETE .../time-entries/{id}`: who deletes it."""

    by: MemberId


class TimeEntry(BaseModel):
    id: str
    patient_id: PatientId
    member_id: str
    started_at: UtcDatetime
    ended_at: UtcDatetime
    minutes: int
    activity: TimeEntryActivity
    interactive: bool
    note: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class TimeEntryPage(BaseModel):
    items: list[TimeEntry]


class FieldChange(BaseModel):
    before: Any = None
    after: Any = None


class TimeEntryAuditEntry(BaseModel):
    """One change of a time entry: who (`actor`, a member id; `key_id`, the API key), when, which
    fields, and their values before and after (never the note's text: a note change is only named
    in `fields`)."""

    at: UtcDatetime
    entry_id: str
    actor: str
    key_id: str | None = None
    action: Literal["created", "updated", "deleted"]
    fields: list[str]
    changes: dict[str, FieldChange] = Field(default_factory=dict)


class TimeEntryAuditPage(BaseModel):
    items: list[TimeEntryAuditEntry]


# -- billing figures ------------------------------------------------------------------------------


class PeriodVersionInfo(BaseModel):
    """A recorded version of a closed period's figures."""

    version: int
    data_days: int
    supply_code: BillingCode | None
    reason: VersionReason
    data_days_from: DataDaySource
    recorded_at: UtcDatetime


_OMIT_IF_NONE = ("data_days_possible", "data_days_at_risk", "version", "version_reason", "recorded_at")


class BillingPeriod(BaseModel):
    """A 30-day device-supply period. Open periods carry `data_days_possible` (the most the period
    can still reach) and `data_days_at_risk`; closed ones their recorded `version` (with
    `previous_versions`, oldest first, when late data or a change made a new one)."""

    start: date
    end: date
    data_days: int
    supply_code: BillingCode | None
    closed: bool
    data_days_possible: int | None = None
    data_days_at_risk: bool | None = None
    version: int | None = None
    version_reason: VersionReason | None = None
    recorded_at: UtcDatetime | None = None
    previous_versions: list[PeriodVersionInfo] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in _OMIT_IF_NONE:
            if data.get(key) is None:
                data.pop(key, None)
        if not data.get("previous_versions"):
            data.pop("previous_versions", None)
        return data


class BillingMonth(BaseModel):
    """Management time of a local calendar month. `closed`: its time entries can no longer change."""

    month: MonthText
    minutes: int
    interactive: bool
    management_codes: list[BillingCode]
    closed: bool


class PatientBilling(BaseModel):
    """`GET /v1/patients/{patient_id}/billing`."""

    patient_id: PatientId
    monitoring_started: date | None
    periods: list[BillingPeriod]
    months: list[BillingMonth]
    setup_code_eligible: bool
    data_days_from: DataDaySource
    as_of: UtcDatetime


class BillingReportRow(BaseModel):
    """One patient of a month's report: the periods whose last day is in the month and the month's
    management figures."""

    patient_id: PatientId
    monitoring_started: date | None
    periods: list[BillingPeriod]
    minutes: int
    interactive: bool
    management_codes: list[BillingCode]
    month_closed: bool
    setup_code_eligible: bool


class BillingReport(BaseModel):
    """`GET /v1/billing/report?month=YYYY-MM` (JSON; CSV with `Accept: text/csv`)."""

    month: MonthText
    data_days_from: DataDaySource
    as_of: UtcDatetime
    items: list[BillingReportRow]


# -- tenant settings ------------------------------------------------------------------------------


class BillingSettingsIn(StrictModel):
    """Body of `PUT /v1/admin/billing-settings` (scope `admin`); an absent key takes its default."""

    data_days_from: DataDaySource | None = None
    enabled_codes: list[BillingCode] | None = Field(default=None, max_length=len(BillingCode))
    grace_days: GraceDays | None = None
    at_risk_lead_days: LeadDays | None = None
    count_data_before_enrolment: Bool | None = None


class BillingSettingsOut(BaseModel):
    """A tenant's billing settings, defaults filled in."""

    data_days_from: DataDaySource
    enabled_codes: list[BillingCode]
    grace_days: int
    at_risk_lead_days: int
    count_data_before_enrolment: bool
