"""The CapabilityStatement of each service: exactly the interactions and search parameters it serves.

Built and validated with the `fhir.resources` R4B models once per process (`capability_json`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from schemas.fhir import codes as c

_SECURITY = {
    "description": "Authorization: Bearer <API key>. Writes need scope 'ingest', reads scope 'care'; "
    "a patient of another tenant is answered 404."
}


def _param(name: str, kind: str, doc: str) -> dict[str, str]:
    return {"name": name, "type": kind, "documentation": doc}


_COUNT = _param("_count", "number", "page size, 1-500 (default 50); follow the Bundle's next link for more")

RESOURCES: dict[str, list[dict[str, Any]]] = {
    "ingest": [
        {
            "type": "Observation",
            "interaction": [{"code": "create"}],
            "documentation": "Pain severity / check-in panel -> one check-in; steps, sleep, grip strength -> one "
            "wearable sample. Answered 202 once in the event log. Codes: docs/fhir.md.",
        },
        {
            "type": "QuestionnaireResponse",
            "interaction": [{"code": "create"}],
            "documentation": f"Answers to {c.CHECKIN_QUESTIONNAIRE} -> one check-in.",
        },
    ],
    "alerts": [
        {
            "type": "Flag",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                _param("patient", "reference", "Patient/{patient_id} or the patient id (required)"),
                _param("status", "token", "active (open or acknowledged) or inactive (resolved)"),
                _COUNT,
            ],
        },
        {
            "type": "Communication",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                _param("subject", "reference", "Patient/{patient_id} or the patient id (required)"),
                _COUNT,
            ],
        },
    ],
    "scoring": [
        {
            "type": "Observation",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                _param("patient", "reference", "Patient/{patient_id} or the patient id (required)"),
                _param("code", "token", "[system|]code of a daily-series code, comma-separated (docs/fhir.md)"),
                _param("date", "date", "the local day: YYYY-MM-DD with prefix eq, ge, gt, le or lt; repeatable"),
                _COUNT,
            ],
        },
    ],
}


def capability_statement(service: str) -> dict[str, Any]:
    rest: dict[str, Any] = {"mode": "server", "security": _SECURITY, "resource": RESOURCES[service]}
    if service == "ingest":
        rest["interaction"] = [
            {"code": "transaction", "documentation": "all entries accepted or none (at most 1,000 entries)"},
            {"code": "batch", "documentation": "each entry accepted or rejected on its own (at most 1,000 entries)"},
        ]
    return {
        "resourceType": "CapabilityStatement",
        "id": f"nervewatch-{service}",
        "url": f"{c.CANONICAL_BASE}/CapabilityStatement/nervewatch-{service}",
        "name": f"NerveWatch{service.capitalize()}",
        "status": "active",
        "date": "2026-12-01",
        "publisher": "NerveWatch",
        "kind": "instance",
        "software": {"name": f"nervewatch-{service}"},
        "implementation": {"description": f"NerveWatch {service} service, base path /fhir/r4"},
        "fhirVersion": c.FHIR_VERSION,
        "format": [c.FHIR_JSON],
        "rest": [rest],
    }


@cache
def capability_json(service: str) -> bytes:
    """The service's CapabilityStatement as JSON, validated by the library model."""
    return CapabilityStatement.model_validate(capability_statement(service)).model_dump_json().encode()
