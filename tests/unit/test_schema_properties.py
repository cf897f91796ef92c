"""Property-based tests of the contract models (hypothesis).

- Any instance built from valid field domains validates, and round-trips through
  `model_dump_json` -> `model_validate_json` unchanged, with every date-time normalised to UTC.
- Out-of-range values are always rejected, with an error whose `loc` names the field.
- Validation problems never contain the submitted free text.
- Event times more than 10 minutes ahead of the validation clock (context `now`) are rejected.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from nervewatch.problems import item_errors, parse_json, validation_problem
from schemas.activity import ActivityBatch, ActivityType, DeviceKind
from schemas.alerts import (
    Alert,
    AlertAction,
    AlertKind,
    AlertStatus,
    Channel,
    DeliveryStatus,
    Resolution,
    SnoozeIn,
)
from schemas.checkins import CheckIn, CheckInBatch
from schemas.common import (
    INSTRUMENT_RANGES,
    Condition,
    FunctionInstrument,
    Intensity,
    PainQuality,
    RedFlag,
    Role,
    Severity,
    Side,
    Treatment,
)
from schemas.events import (
    ActivityRecorded,
    AlertChanged,
    CheckInRecorded,
    PatientUpserted,
    TrajectoryUpdated,
)
from schemas.patients import PatientIn
from schemas.trajectory import SignalCode, TrajectoryState

M = TypeVar("M", bound=BaseModel)

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
CTX = {"now": NOW}
FAST = settings(max_examples=40, derandomize=True, deadline=None, database=None)
MARK = "§note§"  # never part of an error message

ids = st.from_regex(r"\A[A-Za-z0-9._-]{1,64}\Z")
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
# Naive bounds apply to local time; 15 hours of margin keeps every offset in the past of NOW.
past = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 11, 19, 23, 0), timezones=offsets)
anytime = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets)
score = st.integers(0, 10)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)
text = st.text(max_size=40)
reasons = st.lists(st.fixed_dictionaries({"code": text, "detail": text}), max_size=3)
zones = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def round_trip(model: type[M], data: Any, context: dict[str, Any] | None = None) -> M:
    """Validate `data`, then check the JSON round trip reproduces the same model."""
    first = model.model_validate(data, context=context)
    again = model.model_validate_json(first.model_dump_json(), context=context)
    assert again == first
    assert again.model_dump_json() == first.model_dump_json()
    return first


def assert_utc(value: Any) -> None:
    """Every datetime inside a dumped model is UTC."""
    if isinstance(value, datetime):
        assert value.tzinfo is UTC or value.utcoffset() == timedelta(0), value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            assert_utc(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            assert_utc(item)


# -- strategies of valid wire payloads ----------------------------------------------------------------


@st.composite
def function_scores(draw: st.DrawFn) -> dict[str, Any]:
    instrument = draw(st.sampled_from(FunctionInstrument))
    low, high, _ = INSTRUMENT_RANGES[instrument]
    return {"instrument": instrument.value, "score": draw(st.floats(low, high))}


@st.composite
def checkins(draw: st.DrawFn, notes: st.SearchStrategy[str | None] | None = None) -> dict[str, Any]:
    recorded = draw(past)
    current = draw(score)
    pt = None
    if draw(st.booleans()):
        ended = recorded - timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
        pt = {"ended_at": ended.isoformat(), "intensity": draw(st.sampled_from(Intensity)).value}
    return drop_none(
        {
            "event_id": str(draw(st.uuids())),
            "patient_id": draw(ids),
            "recorded_at": recorded.isoformat(),
            "pain": drop_none(
                {
                    "current": current,
                    "worst_24h": draw(optional(st.integers(current, 10))),
                    "quality": [q.value for q in draw(st.lists(st.sampled_from(PainQuality), unique=True))],
                }
            ),
            "tingling": draw(optional(score)),
            "numbness": draw(optional(score)),
            "weakness": draw(optional(score)),
            "numbness_spreading": draw(optional(st.booleans())),
            "night_wakings": draw(optional(st.integers(0, 20))),
            "grip_strength_kg": draw(optional(st.floats(0, 100))),
            "function": draw(optional(function_scores())),
            "analgesic_doses_24h": draw(optional(st.integers(0, 50))),
            "pt_session": pt,
            "home_exercises_done": draw(optional(st.booleans())),
            "red_flags": [f.value for f in draw(st.lists(st.sampled_from(RedFlag), unique=True))],
            "notes": draw(notes if notes is not None else optional(st.text(max_size=300))),
        }
    )


emails = st.tuples(st.from_regex(r"\A[a-z0-9._+-]{1,20}\Z"), st.from_regex(r"\A[a-z0-9-]{1,20}\Z")).map(
    lambda p: f"{p[0]}@{p[1]}.example.org"
)
webhooks = st.from_regex(r"\A[a-z0-9/_-]{0,40}\Z").map(lambda path: f"https://hooks.example.org/{path}")


@st.composite
def members(draw: st.DrawFn) -> dict[str, Any]:
    notify = draw(
        st.one_of(
            st.fixed_dictionaries({"email": emails}),
            st.fixed_dictionaries({"webhook_url": webhooks}),
            st.fixed_dictionaries({"email": emails, "webhook_url": webhooks}),
        )
    )
    return {
        "member_id": draw(ids),
        "role": draw(st.sampled_from(Role)).value,
        "min_severity": draw(st.sampled_from(Severity)).value,
        "notify": notify,
    }


@st.composite
def patients(draw: st.DrawFn) -> dict[str, Any]:
    baseline = drop_none(
        {
            "pain": draw(optional(score)),
            "tingling": draw(optional(score)),
            "numbness": draw(optional(score)),
            "weakness": draw(optional(score)),
            "grip_strength_kg": draw(optional(st.floats(0, 100))),
            "daily_steps": draw(optional(st.integers(0, 200_000))),
            "function": draw(optional(function_scores())),
        }
    )
    return drop_none(
        {
            "patient_id": draw(ids),
            "condition": draw(st.sampled_from(Condition)).value,
            "side": draw(st.sampled_from(Side)).value,
            "treatment": draw(st.sampled_from(Treatment)).value,
            "onset_date": draw(optional(st.dates(date(2000, 1, 1), date(2030, 1, 1)).map(str))),
            "procedure_date": draw(optional(st.dates(date(2000, 1, 1), date(2030, 1, 1)).map(str))),
            "timezone": draw(st.sampled_from(zones)),
            "baseline": baseline if draw(st.booleans()) else None,
            "care_team": draw(st.lists(members(), max_size=4, unique_by=lambda m: m["member_id"])),
        }
    )


_MAX = {
    ActivityType.steps: 150_000,
    ActivityType.sleep_interruptions: 500,
    ActivityType.resting_heart_rate: 250,
    ActivityType.grip_strength_kg: 100,
}


early = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 11, 16), timezones=offsets)


@st.composite
def samples(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(ActivityType))
    start = draw(early)  # + at most 3 days stays in the past of NOW
    span = draw(st.integers(0, 3 * 24 * 60))
    high = float(max(span, 1)) if kind in (ActivityType.active_minutes, ActivityType.sleep_minutes) else _MAX[kind]
    return {
        "event_id": str(draw(st.uuids())),
        "type": kind.value,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=span)).isoformat(),
        "value": draw(st.one_of(st.integers(0, int(high)), st.floats(0, high))),
    }


activity = st.fixed_dictionaries(
    {
        "patient_id": ids,
        "device": st.fixed_dictionaries(
            {"id": st.text(min_size=1, max_size=128), "kind": st.sampled_from(DeviceKind).map(str)}
        ),
        "samples": st.lists(samples(), min_size=1, max_size=5),
    }
)


@st.composite
def alerts(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(st.sampled_from(AlertStatus))
    return {
        "id": draw(ids),
        "patient_id": draw(ids),
        "kind": draw(st.sampled_from(AlertKind)).value,
        "severity": draw(st.sampled_from(Severity)).value,
        "status": status.value,
        "summary": draw(text),
        "reasons": draw(reasons),
        "trajectory_state": draw(optional(st.sampled_from(TrajectoryState).map(str))),
        "event_time": draw(anytime).isoformat(),
        "opened_at": draw(anytime).isoformat(),
        "updated_at": draw(anytime).isoformat(),
        "retrospective": draw(st.booleans()),
        "acknowledged_by": draw(optional(ids)),
        "acknowledged_at": draw(optional(anytime.map(datetime.isoformat))),
        "resolved_at": draw(optional(anytime.map(datetime.isoformat))),
        "resolution": draw(optional(st.sampled_from(Resolution).map(str))),
        "notifications": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "member_id": ids,
                        "channel": st.sampled_from(Channel).map(str),
                        "status": st.sampled_from(DeliveryStatus).map(str),
                        "attempts": st.integers(0, 100),
                    }
                ),
                max_size=3,
            )
        ),
    }


days = st.fixed_dictionaries(
    {"date": st.dates().map(str), "pt_session": st.booleans(), "checkins": st.integers(0, 50)},
    optional={
        "symptom_index": optional(finite),
        "pain": optional(finite),
        "grip_strength_kg": optional(finite),
        "steps": optional(st.integers(0, 10**6)),
        "active_minutes": optional(st.integers(0, 10**4)),
    },
)


@st.composite
def trajectories(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "patient_id": draw(ids),
        "state": draw(st.sampled_from(TrajectoryState)).value,
        "as_of": draw(anytime).isoformat(),
        "symptom_index": draw(optional(finite)),
        "baseline_symptom_index": draw(optional(finite)),
        "change_from_baseline_pct": draw(optional(finite)),
        "slope_per_week": draw(optional(finite)),
        "reasons": draw(reasons),
        "days": draw(st.lists(days, max_size=4)),
    }


@st.composite
def trajectory_updates(draw: st.DrawFn) -> dict[str, Any]:
    signal = st.fixed_dictionaries(
        {"code": st.sampled_from(SignalCode).map(str), "event_time": anytime.map(datetime.isoformat)},
        optional={"since": st.dates().map(str), "event_id": optional(text), "reasons": reasons},
    )
    trigger = st.fixed_dictionaries(
        {"event_id": text, "recorded_at": anytime.map(datetime.isoformat), "received_at": anytime.map(str)}
    )
    return {
        "tenant_id": draw(st.text(min_size=1, max_size=64)),
        "event_id": str(draw(st.uuids())),
        "trajectory": draw(trajectories()),
        "previous_state": draw(optional(st.sampled_from(TrajectoryState).map(str))),
        "state_changed": draw(st.booleans()),
        "signals": draw(st.lists(signal, max_size=3)),
        "trigger": draw(optional(trigger)),
        "last_checkin_at": draw(optional(anytime.map(datetime.isoformat))),
        "computed_at": draw(anytime).isoformat(),
    }


# -- valid instances round-trip ---------------------------------------------------------------------


@FAST
@given(checkins())
def test_checkins_round_trip_in_utc(data: dict[str, Any]) -> None:
    c = round_trip(CheckIn, data, CTX)
    assert_utc(c)
    assert c.recorded_at == datetime.fromisoformat(data["recorded_at"])  # same instant, now in UTC


@FAST
@given(st.lists(checkins(), min_size=1, max_size=5))
def test_checkin_batches_and_events_round_trip(items: list[dict[str, Any]]) -> None:
    round_trip(CheckInBatch, {"items": items})
    for item in items:
        ev = round_trip(CheckInRecorded, {"tenant_id": "t1", "received_at": NOW.isoformat(), "checkin": item}, CTX)
        assert_utc(ev)


@FAST
@given(patients())
def test_patients_round_trip(data: dict[str, Any]) -> None:
    p = round_trip(PatientIn, data)
    stamped = {**data, "created_at": "2026-01-01T00:00:00+01:00", "updated_at": "2026-01-02T00:00:00-05:00"}
    ev = round_trip(PatientUpserted, {"tenant_id": "t1", "patient": stamped})
    assert ev.patient.patient_id == p.patient_id
    assert_utc(ev)


@FAST
@given(activity)
def test_activity_round_trips(data: dict[str, Any]) -> None:
    batch = round_trip(ActivityBatch, data, CTX)
    assert_utc(batch)
    ev = round_trip(ActivityRecorded, {"tenant_id": "t1", "received_at": NOW.isoformat(), **data}, CTX)
    assert len(ev.samples) == len(data["samples"])


@FAST
@given(alerts())
def test_alerts_round_trip_in_utc(data: dict[str, Any]) -> None:
    alert = round_trip(Alert, data)
    assert_utc(alert)
    assert alert.opened_at == datetime.fromisoformat(data["opened_at"])
    changed = round_trip(
        AlertChanged,
        {
            "tenant_id": "t1",
            "event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e90",
            "action": "opened",
            "actor": "system",
            "at": data["opened_at"],
            "alert": data,
        },
    )
    assert changed.alert == alert


@FAST
@given(trajectory_updates())
def test_trajectory_updates_round_trip_in_utc(data: dict[str, Any]) -> None:
    ev = round_trip(TrajectoryUpdated, data)
    assert_utc(ev)
    assert_utc(ev.trajectory)


@FAST
@given(ids, st.one_of(st.none(), st.text(max_size=2000)), st.sampled_from(AlertKind), anytime)
def test_care_actions_round_trip(by: str, note: str | None, kind: AlertKind, until: datetime) -> None:
    round_trip(AlertAction, drop_none({"by": by, "note": note}))
    snooze = round_trip(SnoozeIn, {"kind": kind.value, "until": until.isoformat(), "by": by})
    assert snooze.until.tzinfo is UTC and snooze.until == until


# -- out-of-range values are rejected, naming the field ---------------------------------------------


def outside(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1))


CHECKIN_BAD: list[tuple[tuple[str | int, ...], st.SearchStrategy[Any]]] = [
    (("pain", "current"), outside(0, 10)),
    (("tingling",), outside(0, 10)),
    (("numbness",), outside(0, 10)),
    (("weakness",), outside(0, 10)),
    (("night_wakings",), outside(0, 20)),
    (("analgesic_doses_24h",), outside(0, 50)),
    (
        ("grip_strength_kg",),
        st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=100.0001), st.sampled_from([float("nan")])),
    ),
    (("notes",), st.integers(2001, 6000).map(lambda n: MARK * (n // len(MARK) + 1))),
    (("patient_id",), st.one_of(st.just(""), st.text(min_size=65, max_size=80), st.just("a b"), st.just("ü"))),
    (("event_id",), st.text(max_size=20).filter(lambda s: len(s) not in (32, 36))),
    (("recorded_at",), st.one_of(st.just("yesterday"), st.datetimes().map(datetime.isoformat))),  # naive
    (("red_flags", 0), st.text(max_size=20).filter(lambda s: s not in set(RedFlag))),
    (("pain", "quality", 0), st.text(max_size=20).filter(lambda s: s not in set(PainQuality))),
    (("tingling",), st.sampled_from(["x", [], {}, 1.5])),
]


def put(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A copy of `data` with `value` at `path`; for a list element path the list becomes `[value]`."""
    out: dict[str, Any] = json.loads(json.dumps(data))
    if isinstance(path[-1], int):
        path, value = path[:-1], [value]
    target = out
    for key in path[:-1]:
        target = target.setdefault(str(key), {})
    target[str(path[-1])] = value
    return out


