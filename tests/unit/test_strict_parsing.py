"""Strict parsing of every public payload and the plausibility floor of event times (schemas/common.py).

- A string is never a number or a boolean, a number never a string, a boolean never a number, for
  every scalar field of check-ins (pain, pt_session, function included), batch items, activity
  (envelope, device, samples), patients (baseline, care team, notify) and the admin and care bodies.
- Date-times are RFC 3339 strings with an offset (or aware `datetime`s from code), nothing else;
  dates are `YYYY-MM-DD` strings (or `date`s from code).
- Event times earlier than the floor in the validation context are rejected; without one, none.
- Models built from Python objects in the code and events decoded from `json.loads` still validate.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.activity import ActivityBatch
from schemas.admin import KeyCreate, KeyRotate, SecretRotate
from schemas.alerts import AlertAction, SnoozeIn
from schemas.checkins import CheckIn
from schemas.common import FLOOR_CONTEXT, CalendarDate, UtcDatetime, event_time_floor
from schemas.events import ActivityRecorded, CheckInRecorded, IngestEvent, PatientUpserted
from schemas.patients import PatientIn, patient_from_input

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
CTX = {"now": NOW, FLOOR_CONTEXT: FLOOR}
FAST = settings(max_examples=60, derandomize=True, deadline=None, database=None)

CHECKIN: dict[str, Any] = {
    "event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e90",
    "patient_id": "pt-0042",
    "recorded_at": "2026-11-20T08:30:00-05:00",
    "pain": {"current": 4, "worst_24h": 6, "quality": ["burning"]},
    "tingling": 3,
    "numbness": 2,
    "weakness": 2,
    "numbness_spreading": False,
    "night_wakings": 1,
    "grip_strength_kg": 17.5,
    "function": {"instrument": "bctq_sss", "score": 2.1},
    "analgesic_doses_24h": 1,
    "pt_session": {"ended_at": "2026-11-19T16:00:00-05:00", "intensity": "moderate"},
    "home_exercises_done": True,
    "red_flags": [],
    "notes": "free text",
}
SAMPLE: dict[str, Any] = {
    "event_id": "9c7a6a0e-0000-4000-8000-000000000001",
    "type": "steps",
    "start": "2026-11-19T00:00:00-05:00",
    "end": "2026-11-20T00:00:00-05:00",
    "value": 6240,
}
ACTIVITY: dict[str, Any] = {"patient_id": "p1", "device": {"id": "w1", "kind": "wrist"}, "samples": [SAMPLE]}
PATIENT: dict[str, Any] = {
    "patient_id": "pt-0042",
    "condition": "carpal_tunnel",
    "treatment": "surgical_decompression",
    "onset_date": "2026-08-01",
    "procedure_date": "2026-10-01",
    "repair_distance_mm": 40,
    "timezone": "America/New_York",
    "baseline": {
        "pain": 7,
        "grip_strength_kg": 14.8,
        "daily_steps": 5600,
        "function": {"instrument": "odi", "score": 30},
    },
    "care_team": [
        {
            "member_id": "m1",
            "role": "physician",
            "min_severity": "high",
            "notify": {"webhook_url": "https://care.example.org/hook", "email": "a@example.org"},
        }
    ],
}

# (model, valid body, path of a field, its kind: int | float | bool | str | enum | datetime | date)
FIELDS: list[tuple[type[BaseModel], dict[str, Any], tuple[str | int, ...], str]] = [
    (CheckIn, CHECKIN, ("pain", "current"), "int"),
    (CheckIn, CHECKIN, ("pain", "worst_24h"), "int"),
    (CheckIn, CHECKIN, ("tingling",), "int"),
    (CheckIn, CHECKIN, ("numbness",), "int"),
    (CheckIn, CHECKIN, ("weakness",), "int"),
    (CheckIn, CHECKIN, ("night_wakings",), "int"),
    (CheckIn, CHECKIN, ("analgesic_doses_24h",), "int"),
    (CheckIn, CHECKIN, ("grip_strength_kg",), "float"),
    (CheckIn, CHECKIN, ("function", "score"), "float"),
    (CheckIn, CHECKIN, ("numbness_spreading",), "bool"),
    (CheckIn, CHECKIN, ("home_exercises_done",), "bool"),
    (CheckIn, CHECKIN, ("patient_id",), "str"),
    (CheckIn, CHECKIN, ("notes",), "str"),
    (CheckIn, CHECKIN, ("recorded_at",), "datetime"),
    (CheckIn, CHECKIN, ("pt_session", "ended_at"), "datetime"),
    (CheckIn, CHECKIN, ("pt_session", "intensity"), "enum"),
    (CheckIn, CHECKIN, ("function", "instrument"), "enum"),
    (ActivityBatch, ACTIVITY, ("patient_id",), "str"),
    (ActivityBatch, ACTIVITY, ("device", "id"), "str"),
    (ActivityBatch, ACTIVITY, ("device", "kind"), "enum"),
    (ActivityBatch, ACTIVITY, ("samples", 0, "value"), "float"),
    (ActivityBatch, ACTIVITY, ("samples", 0, "start"), "datetime"),
    (ActivityBatch, ACTIVITY, ("samples", 0, "end"), "datetime"),
    (ActivityBatch, ACTIVITY, ("samples", 0, "type"), "enum"),
    (PatientIn, PATIENT, ("patient_id",), "str"),
    (PatientIn, PATIENT, ("timezone",), "str"),
    (PatientIn, PATIENT, ("onset_date",), "date"),
    (PatientIn, PATIENT, ("procedure_date",), "date"),
    (PatientIn, PATIENT, ("repair_distance_mm",), "float"),
    (PatientIn, PATIENT, ("baseline", "pain"), "int"),
    (PatientIn, PATIENT, ("baseline", "grip_strength_kg"), "float"),
    (PatientIn, PATIENT, ("baseline", "daily_steps"), "int"),
    (PatientIn, PATIENT, ("baseline", "function", "score"), "float"),
    (PatientIn, PATIENT, ("care_team", 0, "member_id"), "str"),
    (PatientIn, PATIENT, ("care_team", 0, "role"), "enum"),
    (PatientIn, PATIENT, ("care_team", 0, "notify", "email"), "str"),
    (PatientIn, PATIENT, ("care_team", 0, "notify", "webhook_url"), "str"),
    (KeyCreate, {"scopes": ["care"], "expires_in_days": 30}, ("expires_in_days",), "int"),
    (KeyRotate, {"overlap_hours": 2, "expires_in_days": 30}, ("overlap_hours",), "float"),
    (KeyRotate, {"overlap_hours": 2, "expires_in_days": 30}, ("expires_in_days",), "int"),
    (SecretRotate, {"overlap_hours": 1.5}, ("overlap_hours",), "float"),
    (AlertAction, {"by": "m1", "note": "ok"}, ("by",), "str"),
    (AlertAction, {"by": "m1", "note": "ok"}, ("note",), "str"),
    (SnoozeIn, {"kind": "plateau", "until": "2026-11-27T00:00:00Z", "by": "m1"}, ("until",), "datetime"),
    (SnoozeIn, {"kind": "plateau", "until": "2026-11-27T00:00:00Z", "by": "m1"}, ("by",), "str"),
]


def put(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out: Any = json.loads(json.dumps(data))
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return dict(out)


def get(data: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def rejected_at(model: type[BaseModel], data: Any, path: tuple[str | int, ...]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data, context=CTX)
    hits = [e["type"] for e in info.value.errors() if tuple(e["loc"])[: len(path)] == path]
    assert hits, (path, info.value.errors())
    return hits


def wrong_values(kind: str, valid: Any) -> list[Any]:
    """Values of the wrong JSON type for a field of `kind` (valid value `valid`)."""
    as_string = str(valid).lower() if isinstance(valid, bool) else str(valid)
    common: list[Any] = [[], {}, [valid]]
    if kind == "int":
        return [as_string, "8", True, False, 4.5, 1e-9, *common]
    if kind == "float":
        return [as_string, "17.5", True, "NaN", *common]
    if kind == "bool":
        return ["yes", "true", "false", 1, 0, "1", *common]
    if kind == "str":
        return [12345, 1.5, True, *common]
    if kind == "enum":
        return [1, True, *common]
    if kind == "datetime":
        return [1763645400, 1763645400.5, True, *common]
    if kind == "date":
        return [20260801, 1754006400, True, *common]
    raise AssertionError(kind)


def test_the_fixtures_are_valid() -> None:
    for model, data, _, _ in FIELDS:
        model.model_validate(data, context=CTX)


@pytest.mark.parametrize(
    ("model", "data", "path", "kind"), FIELDS, ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else None
)
def test_no_value_of_another_json_type_is_coerced(
    model: type[BaseModel], data: dict[str, Any], path: tuple[str | int, ...], kind: str
) -> None:
    for value in wrong_values(kind, get(data, path)):
        rejected_at(model, put(data, path, value), path)


def test_the_issue_cases() -> None:
    """Defect 4 of issue #10, exactly."""
    assert rejected_at(CheckIn, {**CHECKIN, "numbness_spreading": "yes"}, ("numbness_spreading",)) == ["bool_type"]
    assert rejected_at(CheckIn, put(CHECKIN, ("pain", "current"), "8"), ("pain", "current")) == ["int_type"]
    assert rejected_at(CheckIn, {**CHECKIN, "recorded_at": "1970-01-01T00:00:00Z"}, ("recorded_at",)) == [
        "datetime_too_early"
    ]
    assert rejected_at(CheckIn, {**CHECKIN, "recorded_at": 1763645400}, ("recorded_at",)) == ["datetime_type"]


