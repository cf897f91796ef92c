"""Code systems, canonical URLs and the codes NerveWatch understands (see docs/fhir.md).

Canonical URLs live under `https://nervewatch.example/fhir/`; a deployment that serves them
elsewhere keeps these identifiers (they are names, not necessarily resolvable locations).
"""

from __future__ import annotations

import json
import uuid
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CANONICAL_BASE = "https://nervewatch.example/fhir"
NERVEWATCH = f"{CANONICAL_BASE}/CodeSystem/nervewatch"
CHECKIN_QUESTIONNAIRE = f"{CANONICAL_BASE}/Questionnaire/nervewatch-checkin"
ALERT_ID_SYSTEM = f"{CANONICAL_BASE}/sid/alert-id"
DELIVERY_ID_SYSTEM = f"{CANONICAL_BASE}/sid/delivery-id"
SEVERITY_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/alert-severity"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ISSUE_TYPE = "http://hl7.org/fhir/issue-type"

# The namespace of event ids derived from FHIR resources (uuid5; see `derive_event_id`).
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{CANONICAL_BASE}/event-id")


def patient_identifier_system(tenant_id: str) -> str:
    """The identifier system under which a tenant's own patient ids are valid (`Patient.identifier`)."""
    return f"{CANONICAL_BASE}/sid/patient-id/{quote(tenant_id, safe='')}"


def derive_event_id(tenant_id: str, resource_type: str, key: str) -> uuid.UUID:
    """Deterministic event id: the same resource (by identifier, else id) of a tenant is one event."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{tenant_id}\n{resource_type}\n{key}")


# --- LOINC -------------------------------------------------------------------------------------
PAIN_SEVERITY = "72514-3"  # Pain severity - 0-10 verbal numeric rating [Score] - Reported
STEPS_24H = "41950-7"  # Number of steps in 24 hour Measured
STEPS = "55423-8"  # Number of steps in unspecified time Pedometer
GRIP_LEFT = "83173-5"  # Grip strength Hand - left Dynamometer
GRIP_RIGHT = "83174-3"  # Grip strength Hand - right Dynamometer
SLEEP_DURATION = "93832-4"  # Sleep duration
PROMIS_PI_TSCORE = "77865-4"  # PROMIS pain interference - version 1.0 T-score
ODI_SCORE = "97909-6"  # Oswestry disability index score (panel 97908-8)

# --- NerveWatch CodeSystem: observation codes ----------------------------------------------------
CHECKIN_PANEL = "checkin"
PAIN_WORST_24H = "pain-worst-24h"
PAIN_QUALITY = "pain-quality"
TINGLING = "tingling-severity"
NUMBNESS = "numbness-severity"
WEAKNESS = "weakness-severity"
NUMBNESS_SPREADING = "numbness-spreading"
NIGHT_WAKINGS = "night-wakings"
ANALGESIC_DOSES = "analgesic-doses-24h"
PT_SESSION_ENDED = "pt-session-ended"
PT_SESSION_INTENSITY = "pt-session-intensity"
HOME_EXERCISES = "home-exercises-done"
RED_FLAG = "red-flag"
NOTES = "notes"

# Function instruments: (system, code) of the score -> the contract's instrument name.
FUNCTION_CODES: dict[tuple[str, str], str] = {
    (NERVEWATCH, "quickdash-score"): "quickdash",
    (NERVEWATCH, "bctq-sss-score"): "bctq_sss",
    (NERVEWATCH, "bctq-fss-score"): "bctq_fss",
    (NERVEWATCH, "lefs-score"): "lefs",
    (NERVEWATCH, "psfs-score"): "psfs",
    (LOINC, ODI_SCORE): "odi",
    (LOINC, PROMIS_PI_TSCORE): "promis_pi",
}
INSTRUMENT_CODES: dict[str, tuple[str, str]] = {v: k for k, v in FUNCTION_CODES.items()}

# Daily-series fields -> (system, code, UCUM unit or None for a unitless score) for outbound Observations.
DAILY_CODES: dict[str, tuple[str, str, str | None]] = {
    "pain": (LOINC, PAIN_SEVERITY, "{score}"),
    "tingling": (NERVEWATCH, TINGLING, "{score}"),
    "numbness": (NERVEWATCH, NUMBNESS, "{score}"),
    "weakness": (NERVEWATCH, WEAKNESS, "{score}"),
    "grip_strength_kg": (NERVEWATCH, "grip-strength-affected", "kg"),
    "steps": (LOINC, STEPS_24H, "{steps}/d"),
    "sleep_minutes": (LOINC, SLEEP_DURATION, "min"),
    "active_minutes": (NERVEWATCH, "active-minutes", "min"),
}


ALERT_KIND_PREFIX = "alert-"  # Flag.code is `alert-<kind>` (e.g. alert-red_flag) in the NerveWatch CodeSystem
REASON_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/nervewatch-reason"  # alert reason codes (not enumerated)
ALERT_STATUS_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/alert-status"
ALERT_REASON_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/alert-reason"
MEMBER_ID_SYSTEM = f"{CANONICAL_BASE}/sid/member-id"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"


@cache
def code_system() -> dict[str, Any]:
    """The NerveWatch CodeSystem resource (shipped as JSON next to this module)."""
    return json.loads(resources.files("schemas.fhir").joinpath("codesystem-nervewatch.json").read_text())  # type: ignore[no-any-return]


@cache
def checkin_questionnaire() -> dict[str, Any]:
    """The NerveWatch check-in Questionnaire resource (shipped as JSON next to this module)."""
    return json.loads(  # type: ignore[no-any-return]
        resources.files("schemas.fhir").joinpath("questionnaire-checkin.json").read_text()
    )


@cache
def nervewatch_codes() -> frozenset[str]:
    """Every code defined by the NerveWatch CodeSystem (nested concepts included)."""
    out: set[str] = set()
    stack = list(code_system()["concept"])
    while stack:
        c = stack.pop()
        out.add(c["code"])
        stack.extend(c.get("concept", []))
    return frozenset(out)