def assert_rejected_at(model: type[BaseModel], data: Any, path: tuple[str | int, ...], **kw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data, **kw)
    locs = [tuple(e["loc"]) for e in info.value.errors()]
    assert any(loc[: len(path)] == path for loc in locs), (path, locs)
    return info.value


@FAST
@given(checkins(), st.sampled_from(range(len(CHECKIN_BAD))).flatmap(lambda i: st.tuples(st.just(i), CHECKIN_BAD[i][1])))
def test_out_of_range_checkin_fields_are_rejected_by_name(data: dict[str, Any], bad: tuple[int, Any]) -> None:
    path = CHECKIN_BAD[bad[0]][0]
    assert_rejected_at(CheckIn, put(data, path, bad[1]), path, context=CTX)


@FAST
@given(checkins(), st.sampled_from(FunctionInstrument), st.floats(allow_nan=False))
def test_function_scores_outside_the_instrument_range_are_rejected(
    data: dict[str, Any], instrument: FunctionInstrument, value: float
) -> None:
    low, high, _ = INSTRUMENT_RANGES[instrument]
    if low <= value <= high:
        value = high + 1
    bad = {**data, "function": {"instrument": instrument.value, "score": value}}
    assert_rejected_at(CheckIn, bad, ("function",), context=CTX)