ACCEPTED_DATETIMES = [
    ("2026-11-20T08:30:00-05:00", datetime(2026, 11, 20, 13, 30, tzinfo=UTC)),
    ("2026-11-20T13:30:00Z", datetime(2026, 11, 20, 13, 30, tzinfo=UTC)),
    ("2026-11-20t13:30:00z", datetime(2026, 11, 20, 13, 30, tzinfo=UTC)),
    ("2026-11-20 13:30:00+00:00", datetime(2026, 11, 20, 13, 30, tzinfo=UTC)),
    ("2026-11-20T13:30:00-00:00", datetime(2026, 11, 20, 13, 30, tzinfo=UTC)),
    ("2026-11-20T13:30:00.5+00:00", datetime(2026, 11, 20, 13, 30, 0, 500000, tzinfo=UTC)),
    ("2026-11-20T19:00:00.123456789+05:30", datetime(2026, 11, 20, 13, 30, 0, 123456, tzinfo=UTC)),
]
REFUSED_DATETIMES = [
    "2026-11-20T13:30:00",  # naive
    "2026-11-20",  # a date
    "2026-11-20T13:30Z",  # no seconds
    "2026-11-20T13Z",
    "20261120T133000Z",  # basic format
    "2026-W47-5T13:30:00Z",  # week date
    "2026-324T13:30:00Z",  # ordinal date
    "2026-11-20T13:30:00+0500",  # offset without colon
    "2026-11-20T13:30:00+05",
    "2026-11-20T13:30:00 UTC",
    "Fri, 20 Nov 2026 13:30:00 GMT",
    "1763645400",
    "now",
    "",
    " 2026-11-20T13:30:00Z",
    "2026-11-20T13:30:00Z ",
    "2026-13-20T13:30:00Z",  # month 13
    "2026-02-30T13:30:00Z",
    "2026-11-20T24:00:00Z",
    "2026-11-20T13:30:60Z",  # leap second: not representable
    "2026-11-20T13:30:00,5Z",
    "٢٠٢٦-11-20T13:30:00Z",  # non-ASCII digits
]
ADAPTER: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)


