"""FHIR R4 out: every resource kind NerveWatch emits validates against the library's R4(B) models."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from schemas.fhir import codes as c
from schemas.fhir import inbound, outbound
from schemas.fhir.capability import capability_json
from schemas.fhir.inbound import Issue

T0 = datetime(2026, 11, 20, 13, 30, 2, tzinfo=UTC)


def valid(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def alert(**over: Any) -> dict[str, Any]:
    a = {
        "id": "al_0193f1a2b3c4deadbeefcafe0001",
        "patient_id": "pt-0042",
        "kind": "red_flag",
        "severity": "critical",
        "status": "open",
        "summary": "Red flag reported: foot drop",
        "reasons": [{"code": "red_flag_reported", "detail": "foot_drop reported 2026-11-20"}],
        "opened_at": T0,
        "updated_at": T0,
        "resolved_at": None,
    }
    a.update(over)
    return a


def test_flag_per_alert() -> None:
    f = outbound.flag(alert())
    valid(f)
    assert f["id"] == "al-0193f1a2b3c4deadbeefcafe0001"
    assert f["identifier"][0] == {"system": c.ALERT_ID_SYSTEM, "value": "al_0193f1a2b3c4deadbeefcafe0001"}
    assert f["status"] == "active" and f["period"] == {"start": "2026-11-20T13:30:02Z"}
    assert f["code"]["coding"][0]["code"] == "alert-red_flag"
    assert f["code"]["coding"][0]["code"] in c.nervewatch_codes()
    assert f["subject"] == {"reference": "Patient/pt-0042"}
    reasons = [e for e in f["extension"] if e["url"] == c.ALERT_REASON_EXTENSION]
    assert reasons[0]["valueCodeableConcept"]["coding"][0]["code"] == "red_flag_reported"
    resolved = outbound.flag(alert(status="resolved", resolved_at=T0))
    valid(resolved)
    assert resolved["status"] == "inactive" and resolved["period"]["end"] == "2026-11-20T13:30:02Z"


def test_communication_per_notification() -> None:
    delivery = uuid.uuid4()
    n = {
        "delivery_id": delivery,
        "member_id": "oncall-hand",
        "channel": "webhook",
        "status": "delivered",
        "reason": "opened",
        "created_at": T0,
        "delivered_at": T0,
        "alert_id": "al_0193f1a2b3c4deadbeefcafe0001",
        "patient_id": "pt-0042",
        "severity": "critical",
    }
    comm = outbound.communication(n)
    valid(comm)
    assert comm["status"] == "completed" and comm["priority"] == "stat" and comm["sent"] == "2026-11-20T13:30:02Z"
    assert comm["about"] == [{"reference": "Flag/al-0193f1a2b3c4deadbeefcafe0001"}]
    for status in ("pending", "retrying", "failed", "suppressed"):
        valid(outbound.communication({**n, "status": status, "delivered_at": None}))


def test_daily_series_observations() -> None:
    day = {
        "pain": 4.5,
        "tingling": 3,
        "steps": 6240,
        "device_grip_strength_kg": 18.1,
        "sleep_minutes": 420,
        "checkins": 2,
    }
    values = outbound.daily_values(day)
    assert values == {"pain": 4.5, "tingling": 3, "grip_strength_kg": 18.1, "steps": 6240, "sleep_minutes": 420}
    for name, value in values.items():
        obs = outbound.daily_observation("clinic-a", "pt-0042", date(2026, 11, 19), name, value, T0)
        valid(obs)
        assert obs["effectiveDateTime"] == "2026-11-19"
    pain = outbound.daily_observation("clinic-a", "pt-0042", date(2026, 11, 19), "pain", 4.5, T0)
    assert pain["code"]["coding"][0] == {"system": c.LOINC, "code": c.PAIN_SEVERITY}
    assert outbound.daily_field_for(c.LOINC, c.PAIN_SEVERITY) == ["pain"]
    assert outbound.daily_field_for(None, c.STEPS_24H) == ["steps"]
    assert outbound.daily_field_for(c.NERVEWATCH, c.PAIN_SEVERITY) == []


def test_searchset_with_paging_links() -> None:
    flags = [outbound.flag(alert())]
    b = outbound.searchset("http://h/fhir/r4", "Flag", flags, "http://h/fhir/r4/Flag?patient=pt-0042", "http://h/n")
    valid(b)
    assert [link["relation"] for link in b["link"]] == ["self", "next"]
    assert b["entry"][0]["fullUrl"] == "http://h/fhir/r4/Flag/al-0193f1a2b3c4deadbeefcafe0001"


def test_response_bundles_and_outcomes() -> None:
    issues = [Issue("value", "Input should be less than or equal to 10", "Bundle.entry[1].resource")]
    for kind in ("transaction", "batch"):
        b = outbound.response_bundle(kind, [None, issues])
        valid(b)
        assert b["type"] == f"{kind}-response"
        assert [e["response"]["status"] for e in b["entry"]] == ["202 Accepted", "422 Unprocessable Entity"]
    valid(outbound.operation_outcome(issues))
    valid(outbound.accepted_outcome(uuid.uuid4()))
    for status in (400, 401, 403, 404, 405, 413, 415, 429, 500, 503):
        valid(outbound.status_outcome(status, "x"))


@pytest.mark.parametrize("service", ["ingest", "alerts", "scoring"])
def test_capability_statements(service: str) -> None:
    statement = json.loads(capability_json(service))
    valid(statement)
    assert statement["fhirVersion"] == "4.0.1" and statement["format"] == [c.FHIR_JSON]
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert (
        types
        == {
            "ingest": {"Observation", "QuestionnaireResponse"},
            "alerts": {"Flag", "Communication"},
            "scoring": {"Observation"},
        }[service]
    )


def test_code_system_and_questionnaire() -> None:
    valid(c.code_system())
    valid(c.checkin_questionnaire())
    assert c.code_system()["url"] == c.NERVEWATCH
    assert c.checkin_questionnaire()["url"] == c.CHECKIN_QUESTIONNAIRE
    codes = c.nervewatch_codes()
    assert len(codes) == c.code_system()["count"]
    used = [code for system, code in inbound._MEANINGS if system == c.NERVEWATCH]
    used += [code for system, code, _ in c.DAILY_CODES.values() if system == c.NERVEWATCH]
    assert set(used) <= codes
    # every question of the Questionnaire is understood by the mapping, and nothing else is
    link_ids = {item["linkId"] for item in c.checkin_questionnaire()["item"]}
    assert link_ids == set(inbound._LINK_IDS)