@FAST
@given(patients(), st.data())
def test_out_of_range_patient_fields_are_rejected_by_name(data: dict[str, Any], draw: st.DataObject) -> None:
    field_bad: list[tuple[tuple[str | int, ...], Callable[[dict[str, Any]], dict[str, Any]]]] = [
        (("baseline", "pain"), lambda d: {**d, "baseline": {"pain": draw.draw(outside(0, 10))}}),
        (("baseline", "daily_steps"), lambda d: {**d, "baseline": {"daily_steps": draw.draw(outside(0, 200_000))}}),
        (("timezone",), lambda d: {**d, "timezone": draw.draw(st.sampled_from(["Mars/Base", "Europe", "x" * 65]))}),
        (("condition",), lambda d: {**d, "condition": draw.draw(text.filter(lambda s: s not in set(Condition)))}),
        (("care_team",), lambda d: {**d, "care_team": [d_member(i) for i in range(51)]}),
        (
            ("care_team", 0, "member_id"),
            lambda d: {**d, "care_team": [{**d_member(0), "member_id": "m" * draw.draw(st.integers(65, 90))}]},
        ),
        (
            ("care_team", 0, "notify", "webhook_url"),
            lambda d: {**d, "care_team": [{**d_member(0), "notify": {"webhook_url": "https://x.org/" + "a" * 2048}}]},
        ),
    ]
    path, mutate = draw.draw(st.sampled_from(field_bad))
    assert_rejected_at(PatientIn, mutate(data), path)