@pytest.mark.parametrize(("text", "expected"), ACCEPTED_DATETIMES)
def test_rfc3339_date_times_are_accepted_and_normalised_to_utc(text: str, expected: datetime) -> None:
    got = ADAPTER.validate_python(text)
    assert got == expected and got.tzinfo is UTC
    assert ADAPTER.validate_json(json.dumps(text)) == expected


@pytest.mark.parametrize("text", REFUSED_DATETIMES)
def test_other_date_time_forms_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        ADAPTER.validate_python(text)
    with pytest.raises(ValidationError):
        ADAPTER.validate_json(json.dumps(text))
    rejected_at(CheckIn, {**CHECKIN, "recorded_at": text}, ("recorded_at",))


def test_code_may_pass_aware_datetimes_but_not_naive_ones() -> None:
    aware = datetime(2026, 11, 20, 8, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert ADAPTER.validate_python(aware) == aware and ADAPTER.validate_python(aware).tzinfo is UTC
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python(datetime(2026, 11, 20, 8, 30))
    assert info.value.errors()[0]["type"] == "timezone_aware"
    with pytest.raises(ValidationError):
        ADAPTER.validate_python(date(2026, 11, 20))


def test_dates_are_yyyy_mm_dd_strings_or_dates() -> None:
    adapter: TypeAdapter[date] = TypeAdapter(CalendarDate)
    assert adapter.validate_python("2026-08-01") == date(2026, 8, 1)
    assert adapter.validate_python(date(2026, 8, 1)) == date(2026, 8, 1)
    assert adapter.validate_json('"2026-08-01"') == date(2026, 8, 1)
    for bad in ("2026-8-1", "2026-08-01T00:00:00", "2026-08-01Z", "20260801", "01/08/2026", "2026-02-30", 20260801, 0):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)
    with pytest.raises(ValidationError):
        adapter.validate_python(datetime(2026, 8, 1, tzinfo=UTC))  # a datetime is not a date here


