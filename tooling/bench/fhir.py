"""Payloads of the FHIR bench row: a `batch` Bundle of check-in Observations."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.fhir import codes as c


def _nw(code: str) -> dict[str, Any]:
    return {"coding": [{"system": c.NERVEWATCH, "code": code}]}


def _loinc(code: str) -> dict[str, Any]:
    return {"coding": [{"system": c.LOINC, "code": code}]}


def checkin_observation(patient_id: str, recorded_at: datetime, seq: int) -> dict[str, Any]:
    """A pain-severity Observation with the three symptom items as components: one check-in.

    Lighter than `bench_load.checkin_dict` (a fully populated check-in is ~3 KB as FHIR); the row
    measures the mapping and publish path, not the body size (Bundles may be up to 4 MiB); see
    docs/fhir.md.
    """
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:nervewatch:bench", "value": str(uuid.uuid4())}],
        "status": "final",
        "code": _loinc(c.PAIN_SEVERITY),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": recorded_at.isoformat(),
        "valueInteger": 3 + seq % 5,
        "component": [
            {"code": _nw(c.TINGLING), "valueInteger": 3},
            {"code": _nw(c.NUMBNESS), "valueInteger": 2},
            {"code": _nw(c.WEAKNESS), "valueInteger": 2},
        ],
    }


def bundle_body(patients: list[str], size: int, start: int) -> bytes:
    """A `batch` Bundle of `size` check-in Observations (distinct identifiers), like `bench_load.batch_body`."""
    now = datetime.now(UTC)
    entries = [
        {
            "resource": checkin_observation(patients[(start + i) % len(patients)], now, i),
            "request": {"method": "POST", "url": "Observation"},
        }
        for i in range(size)
    ]
    return json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}, separators=(",", ":")).encode()
