"""Contract models: exported JSON Schemas are current, and the contract's examples validate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.activity import ActivityBatch
from schemas.checkins import CheckIn
from schemas.export import OUT, render
from schemas.patients import PatientIn

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)

CHECKIN = {
    "event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e90",
    "patient_id": "pt-0042",
    "recorded_at": "2026-11-20T08:30:00-05:00",
    "pain": {"current": 4, "worst_24h": 6, "quality": ["burning", "tingling"]},
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
    "notes": "free text, up to 2000 characters",
}


def test_exported_json_schemas_are_current() -> None:
    files = render()
    on_disk = {p.name: p.read_text() for p in OUT.glob("*.json")}
    assert on_disk == files, "run `python -m schemas.export` and commit schemas/json/"


def test_contract_checkin_example_validates_and_is_utc() -> None:
    c = CheckIn.model_validate(CHECKIN, context={"now": NOW})
    assert c.recorded_at == datetime(2026, 11, 20, 13, 30, tzinfo=UTC)


def test_contract_patient_example_validates() -> None:
    PatientIn.model_validate(
        {
            "patient_id": "pt-0042",
            "condition": "carpal_tunnel",
            "side": "right",
            "treatment": "surgical_decompression",
            "onset_date": "2026-08-01",
            "procedure_date": "2026-10-01",
            "timezone": "America/New_York",
            "baseline": {
                "pain": 7,
                "tingling": 6,
                "numbness": 5,
                "weakness": 4,
                "grip_strength_kg": 14.8,
                "daily_steps": 5600,
                "function": {"instrument": "bctq_sss", "score": 3.1},
            },
            "care_team": [
                {
                    "member_id": "pt-therapist-7",
                    "role": "physical_therapist",
                    "min_severity": "medium",
                    "notify": {
                        "webhook_url": "https://care.example.org/hooks/nervewatch",
                        "email": "therapist7@example.org",
                    },
                },
                {
                    "member_id": "oncall-hand",
                    "role": "on_call",
                    "min_severity": "critical",
                    "notify": {"webhook_url": "https://pager.example.org/hook"},
                },
            ],
        }
    )


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"pain": {"current": 11}}, ("pain", "current")),
        ({"tingling": "x"}, ("tingling",)),
        ({"red_flags": ["itchy"]}, ("red_flags", 0)),
        ({"function": {"instrument": "bctq_sss", "score": 6}}, ("function",)),
        ({"function": {"instrument": "lefs", "score": 81}}, ("function",)),
        ({"recorded_at": "2026-11-20T14:11:00Z"}, ("recorded_at",)),
        ({"recorded_at": "2026-11-20T08:30:00"}, ("recorded_at",)),
        ({"patient_id": "bad id!"}, ("patient_id",)),
        ({"notes": "x" * 2001}, ("notes",)),
        ({"night_wakings": 21}, ("night_wakings",)),
        ({"unknown_field": 1}, ("unknown_field",)),
    ],
)
def test_checkin_rejections_name_the_field(patch: dict[str, object], loc: tuple[str | int, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        CheckIn.model_validate({**CHECKIN, **patch}, context={"now": NOW})
    locs = [tuple(e["loc"]) for e in info.value.errors()]
    assert any(item[: len(loc)] == loc for item in locs), locs


def test_future_within_ten_minutes_is_accepted() -> None:
    CheckIn.model_validate({**CHECKIN, "recorded_at": "2026-11-20T14:09:00Z"}, context={"now": NOW})


def test_activity_sample_rules() -> None:
    base = {"patient_id": "p1", "device": {"id": "w1", "kind": "wrist"}}
    ok = {
        "event_id": "9c7a6a0e-0000-4000-8000-000000000001",
        "type": "steps",
        "start": "2026-11-19T00:00:00-05:00",
        "end": "2026-11-20T00:00:00-05:00",
        "value": 6240,
    }
    ActivityBatch.model_validate({**base, "samples": [ok]}, context={"now": NOW})
    with pytest.raises(ValidationError):
        ActivityBatch.model_validate({**base, "samples": [{**ok, "end": "2026-11-18T00:00:00Z"}]}, context={"now": NOW})
    with pytest.raises(ValidationError):
        ActivityBatch.model_validate(
            {**base, "samples": [{**ok, "type": "active_minutes", "value": 2000}]}, context={"now": NOW}
        )
