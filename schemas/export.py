"""Export JSON Schema files for every API payload and log event: `python -m schemas.export`.

Also writes `openapi.json`, the OpenAPI 3.1 description of the HTTP API (`schemas.openapi`).

The files under `schemas/json/` are committed; a test fails when they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.activity import ActivityBatch
from schemas.alerts import Alert, AlertAction, AlertPage, AuditPage, Snooze, SnoozeIn
from schemas.billing import BillingReport, PatientBilling, TimeEntry, TimeEntryIn, TimeEntryPatch
from schemas.checkins import BatchResult, CheckIn, CheckInBatch
from schemas.conflicts import EventConflictPage
from schemas.events import (
    ActivityRecorded,
    AlertChanged,
    CheckInRecorded,
    DataDaysAtRisk,
    DataDaysRiskEnded,
    DeadLetter,
    PatientUpserted,
    TrajectoryUpdated,
)
from schemas.openapi import openapi_json
from schemas.patients import Patient, PatientIn
from schemas.problems import Problem
from schemas.trajectory import Trajectory

MODELS: dict[str, type[BaseModel]] = {
    "patient-in": PatientIn,
    "patient": Patient,
    "checkin": CheckIn,
    "checkin-batch": CheckInBatch,
    "checkin-batch-result": BatchResult,
    "activity": ActivityBatch,
    "trajectory": Trajectory,
    "alert": Alert,
    "alert-page": AlertPage,
    "alert-action": AlertAction,
    "audit-page": AuditPage,
    "snooze-in": SnoozeIn,
    "snooze": Snooze,
    "problem": Problem,
    "conflict-page": EventConflictPage,
    "time-entry-in": TimeEntryIn,
    "time-entry-patch": TimeEntryPatch,
    "time-entry": TimeEntry,
    "patient-billing": PatientBilling,
    "billing-report": BillingReport,
    "event-patient-upserted": PatientUpserted,
    "event-checkin-recorded": CheckInRecorded,
    "event-activity-recorded": ActivityRecorded,
    "event-trajectory-updated": TrajectoryUpdated,
    "event-alert-changed": AlertChanged,
    "event-billing-data-days-at-risk": DataDaysAtRisk,
    "event-billing-data-days-at-risk-ended": DataDaysRiskEnded,
    "event-dead-letter": DeadLetter,
}

OUT = Path(__file__).parent / "json"


def render() -> dict[str, str]:
    files = {
        f"{name}.json": json.dumps(model.model_json_schema(mode="validation"), indent=2, sort_keys=True) + "\n"
        for name, model in MODELS.items()
    }
    files["openapi.json"] = openapi_json().decode()
    return files


def main() -> int:
    OUT.mkdir(exist_ok=True)
    files = render()
    for stale in OUT.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} schema files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
