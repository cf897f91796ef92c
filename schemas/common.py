"""Shared enums and constrained types of the public contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

PATIENT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_FUTURE_SKEW = timedelta(minutes=10)

PatientId = Annotated[str, StringConstraints(pattern=PATIENT_ID_PATTERN)]
MemberId = Annotated[str, StringConstraints(pattern=PATIENT_ID_PATTERN)]
Score0to10 = Annotated[int, Field(ge=0, le=10)]


class StrictModel(BaseModel):
    """Inbound payloads reject unknown fields so a typo is an error, not silent data loss."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _now_from(info: ValidationInfo) -> datetime:
    ctx = info.context if isinstance(info.context, dict) else None
    now = ctx.get("now") if ctx else None
    return now if isinstance(now, datetime) else datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """Normalise an offset-aware datetime to UTC (the contract stores and returns UTC).

    An offset that pushes a date-time at the edge of the calendar (year 1 or 9999) out of range
    is a validation error, not an OverflowError escaping the validator.
    """
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time is out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(to_utc)]


def not_in_future(value: datetime, info: ValidationInfo) -> datetime:
    """Reject event times more than 10 minutes ahead of the validating clock.

    The clock comes from the validation context key `now` (tests and replays inject it),
    else the wall clock.
    """
    if value - _now_from(info) > MAX_FUTURE_SKEW:
        raise ValueError("must not be more than 10 minutes in the future")
    return value


EventTime = Annotated[AwareDatetime, AfterValidator(to_utc), AfterValidator(not_in_future)]


class Condition(StrEnum):
    carpal_tunnel = "carpal_tunnel"
    cubital_tunnel = "cubital_tunnel"
    radial_tunnel = "radial_tunnel"
    tarsal_tunnel = "tarsal_tunnel"
    peroneal_entrapment = "peroneal_entrapment"
    lumbar_radiculopathy = "lumbar_radiculopathy"
    cervical_radiculopathy = "cervical_radiculopathy"
    peripheral_nerve_injury = "peripheral_nerve_injury"
    other_entrapment = "other_entrapment"


class Side(StrEnum):
    left = "left"
    right = "right"
    bilateral = "bilateral"
    not_applicable = "not_applicable"


class Treatment(StrEnum):
    conservative = "conservative"
    surgical_decompression = "surgical_decompression"
    neurolysis = "neurolysis"
    nerve_repair = "nerve_repair"
    ablation = "ablation"
    injection = "injection"


class Role(StrEnum):
    physical_therapist = "physical_therapist"
    occupational_therapist = "occupational_therapist"
    physician = "physician"
    surgeon = "surgeon"
    care_coordinator = "care_coordinator"
    on_call = "on_call"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.low: 0, Severity.medium: 1, Severity.high: 2, Severity.critical: 3}


class PainQuality(StrEnum):
    sharp = "sharp"
    shooting = "shooting"
    burning = "burning"
    electric = "electric"
    tingling = "tingling"
    dull_ache = "dull_ache"
    throbbing = "throbbing"


class Intensity(StrEnum):
    light = "light"
    moderate = "moderate"
    vigorous = "vigorous"


class RedFlag(StrEnum):
    bowel_bladder_dysfunction = "bowel_bladder_dysfunction"
    saddle_anesthesia = "saddle_anesthesia"
    bilateral_leg_symptoms = "bilateral_leg_symptoms"
    rapidly_progressive_weakness = "rapidly_progressive_weakness"
    foot_drop = "foot_drop"
    wrist_drop = "wrist_drop"
    fever = "fever"
    wound_infection_signs = "wound_infection_signs"


class FunctionInstrument(StrEnum):
    quickdash = "quickdash"
    bctq_sss = "bctq_sss"
    bctq_fss = "bctq_fss"
    lefs = "lefs"
    odi = "odi"
    psfs = "psfs"
    promis_pi = "promis_pi"


# (low, high, higher_is_worse). PROMIS T-scores are bounded by the item bank's calibration;
# 20-90 covers every published PROMIS pain-interference short form with margin.
INSTRUMENT_RANGES: dict[FunctionInstrument, tuple[float, float, bool]] = {
    FunctionInstrument.quickdash: (0.0, 100.0, True),
    FunctionInstrument.bctq_sss: (1.0, 5.0, True),
    FunctionInstrument.bctq_fss: (1.0, 5.0, True),
    FunctionInstrument.lefs: (0.0, 80.0, False),
    FunctionInstrument.odi: (0.0, 100.0, True),
    FunctionInstrument.psfs: (0.0, 10.0, False),
    FunctionInstrument.promis_pi: (20.0, 90.0, True),
}


class FunctionScore(StrictModel):
    """A patient-reported function instrument score; range depends on the instrument."""

    instrument: FunctionInstrument
    score: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _in_range(self) -> FunctionScore:
        low, high, _ = INSTRUMENT_RANGES[self.instrument]
        if not low <= self.score <= high:
            raise ValueError(f"score for {self.instrument.value} must be between {low:g} and {high:g}")
        return self


class Reason(BaseModel):
    """A machine code plus a human sentence with the numbers behind it."""

    code: str
    detail: str


_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def check_email(value: str) -> str:
    if len(value) > 254 or not _EMAIL_RE.match(value):
        raise ValueError("must be an e-mail address")
    return value


Email = Annotated[str, AfterValidator(check_email)]


def dump_jsonable(model: BaseModel) -> dict[str, Any]:
    """Model to a JSON-compatible dict (UTC datetimes as RFC 3339 strings)."""
    return model.model_dump(mode="json")
