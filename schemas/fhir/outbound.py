"""NerveWatch data out as FHIR R4 resources (pure; built as plain JSON dicts, see `schemas.fhir`).

Every resource kind built here is validated against the `fhir.resources` R4B models in
tests/unit/test_fhir_outbound.py. Errors never echo submitted content: `OperationOutcome`
diagnostics are NerveWatch's own sentences.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from schemas.fhir import codes as c
from schemas.fhir.inbound import Issue

STATUS_TEXT = {
    200: "200 OK",
    202: "202 Accepted",
    400: "400 Bad Request",
    404: "404 Not Found",
    409: "409 Conflict",
    422: "422 Unprocessable Entity",
}
# HTTP status -> FHIR issue type, for errors raised outside the FHIR mapping (auth, limits, overload).
STATUS_ISSUE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    413: "too-costly",
    414: "too-long",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    431: "too-long",
    503: "transient",
}
_DAILY_ORDER = list(c.DAILY_CODES)
_CATEGORY = {
    "pain": "survey",
    "tingling": "survey",
    "numbness": "survey",
    "weakness": "survey",
    "grip_strength_kg": "exam",
    "steps": "activity",
    "sleep_minutes": "activity",
    "active_minutes": "activity",
}


def _ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# --- OperationOutcome -------------------------------------------------------------------------------


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": i.code, "diagnostics": i.diagnostics, "expression": [i.expression]}
            for i in issues
        ],
    }


def status_outcome(status: int, diagnostics: str) -> dict[str, Any]:
    """The OperationOutcome of an HTTP error that is not about one element (auth, limits, overload)."""
    code = STATUS_ISSUE.get(status, "exception" if status >= 500 else "invalid")
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


# --- transaction-response / batch-response -----------------------------------------------------------


def response_bundle(kind: str, results: Sequence[Sequence[Issue] | None]) -> dict[str, Any]:
    """`transaction-response` or `batch-response`: one entry per request entry, in order.

    `None` is an accepted entry (`202 Accepted`: the event is in the log); otherwise the entry's
    issues, with the status of the first and an OperationOutcome.
    """
    entries: list[dict[str, Any]] = []
    for issues in results:
        if not issues:
            entries.append({"response": {"status": STATUS_TEXT[202]}})
        else:
            status = issues[0].status
            entries.append(
                {
                    "response": {
                        "status": STATUS_TEXT.get(status, str(status)),
                        "outcome": operation_outcome(issues),
                    }
                }
            )
    return {"resourceType": "Bundle", "type": f"{kind}-response", "entry": entries}


def accepted_outcome(event_id: uuid.UUID) -> dict[str, Any]:
    """The body of a `202` to a single-resource POST: accepted into the log as that event."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": f"accepted as event {event_id}"}],
    }


# --- searchset ------------------------------------------------------------------------------------------


