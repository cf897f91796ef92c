"""Hand-made FHIR resources for the FHIR tests (valid R4 unless a test breaks them)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.fhir import codes as c

HL7_DIR = Path(__file__).parent.parent / "fixtures" / "fhir" / "hl7"


def hl7(name: str) -> dict[str, Any]:
    return json.loads((HL7_DIR / name).read_text())  # type: ignore[no-any-return]


def nw(code: str) -> dict[str, Any]:
    return {"coding": [{"system": c.NERVEWATCH, "code": code}]}


def loinc(code: str) -> dict[str, Any]:
    return {"coding": [{"system": c.LOINC, "code": code}]}


def qty(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": c.UCUM, "code": code}


def pain_observation(
    value: int = 4, *, ident: str = "obs-1", patient: str = "pt-1", at: str = "2026-11-20T08:30:00-05:00"
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:example:app", "value": ident}],
        "status": "final",
        "code": loinc(c.PAIN_SEVERITY),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": at,
        "valueInteger": value,
    }


def checkin_panel(
    *, ident: str = "panel-1", patient: str = "pt-1", red_flag: str | None = "foot_drop"
) -> dict[str, Any]:
    components: list[dict[str, Any]] = [
        {"code": loinc(c.PAIN_SEVERITY), "valueInteger": 6},
        {"code": nw(c.PAIN_WORST_24H), "valueQuantity": qty(8, "{score}")},
        {"code": nw(c.PAIN_QUALITY), "valueCodeableConcept": nw("burning")},
        {"code": nw(c.PAIN_QUALITY), "valueCodeableConcept": nw("tingling")},
        {"code": nw(c.TINGLING), "valueInteger": 5},
        {"code": nw(c.NUMBNESS), "valueInteger": 4},
        {"code": nw(c.WEAKNESS), "valueInteger": 3},
        {"code": nw(c.NUMBNESS_SPREADING), "valueBoolean": False},
        {"code": nw(c.NIGHT_WAKINGS), "valueInteger": 2},
        {"code": loinc(c.ODI_SCORE), "valueQuantity": qty(42, "{score}")},
        {"code": nw(c.PT_SESSION_ENDED), "valueDateTime": "2026-11-19T16:00:00-05:00"},
        {"code": nw(c.PT_SESSION_INTENSITY), "valueCodeableConcept": nw("vigorous")},
        {"code": nw(c.HOME_EXERCISES), "valueBoolean": True},
        {"code": nw(c.ANALGESIC_DOSES), "valueInteger": 1},
    ]
    if red_flag:
        components.append({"code": nw(c.RED_FLAG), "valueCodeableConcept": nw(red_flag)})
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:example:app", "value": ident}],
        "status": "final",
        "code": nw(c.CHECKIN_PANEL),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-20T08:30:00-05:00",
        "component": components,
        "note": [{"text": "private words of the patient"}],
    }


def full_panel(i: int, patient: str, now: datetime, red_flag: str | None = "foot_drop") -> dict[str, Any]:
    """A fully populated check-in panel as an app sends it (every component, grip strength of the
    right hand, a note), recorded `10 + i` minutes before `now`; identifier `checkin-{i}-{patient}`."""
    at = now - timedelta(minutes=10 + i)
    panel = checkin_panel(ident=f"checkin-{i:06d}-{patient}", patient=patient, red_flag=red_flag)
    panel["effectiveDateTime"] = at.isoformat()
    for comp in panel["component"]:
        if comp["code"]["coding"][0]["code"] == c.PT_SESSION_ENDED:
            comp["valueDateTime"] = (at - timedelta(hours=2)).isoformat()
    panel["component"].append({"code": loinc(c.GRIP_RIGHT), "valueQuantity": qty(17.5, "kg")})
    panel["note"] = [{"text": "slept badly, the tingling in the right hand woke me up twice tonight"}]
    return panel


def steps_observation(value: float = 6240, *, code: str = c.STEPS_24H, unit: str = "{steps}/d") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "steps-2026-11-20",
        "status": "final",
        "code": loinc(code),
        "subject": {"reference": "Patient/pt-1"},
        "effectivePeriod": {"start": "2026-11-20T00:00:00-05:00", "end": "2026-11-21T00:00:00-05:00"},
        "valueQuantity": qty(value, unit),
        "device": {"reference": "Device/watch-88f1"},
    }


def grip_observation(value: float = 40, unit: str = "[lbf_av]", code: str = c.GRIP_RIGHT) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:example:dyn", "value": "grip-1"}],
        "status": "final",
        "code": loinc(code),
        "subject": {"reference": "Patient/pt-1"},
        "effectiveDateTime": "2026-11-20T09:00:00-05:00",
        "valueQuantity": qty(value, unit),
    }


def sleep_observation(hours: float = 7.5) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "identifier": [{"value": "sleep-1"}],
        "status": "final",
        "code": loinc(c.SLEEP_DURATION),
        "subject": {"reference": "Patient/pt-1"},
        "effectivePeriod": {"start": "2026-11-19T22:30:00-05:00", "end": "2026-11-20T06:30:00-05:00"},
        "valueQuantity": qty(hours, "h"),
    }


def questionnaire_response(*, ident: str = "qr-1", patient: str = "pt-1") -> dict[str, Any]:
    def answer(link: str, **value: Any) -> dict[str, Any]:
        return {"linkId": link, "answer": [value]}

    return {
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": "urn:example:app", "value": ident},
        "questionnaire": c.CHECKIN_QUESTIONNAIRE + "|1.0.0",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "authored": "2026-11-20T08:30:00-05:00",
        "item": [
            answer("pain-current", valueInteger=5),
            {
                "linkId": "symptoms",
                "item": [answer("tingling-severity", valueInteger=3), answer("numbness-severity", valueInteger=2)],
            },
            {
                "linkId": "red-flag",
                "answer": [
                    {"valueCoding": {"system": c.NERVEWATCH, "code": "saddle_anesthesia"}},
                    {"valueCoding": {"system": c.NERVEWATCH, "code": "bowel_bladder_dysfunction"}},
                ],
            },
            answer("grip-strength", valueQuantity=qty(17.5, "kg")),
            answer("bctq-sss-score", valueDecimal=2.1),
            answer("notes", valueString="free text"),
        ],
    }


def bundle(kind: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": copy.deepcopy(r),
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for i, r in enumerate(resources)
        ],
    }