def d_member(i: int) -> dict[str, Any]:
    return {"member_id": f"m{i}", "role": "physician", "notify": {"email": "a@b.org"}}


@FAST
@given(activity, st.data())
def test_out_of_range_samples_are_rejected_by_index(data: dict[str, Any], draw: st.DataObject) -> None:
    i = draw.draw(st.integers(0, len(data["samples"]) - 1))
    bad = json.loads(json.dumps(data))
    field, value = draw.draw(
        st.sampled_from(
            [
                ("value", -1),
                ("value", 10**9),
                ("type", "calories"),
                ("start", "2026-11-20T15:00:00Z"),  # after end or in the future
                ("event_id", "nope"),
            ]
        )
    )
    bad["samples"][i][field] = value
    with pytest.raises(ValidationError) as info:
        ActivityBatch.model_validate(bad, context=CTX)
    assert any(tuple(e["loc"])[:2] == ("samples", i) for e in info.value.errors())
    dev = {**data, "device": {"id": "d" * draw.draw(st.integers(129, 300)), "kind": "ring"}}
    assert_rejected_at(ActivityBatch, dev, ("device", "id"), context=CTX)


# -- errors never echo free text ---------------------------------------------------------------------

notes = st.text(min_size=4, max_size=300).map(lambda s: MARK + s)