def searchset(
    base_url: str, resource_type: str, resources: Iterable[dict[str, Any]], self_url: str, next_url: str | None
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {"fullUrl": f"{base_url}/{resource_type}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


# --- Flag (alerts) ----------------------------------------------------------------------------------------


def fhir_id(value: str) -> str:
    """A FHIR id (`[A-Za-z0-9-.]{1,64}`) from a NerveWatch id: `_` becomes `-` (alert ids: `al_...`)."""
    return value.replace("_", "-")[:64]


def flag(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A Flag for an alert (the contract's Alert object as a dict, datetimes as `datetime`)."""
    period: dict[str, str] = {"start": _ts(alert["opened_at"])}
    if alert.get("resolved_at") is not None:
        period["end"] = _ts(alert["resolved_at"])
    extension: list[dict[str, Any]] = [
        {"url": c.SEVERITY_EXTENSION, "valueCode": str(alert["severity"])},
        {"url": c.ALERT_STATUS_EXTENSION, "valueCode": str(alert["status"])},
    ]
    for reason in alert.get("reasons") or ():
        extension.append(
            {
                "url": c.ALERT_REASON_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [{"system": c.REASON_SYSTEM, "code": reason["code"]}],
                    "text": reason["detail"],
                },
            }
        )
    kind = str(alert["kind"])
    return {
        "resourceType": "Flag",
        "id": fhir_id(alert["id"]),
        "meta": {"lastUpdated": _ts(alert["updated_at"])},
        "extension": extension,
        "identifier": [{"system": c.ALERT_ID_SYSTEM, "value": alert["id"]}],
        "status": "inactive" if alert["status"] == "resolved" else "active",
        "category": [{"coding": [{"system": c.FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}]}],
        "code": {
            "coding": [{"system": c.NERVEWATCH, "code": c.ALERT_KIND_PREFIX + kind}],
            "text": alert["summary"],
        },
        "subject": {"reference": f"Patient/{alert['patient_id']}"},
        "period": period,
    }


# --- Communication (notifications) ---------------------------------------------------------------------

_COMMUNICATION_STATUS = {
    "pending": "preparation",
    "retrying": "in-progress",
    "delivered": "completed",
    "failed": "stopped",
    "suppressed": "not-done",
}
_PRIORITY = {"critical": "stat", "high": "urgent", "medium": "routine", "low": "routine"}


def communication(n: Mapping[str, Any]) -> dict[str, Any]:
    """A Communication for one notification (delivery) of an alert to a care-team member.

    `n` holds the notification row (`delivery_id`, `member_id`, `channel`, `status`, `reason`,
    `created_at`, `delivered_at`) plus its alert's `alert_id`, `patient_id` and `severity`.
    """
    status = str(n["status"])
    out: dict[str, Any] = {
        "resourceType": "Communication",
        "id": str(n["delivery_id"]),
        "meta": {"lastUpdated": _ts(n.get("delivered_at") or n["created_at"])},
        "identifier": [{"system": c.DELIVERY_ID_SYSTEM, "value": str(n["delivery_id"])}],
        "status": _COMMUNICATION_STATUS.get(status, "unknown"),
        "category": [{"coding": [{"system": c.COMMUNICATION_CATEGORY, "code": "alert", "display": "Alert"}]}],
        "priority": _PRIORITY.get(str(n["severity"]), "routine"),
        "medium": [{"text": str(n["channel"])}],
        "subject": {"reference": f"Patient/{n['patient_id']}"},
        "about": [{"reference": f"Flag/{fhir_id(n['alert_id'])}"}],
        "recipient": [{"identifier": {"system": c.MEMBER_ID_SYSTEM, "value": n["member_id"]}}],
        "reasonCode": [{"text": str(n["reason"])}],
        "payload": [{"contentReference": {"reference": f"Flag/{fhir_id(n['alert_id'])}"}}],
    }
    if n.get("delivered_at") is not None:
        out["sent"] = _ts(n["delivered_at"])
    return out


# --- Observation (daily series) ----------------------------------------------------------------------------


def daily_values(day: Mapping[str, Any]) -> dict[str, float]:
    """The outbound fields of one stored day (`scoring.daily.data`), in `DAILY_CODES` order.

    Grip strength is the check-in reading of the affected side when there is one, else the
    dynamometer's (as in the trajectory API).
    """
    out: dict[str, float] = {}
    for name in _DAILY_ORDER:
        value = day.get(name)
        if name == "grip_strength_kg" and value is None:
            value = day.get("device_grip_strength_kg")
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out


def daily_observation_id(tenant_id: str, patient_id: str, day: date, name: str) -> str:
    return str(uuid.uuid5(c.EVENT_ID_NAMESPACE, f"daily\n{tenant_id}\n{patient_id}\n{day.isoformat()}\n{name}"))


def daily_observation(
    tenant_id: str, patient_id: str, day: date, name: str, value: float, updated_at: datetime
) -> dict[str, Any]:
    """One daily aggregate as an Observation; `effectiveDateTime` is the patient's local calendar day."""
    system, code, unit = c.DAILY_CODES[name]
    quantity: dict[str, Any] = {"value": value}
    if unit is not None:
        quantity.update({"unit": unit, "system": c.UCUM, "code": unit})
    return {
        "resourceType": "Observation",
        "id": daily_observation_id(tenant_id, patient_id, day, name),
        "meta": {"lastUpdated": _ts(updated_at)},
        "status": "final",
        "category": [{"coding": [{"system": c.OBSERVATION_CATEGORY, "code": _CATEGORY[name]}]}],
        "code": {"coding": [{"system": system, "code": code}], "text": f"daily {name.replace('_', ' ')}"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": day.isoformat(),
        "valueQuantity": quantity,
    }


def daily_field_for(system: str | None, code: str) -> list[str]:
    """The daily-series fields that a `code` search token (`[system|]code`) selects."""
    return [n for n, (s, k, _) in c.DAILY_CODES.items() if k == code and (system is None or system == s)]


DAILY_ORDER = tuple(_DAILY_ORDER)
