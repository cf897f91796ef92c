"""Conversions between stored rows/events and the scoring core's value types."""

from __future__ import annotations

import dataclasses
import hashlib
import typing
from datetime import date, datetime
from functools import cache
from typing import Any

from schemas.activity import ActivitySample
from schemas.patients import Patient
from services.scoring.model import ActivityObs, Baseline, CheckinObs, DayRecord, PatientProfile, RedFlagObs


def content_hash(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def checkin_obs(data: dict[str, Any], received_at: datetime) -> CheckinObs:
    """From the stored check-in JSON (the contract's field names)."""
    pain = data["pain"]
    function = data.get("function") or {}
    pt = data.get("pt_session") or {}
    return CheckinObs(
        event_id=str(data["event_id"]),
        recorded_at=_dt(data["recorded_at"]),
        received_at=received_at,
        pain=int(pain["current"]),
        pain_worst=pain.get("worst_24h"),
        tingling=data.get("tingling"),
        numbness=data.get("numbness"),
        weakness=data.get("weakness"),
        numbness_spreading=data.get("numbness_spreading"),
        night_wakings=data.get("night_wakings"),
        grip_strength_kg=data.get("grip_strength_kg"),
        function_instrument=function.get("instrument"),
        function_score=function.get("score"),
        analgesic_doses=data.get("analgesic_doses_24h"),
        pt_session_ended_at=_dt(pt["ended_at"]) if pt.get("ended_at") else None,
        pt_intensity=pt.get("intensity"),
        red_flags=tuple(data.get("red_flags") or ()),
    )


def activity_obs(sample: ActivitySample, device_id: str, received_at: datetime) -> ActivityObs:
    return ActivityObs(
        event_id=str(sample.event_id),
        type=sample.type.value,
        start=sample.start,
        end=sample.end,
        value=sample.value,
        device_id=device_id,
        received_at=received_at,
    )


def profile_from_patient(p: Patient) -> PatientProfile:
    b = p.baseline
    baseline = None
    if b is not None:
        baseline = Baseline(
            pain=b.pain,
            tingling=b.tingling,
            numbness=b.numbness,
            weakness=b.weakness,
            grip_strength_kg=b.grip_strength_kg,
            daily_steps=b.daily_steps,
            function_instrument=b.function.instrument.value if b.function else None,
            function_score=b.function.score if b.function else None,
        )
    return PatientProfile(
        patient_id=p.patient_id,
        condition=p.condition.value,
        side=p.side.value,
        treatment=p.treatment.value,
        timezone=p.timezone,
        onset_date=p.onset_date,
        procedure_date=p.procedure_date,
        repair_distance_mm=p.repair_distance_mm,
        baseline=baseline,
    )


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


@cache
def _day_field_kinds() -> dict[str, str]:
    hints = typing.get_type_hints(DayRecord)
    kinds: dict[str, str] = {}
    for f in dataclasses.fields(DayRecord):
        hint = hints[f.name]
        args = set(typing.get_args(hint)) or {hint}
        if f.name == "red_flag_obs":
            kinds[f.name] = "red_flag_obs"
        elif datetime in args:
            kinds[f.name] = "datetime"
        elif date in args:
            kinds[f.name] = "date"
        elif typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in args):
            kinds[f.name] = "tuple"
        else:
            kinds[f.name] = "plain"
    return kinds


def day_to_json(day: DayRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in _day_field_kinds().items():
        value = getattr(day, name)
        if value is None:
            continue
        if kind in ("datetime", "date"):
            out[name] = value.isoformat()
        elif kind == "red_flag_obs":
            out[name] = [
                {
                    "event_id": o.event_id,
                    "recorded_at": o.recorded_at.isoformat(),
                    "received_at": o.received_at.isoformat(),
                    "flags": list(o.flags),
                }
                for o in value
            ]
        elif kind == "tuple":
            out[name] = list(value)
        else:
            out[name] = value
    return out


def day_from_json(data: dict[str, Any]) -> DayRecord:
    kinds = _day_field_kinds()
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kind = kinds.get(name)
        if kind is None or value is None:
            continue  # a field dropped from DayRecord: ignore old data
        if kind == "datetime":
            kwargs[name] = datetime.fromisoformat(value)
        elif kind == "date":
            kwargs[name] = date.fromisoformat(value)
        elif kind == "red_flag_obs":
            kwargs[name] = tuple(
                RedFlagObs(
                    event_id=o["event_id"],
                    recorded_at=datetime.fromisoformat(o["recorded_at"]),
                    received_at=datetime.fromisoformat(o["received_at"]),
                    flags=tuple(o["flags"]),
                )
                for o in value
            )
        elif kind == "tuple":
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return DayRecord(**kwargs)