@FAST
@given(
    checkins(notes=notes),
    st.sampled_from([b for b in range(len(CHECKIN_BAD)) if CHECKIN_BAD[b][0] != ("notes",)]).flatmap(
        lambda i: st.tuples(st.just(i), CHECKIN_BAD[i][1])
    ),
)
def test_validation_problems_never_contain_the_notes(data: dict[str, Any], bad: tuple[int, Any]) -> None:
    path = CHECKIN_BAD[bad[0]][0]
    with pytest.raises(ValidationError) as info:
        CheckIn.model_validate(put(data, path, bad[1]), context=CTX)
    note = data["notes"]
    errors_json = json.dumps([e.model_dump() for e in item_errors(info.value, ["items", 3])], ensure_ascii=False)
    assert note not in errors_json and MARK not in errors_json
    body = validation_problem(info.value).body
    assert isinstance(body, bytes)
    assert note not in body.decode() and MARK not in body.decode()


@FAST
@given(st.text(min_size=2001, max_size=2100).map(lambda s: MARK + s), ids)
def test_too_long_notes_are_not_echoed(note: str, by: str) -> None:
    for model, data, kw in (
        (CheckIn, {"event_id": "x", "patient_id": by, "recorded_at": "x", "pain": {}, "notes": note}, CTX),
        (AlertAction, {"by": by, "note": note}, None),
    ):
        with pytest.raises(ValidationError) as info:
            model.model_validate(data, context=kw)
        body = validation_problem(info.value).body
        assert isinstance(body, bytes)
        assert MARK not in body.decode()