def test_integral_floats_are_integers_as_json_schema_says() -> None:
    c = CheckIn.model_validate({**CHECKIN, "tingling": 3.0, "pain": {"current": 4.0}}, context=CTX)
    assert c.tingling == 3 and isinstance(c.tingling, int) and c.pain.current == 4
    rejected_at(CheckIn, {**CHECKIN, "tingling": 3.5}, ("tingling",))
    rejected_at(CheckIn, {**CHECKIN, "tingling": 11.0}, ("tingling",))
    assert KeyCreate.model_validate({"scopes": ["care"], "expires_in_days": 30.0}).expires_in_days == 30


def test_integral_numbers_are_floats_where_a_float_is_expected() -> None:
    c = CheckIn.model_validate({**CHECKIN, "grip_strength_kg": 17}, context=CTX)
    assert c.grip_strength_kg == 17.0 and isinstance(c.grip_strength_kg, float)
    batch = ActivityBatch.model_validate(ACTIVITY, context=CTX)
    assert batch.samples[0].value == 6240.0


# -- models built in code and decoded from the log ---------------------------------------------------


def test_models_built_from_python_objects_still_validate() -> None:
    data = PatientIn.model_validate(PATIENT)
    stored = patient_from_input(data, NOW, NOW)
    assert stored.onset_date == date(2026, 8, 1) and stored.created_at == NOW
    c = CheckIn.model_validate(CHECKIN, context=CTX)
    again = CheckIn(**c.model_dump())
    assert again == c
    CheckInRecorded(tenant_id="t", received_at=NOW, checkin=c)


def test_events_decoded_from_json_loads_still_validate() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(IngestEvent)
    c = CheckIn.model_validate(CHECKIN, context=CTX)
    p = patient_from_input(PatientIn.model_validate(PATIENT), NOW, NOW)
    b = ActivityBatch.model_validate(ACTIVITY, context=CTX)
    for event in (
        CheckInRecorded(tenant_id="t", received_at=NOW, checkin=c),
        PatientUpserted(tenant_id="t", patient=p),
        ActivityRecorded(tenant_id="t", received_at=NOW, patient_id="p1", device=b.device, samples=b.samples),
    ):
        decoded = adapter.validate_python(json.loads(event.model_dump_json()))
        assert decoded == event


