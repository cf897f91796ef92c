"""Shared enums and constrained types of the public contract.

Strict parsing (shared/CONTRACT.md, "Safety rules that every endpoint keeps"): every scalar of a
public payload is one of the strict types below, so a string is never accepted for a number or a
boolean (`"8"`, `"yes"`), a number never for a string, and a boolean never for a number. Date-times
are RFC 3339 strings with an offset (`2026-11-20T08:30:00-05:00`; `T`/`t`/space and `Z`/`z` as RFC
3339 allows), never bare numbers, naive times or other ISO 8601 forms; dates are `YYYY-MM-DD`
strings. The same types also take what the code itself passes when it builds models from Python
objects: an aware `datetime`, a `date`, an `int` for a float. Enums, UUIDs and URLs keep pydantic's
ordinary parsing, which takes only their string form (or an instance) anyway, so events decoded
from the log with `validate_python(json.loads(...))` still validate.

Event times (`EventTime`) are also checked against the validation context: `now` (not more than
10 minutes ahead; the wall clock when absent) and `event_time_floor` (not earlier; no floor when
absent: ingest always passes one, consumers of the log do not re-judge what ingest admitted).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

PATIENT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_FUTURE_SKEW = timedelta(minutes=10)
DEFAULT_EVENT_TIME_FLOOR = date(2000, 1, 1)
FLOOR_BEFORE_ONSET_YEARS = 1
NOW_CONTEXT = "now"
FLOOR_CONTEXT = "event_time_floor"

# -- strict scalars ---------------------------------------------------------------------------------


def integer(value: Any) -> int:
    """An `int`, or a float with an integral value (JSON Schema counts `4.0` as an integer); never a
    boolean, a string or a fractional number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise PydanticCustomError("int_type", "must be an integer (a JSON number, not a string or a boolean)")


Int = Annotated[int, Strict(), BeforeValidator(integer)]
"""An integer: not a string, not a boolean, not a fractional number (4.0 is 4).

Bounds go on the inner type, `Annotated[Annotated[int, Strict(), Field(ge=..., le=...)],
BeforeValidator(integer)]` (see `Score0to10`): `Field(ge=...)` on an `Int` field would be applied
after the validator function and lose its `minimum`/`maximum` in the JSON Schema."""
Float = Annotated[float, Strict()]
"""A number (an integer is taken as a float): not a string, not a boolean."""
Bool = Annotated[bool, Strict()]
"""`true` or `false`: not `"yes"`, not `1`."""
Text = Annotated[str, Strict()]
"""A string: not a number."""

PatientId = Annotated[str, Strict(), StringConstraints(pattern=PATIENT_ID_PATTERN)]
MemberId = Annotated[str, Strict(), StringConstraints(pattern=PATIENT_ID_PATTERN)]
Score0to10 = Annotated[Annotated[int, Strict(), Field(ge=0, le=10)], BeforeValidator(integer)]


class StrictModel(BaseModel):
    """Inbound payloads reject unknown fields so a typo is an error, not silent data loss."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# -- date-times and dates ---------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_EXAMPLE = "e.g. 2026-11-20T08:30:00-05:00"


def rfc3339(value: Any) -> datetime:
    """An aware `datetime` as is, or an RFC 3339 date-time string with an offset parsed; else an error.

    Refused: numbers (unix times), naive date-times, dates without a time, times without seconds,
    week or ordinal dates, the basic (colon-free) form, decimal commas, offsets without a colon, and
    everything that is not a string.
    """
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise PydanticCustomError("timezone_aware", "must have a time-zone offset")
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", f"must be an RFC 3339 date-time string ({_DATETIME_EXAMPLE})")
    if len(value) > 40 or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "datetime_format", f"must be an RFC 3339 date-time with seconds and an offset ({_DATETIME_EXAMPLE})"
        )
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:
        raise PydanticCustomError("datetime_format", "is not a valid calendar date and time") from None


def calendar_date(value: Any) -> date:
    """A `date` (not a `datetime`) as is, or a `YYYY-MM-DD` string parsed; else an error."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("date_type", "must be a date string YYYY-MM-DD")
    if not _DATE.fullmatch(value):
        raise PydanticCustomError("date_format", "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("date_format", "is not a valid calendar date") from None


CalendarDate = Annotated[date, BeforeValidator(calendar_date)]


def _context(info: ValidationInfo, key: str) -> Any:
    ctx = info.context
    return ctx.get(key) if isinstance(ctx, dict) else None


def _now_from(info: ValidationInfo) -> datetime:
    now = _context(info, NOW_CONTEXT)
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


UtcDatetime = Annotated[datetime, BeforeValidator(rfc3339), AfterValidator(to_utc)]


def not_in_future(value: datetime, info: ValidationInfo) -> datetime:
    """Reject event times more than 10 minutes ahead of the validating clock.

    The clock comes from the validation context key `now` (tests and replays inject it),
    else the wall clock.
    """
    if value - _now_from(info) > MAX_FUTURE_SKEW:
        raise ValueError("must not be more than 10 minutes in the future")
    return value


def not_before_floor(value: datetime, info: ValidationInfo) -> datetime:
    """Reject event times earlier than the plausibility floor of the validation context key
    `event_time_floor` (an aware datetime; see `event_time_floor`). Without the key: no floor."""
    floor = _context(info, FLOOR_CONTEXT)
    if isinstance(floor, datetime) and value < floor:
        raise PydanticCustomError(
            "datetime_too_early",
            "must not be earlier than the plausibility floor {floor}",
            {"floor": floor.astimezone(UTC).isoformat().replace("+00:00", "Z")},
        )
    return value


EventTime = Annotated[
    datetime,
    BeforeValidator(rfc3339),
    AfterValidator(to_utc),
    AfterValidator(not_in_future),
    AfterValidator(not_before_floor),
]


def event_time_floor(absolute: date, onset_date: date | None = None, timezone: str | None = None) -> datetime:
    """The plausibility floor of a patient's event times: the earlier of `absolute` (00:00 UTC) and
    one year before `onset_date` (00:00 in the patient's `timezone`, UTC when unknown or invalid).

    Pure. 29 February one year back is 28 February.
    """
    floor = datetime.combine(absolute, time(0), UTC)
    if onset_date is None:
        return floor
    year = onset_date.year - FLOOR_BEFORE_ONSET_YEARS
    if year < 1:
        return datetime.min.replace(tzinfo=UTC)
    try:
        before = onset_date.replace(year=year)
    except ValueError:  # 29 February
        before = onset_date.replace(year=year, day=28)
    try:
        tz: Any = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError, OSError):
        tz = UTC
    try:
        from_onset = datetime.combine(before, time(0), tz).astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)
    return min(floor, from_onset)


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
    score: Float = Field(allow_inf_nan=False)

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


Email = Annotated[str, Strict(), AfterValidator(check_email)]


def dump_jsonable(model: BaseModel) -> dict[str, Any]:
    """Model to a JSON-compatible dict (UTC datetimes as RFC 3339 strings)."""
    return model.model_dump(mode="json")