# -- the validation clock ----------------------------------------------------------------------------


@FAST
@given(st.integers(-10 * 60 * 24 * 365, 10 * 60), offsets)
def test_event_time_up_to_ten_minutes_ahead_is_accepted(seconds_ahead: int, tz: timezone) -> None:
    when = (NOW + timedelta(seconds=seconds_ahead)).astimezone(tz)
    base = {"event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e90", "patient_id": "p", "pain": {"current": 1}}
    c = CheckIn.model_validate({**base, "recorded_at": when.isoformat()}, context=CTX)
    assert c.recorded_at == when and c.recorded_at.tzinfo is UTC


@FAST
@given(st.integers(10 * 60 + 1, 10 * 365 * 24 * 3600), offsets, st.sampled_from(["checkin", "pt", "sample"]))
def test_event_time_more_than_ten_minutes_ahead_is_rejected(seconds_ahead: int, tz: timezone, where: str) -> None:
    when = (NOW + timedelta(seconds=seconds_ahead)).astimezone(tz).isoformat()
    earlier = (NOW - timedelta(hours=1)).isoformat()
    base = {"event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e90", "patient_id": "p", "pain": {"current": 1}}
    if where == "checkin":
        assert_rejected_at(CheckIn, {**base, "recorded_at": when}, ("recorded_at",), context=CTX)
    elif where == "pt":
        pt = {"ended_at": when}
        assert_rejected_at(CheckIn, {**base, "recorded_at": earlier, "pt_session": pt}, ("pt_session",), context=CTX)
    else:
        sample = {"event_id": base["event_id"], "type": "steps", "start": earlier, "end": when, "value": 1}
        batch = {"patient_id": "p", "device": {"id": "d", "kind": "ring"}, "samples": [sample]}
        assert_rejected_at(ActivityBatch, batch, ("samples", 0, "end"), context=CTX)


@FAST
@given(st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]), st.sampled_from(["c", "s"]))
def test_date_times_out_of_range_in_utc_are_validation_errors(value: str, which: str) -> None:
    if which == "c":
        base = {"event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e90", "patient_id": "p", "pain": {"current": 1}}
        assert_rejected_at(CheckIn, {**base, "recorded_at": value}, ("recorded_at",), context=CTX)
    else:
        assert_rejected_at(SnoozeIn, {"kind": "plateau", "until": value, "by": "m"}, ("until",))


# -- the body parser -----------------------------------------------------------------------------------


@FAST
@given(
    st.recursive(st.none() | st.booleans() | finite | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c))
)
def test_parse_json_accepts_ordinary_json(value: Any) -> None:
    text_ = json.dumps(value)
    if "\\u0000" in text_:
        return
    depth_ok = _depth(value) <= 32
    if depth_ok:
        assert parse_json(text_.encode()) == value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0