# -- the plausibility floor ---------------------------------------------------------------------------


def test_floor_is_the_earlier_of_the_absolute_floor_and_a_year_before_onset() -> None:
    absolute = date(2000, 1, 1)
    assert event_time_floor(absolute) == FLOOR
    assert event_time_floor(absolute, date(2026, 8, 1), "America/New_York") == FLOOR
    assert event_time_floor(absolute, date(2000, 6, 1), "UTC") == datetime(1999, 6, 1, tzinfo=UTC)
    assert event_time_floor(absolute, date(2000, 6, 1), "America/New_York") == datetime(1999, 6, 1, 4, tzinfo=UTC)
    assert event_time_floor(absolute, date(1996, 2, 29), "UTC") == datetime(1995, 2, 28, tzinfo=UTC)
    assert event_time_floor(absolute, date(1990, 1, 1), "Not/AZone") == datetime(1989, 1, 1, tzinfo=UTC)
    assert event_time_floor(date(1980, 1, 1), date(1990, 5, 5)) == datetime(1980, 1, 1, tzinfo=UTC)
    assert event_time_floor(absolute, date(1, 6, 1)) == datetime.min.replace(tzinfo=UTC)


EVENT_TIMES: list[tuple[type[BaseModel], dict[str, Any], tuple[str | int, ...]]] = [
    (CheckIn, CHECKIN, ("recorded_at",)),
    (CheckIn, CHECKIN, ("pt_session", "ended_at")),
    (ActivityBatch, ACTIVITY, ("samples", 0, "start")),
]


@FAST
@given(
    st.sampled_from(range(len(EVENT_TIMES))),
    st.integers(1, 60 * 60 * 24 * 365 * 40),
    st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
def test_event_times_before_the_floor_are_rejected(which: int, seconds_before: int, tz: timezone) -> None:
    model, data, path = EVENT_TIMES[which]
    when = (FLOOR - timedelta(seconds=seconds_before)).astimezone(tz).isoformat()
    bad = put(data, path, when)
    if path == ("samples", 0, "start"):
        bad = put(bad, ("samples", 0, "end"), when)
    assert "datetime_too_early" in rejected_at(model, bad, path)


@FAST
@given(st.sampled_from(range(len(EVENT_TIMES))), st.integers(0, 60 * 60 * 24 * 365 * 20))
def test_event_times_at_or_after_the_floor_are_accepted(which: int, seconds_after: int) -> None:
    model, data, path = EVENT_TIMES[which]
    when = FLOOR + timedelta(seconds=seconds_after)
    good = put(data, path, when.isoformat())
    if model is CheckIn:
        good = put(put(good, ("recorded_at",), when.isoformat()), ("pt_session", "ended_at"), when.isoformat())
    else:
        good = put(good, ("samples", 0, "end"), when.isoformat())
    model.model_validate(good, context=CTX)


def test_the_sample_end_has_the_floor_too() -> None:
    bad = put(
        put(ACTIVITY, ("samples", 0, "start"), "1999-12-31T00:00:00Z"), ("samples", 0, "end"), "1999-12-31T23:00:00Z"
    )
    assert "datetime_too_early" in rejected_at(ActivityBatch, bad, ("samples", 0, "end"))


def test_without_a_floor_in_the_context_none_applies() -> None:
    """Consumers of the log decode without one: they never re-judge what ingest admitted."""
    old = {**CHECKIN, "recorded_at": "1990-01-01T00:00:00Z", "pt_session": None}
    assert CheckIn.model_validate(old, context={"now": NOW}).recorded_at.year == 1990
    with pytest.raises(ValidationError):
        CheckIn.model_validate(old, context=CTX)


def test_floor_errors_name_the_floor_and_never_the_value() -> None:
    with pytest.raises(ValidationError) as info:
        CheckIn.model_validate({**CHECKIN, "recorded_at": "1970-01-01T00:00:00Z"}, context=CTX)
    err = info.value.errors(include_input=False)[0]
    assert "2000-01-01T00:00:00Z" in err["msg"] and "1970" not in err["msg"]
