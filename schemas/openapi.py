"""The public HTTP API from one source: `ROUTES` is both the OpenAPI 3.1 description and the
registration of every documented route, so that a route and its description cannot drift apart.

`build()` returns the document; `openapi_json()` its canonical bytes, which `schemas.export` writes to
`schemas/json/openapi.json` and every service serves at `GET /openapi.json`. Request and response
bodies are the pydantic models of `schemas/` (their JSON Schemas go under `components/schemas`);
every error is an RFC 9457 problem (`application/problem+json`, schema `Problem`).

`bind(router, service, handlers)` is the only way a service registers its documented routes: every
`Route` of that service, in table order, with the handler named by its `operation_id`; a missing or
an unknown handler fails the app build. Routes of service `"all"` (`/healthz`, `/readyz`,
`/metrics`, `/openapi.json`) are registered by the plumbing every app is built on
(`nervewatch.http.create_app`); FHIR routes (`/fhir/r4...`) are described by each service's
CapabilityStatement instead. This module holds no web framework: `bind` takes any router with
aiohttp's `add_route(method, path, handler)`.

Each path item names its service's default local server; `ROUTES[i].service` says the same for code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from schemas.activity import ActivityBatch
from schemas.admin import (
    ACCESS_LOG_MAX_LIMIT,
    KEY_ID_PATTERN,
    AccessLogPage,
    ApiKeyList,
    KeyCreate,
    KeyRotate,
    NewApiKey,
    RotatedApiKey,
    SecretRotate,
    WebhookSecret,
)
from schemas.alerts import (
    Alert,
    AlertAction,
    AlertKind,
    AlertPage,
    AlertStatus,
    AuditPage,
    Snooze,
    SnoozeEnd,
    SnoozeIn,
    SnoozePage,
    StreamTicket,
)
from schemas.billing import (
    ENTRY_ID_PATTERN,
    MONTH_PATTERN,
    BillingReport,
    BillingSettingsIn,
    BillingSettingsOut,
    PatientBilling,
    TimeEntry,
    TimeEntryAuditPage,
    TimeEntryDelete,
    TimeEntryIn,
    TimeEntryPage,
    TimeEntryPatch,
)
from schemas.care_read import AlertCounts, CheckinPage, PatientPage, TrajectoryPage
from schemas.checkins import BatchResult, CheckIn, CheckInAccepted, CheckInBatch, RejectedItem
from schemas.clinical_profiles import EffectiveProfile, ProfileOverrideBody, ProfileVersion, ProfileVersionList
from schemas.common import PATIENT_ID_PATTERN, Condition, Role, Severity, Treatment
from schemas.conflicts import MAX_CONFLICTS_LIMIT, EventConflictPage
from schemas.patients import Patient, PatientIn, PatientRecord
from schemas.problems import Problem
from schemas.trajectory import Trajectory, TrajectoryState

Service = Literal["ingest", "scoring", "alerts", "all"]
PORTS: dict[str, int] = {"ingest": 8080, "scoring": 8081, "alerts": 8082}
MAX_QUERY_VALUE = 1024
PROBLEM_MEDIA = "application/problem+json"

# -- documentation-only models (bodies that have no contract model of their own) -----------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


class ActivityResult(BaseModel):
    """`202` body of `POST /v1/activity`: valid samples were accepted, invalid ones are listed by index."""

    accepted: int
    rejected: int
    errors: list[RejectedItem]


class EscalationStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_minutes: float = Field(gt=0, le=366 * 24 * 60)
    roles: list[Role] = Field(min_length=1)


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=r"^([01]\d|2[0-3]):([0-5]\d)$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):([0-5]\d)$")


class AlertPolicy(BaseModel):
    """A tenant's alerting policy (docs/alerting.md). Every key is optional on `PUT`; `GET` returns all."""

    model_config = ConfigDict(extra="forbid")

    escalation: dict[Severity, list[EscalationStep]] | None = None
    repeat_interval_minutes: float | None = Field(default=None, ge=5, le=366 * 24 * 60)
    quiet_hours: QuietHours | None = None
    timezone: str | None = Field(default=None, max_length=64)
    hysteresis_hours: float | None = Field(default=None, ge=0, le=366 * 24)
    disengagement_days: float | None = Field(default=None, ge=1, le=366)
    disengagement_quiet_minutes: float | None = Field(default=None, ge=0, le=366 * 24 * 60)
    max_snooze_days: float | None = Field(default=None, ge=1, le=90)


# -- the route table --------------------------------------------------------------------------------

Body = type[BaseModel] | None


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False  # path parameters always are


@dataclass(frozen=True)
class Route:
    service: Service
    method: str
    path: str
    operation_id: str
    summary: str
    scope: str | None
    request: Body = None
    responses: dict[int, tuple[str, Body]] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    media: str = "application/json"  # of the success responses
    body_required: bool = True  # False: an absent body counts as `{}`
    no_store: bool = False  # the success response holds a secret shown once (`Cache-Control: no-store`)
    notes: str = ""  # appended to the operation's description
    alt_media: str | None = None  # another media type of the 200 response (content negotiation by `Accept`)


PATIENT_ID = Param(
    "patient_id", "path", {"type": "string", "pattern": PATIENT_ID_PATTERN}, "The tenant's own patient identifier."
)
SNOOZE_ID = Param("snooze_id", "path", {"type": "string", "pattern": PATIENT_ID_PATTERN}, "A snooze id (`sn_...`).")
ALERT_ID = Param("alert_id", "path", {"type": "string", "pattern": PATIENT_ID_PATTERN}, "An alert id (`al_...`).")
KEY_ID = Param(
    "key_id",
    "path",
    {"type": "string", "pattern": KEY_ID_PATTERN},
    "An API key id (`key_` and 16 hex digits); another tenant's key is a 404 like an unknown one.",
)

CONDITION = Param("condition", "path", {"type": "string", "enum": [c.value for c in Condition]}, "The condition.")
TREATMENT = Param("treatment", "path", {"type": "string", "enum": [t.value for t in Treatment]}, "The treatment.")

ENTRY_ID = Param("entry_id", "path", {"type": "string", "pattern": ENTRY_ID_PATTERN}, "A time entry id (`te_...`).")
MONTH_OPTIONAL = Param(
    "month", "query", {"type": "string", "pattern": MONTH_PATTERN}, "Only this local calendar month (YYYY-MM)."
)
MONTH_REQUIRED = Param(
    "month", "query", {"type": "string", "pattern": MONTH_PATTERN}, "The calendar month (YYYY-MM).", required=True
)


def _csv_enum(values: list[str]) -> dict[str, Any]:
    one = "|".join(values)
    return {"type": "string", "pattern": f"^({one})(,({one}))*$", "maxLength": MAX_QUERY_VALUE}


LIST_QUERY = (
    Param("status", "query", _csv_enum([s.value for s in AlertStatus]), "Comma-separated statuses."),
    Param("severity", "query", _csv_enum([s.value for s in Severity]), "Comma-separated severities."),
    Param("kind", "query", _csv_enum([k.value for k in AlertKind]), "Comma-separated alert kinds."),
    Param("patient_id", "query", {"type": "string", "pattern": PATIENT_ID_PATTERN}),
    Param("since", "query", {"type": "string", "format": "date-time"}, "Alerts opened at or after (with offset)."),
    Param("cursor", "query", {"type": "string", "maxLength": MAX_QUERY_VALUE}, "`next_cursor` of the previous page."),
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}),
)

ACCESS_LOG_QUERY = (
    Param(
        "since",
        "query",
        {"type": "string", "format": "date-time", "maxLength": MAX_QUERY_VALUE},
        "Entries at or after this instant (ISO 8601 with offset).",
    ),
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": ACCESS_LOG_MAX_LIMIT, "default": 100},
        "Entries per page.",
    ),
    Param(
        "cursor",
        "query",
        {"type": "string", "pattern": "^[0-9]{1,19}$"},
        "`next_cursor` of the previous page: entries after that id.",
    ),
    Param("patient_id", "query", {"type": "string", "pattern": PATIENT_ID_PATTERN}, "Only this patient's entries."),
    Param("key_id", "query", {"type": "string", "pattern": KEY_ID_PATTERN}, "Only this key's entries."),
)

CONFLICTS_QUERY = (
    Param(
        "since",
        "query",
        {"type": "string", "format": "date-time", "maxLength": MAX_QUERY_VALUE},
        "Conflicts seen at or after this instant (RFC 3339 with offset).",
    ),
    Param("cursor", "query", {"type": "string", "maxLength": MAX_QUERY_VALUE}, "`next_cursor` of the previous page."),
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_CONFLICTS_LIMIT, "default": 100}),
)

CONFLICT_NOTE = (
    "Reposting an `event_id` with different content is `409` (problem type `.../event-conflict`); "
    "an identical repost is accepted again (harmless)."
)

AUTH = (401, 403, 429)
BODY = (400, 413, 415, 422)

ROUTES: tuple[Route, ...] = (
    # every service
    Route("all", "get", "/healthz", "healthz", "Process alive", None, responses={200: ("Alive", Health)}),
    Route(
        "all",
        "get",
        "/readyz",
        "readyz",
        "Broker and database reachable (503 otherwise)",
        None,
        responses={200: ("Ready", Readiness), 503: ("Not ready", Readiness)},
    ),
    Route(
        "all",
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        None,
        responses={200: ("Prometheus text exposition format", None)},
        media="text/plain",
    ),
    Route(
        "all",
        "get",
        "/openapi.json",
        "openapi",
        "This document",
        None,
        responses={200: ("The OpenAPI 3.1 description", None)},
    ),
    # ingest
    Route(
        "ingest",
        "post",
        "/v1/patients",
        "upsertPatient",
        "Enrol or update a patient",
        "ingest",
        PatientIn,
        {201: ("Created", Patient), 200: ("Updated", Patient)},
        (*BODY, *AUTH, 503),
    ),
    Route(
        "ingest",
        "get",
        "/v1/patients",
        "listPatients",
        "The tenant's enrolled patients, by patient id",
        "care",
        None,
        {200: ("A page of patients", PatientPage)},
        (400, *AUTH),
        (
            Param("condition", "query", {"type": "string", "enum": [c.value for c in Condition]}),
            Param("member_id", "query", {"type": "string", "pattern": PATIENT_ID_PATTERN}, "A care-team member."),
            Param("q", "query", {"type": "string", "pattern": PATIENT_ID_PATTERN}, "A prefix of `patient_id`."),
            Param("cursor", "query", {"type": "string", "maxLength": 100}, "`next_cursor` of the previous page."),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}),
        ),
    ),
    Route(
        "ingest",
        "get",
        "/v1/patients/{patient_id}",
        "getPatient",
        "A stored patient: the enrolment record as posted, plus `enrolled_at` and `updated_at`",
        "care",
        None,
        {200: ("The patient", PatientRecord)},
        (*AUTH, 404),
        (PATIENT_ID,),
        notes="A key with scope `ingest` may read it too (the enrolling platform); a care read is in the access log.",
    ),
    Route(
        "ingest",
        "post",
        "/v1/checkins",
        "postCheckin",
        "One telehealth check-in",
        "ingest",
        CheckIn,
        {202: ("Durably in the event log", CheckInAccepted)},
        (*BODY, *AUTH, 404, 409, 503),
        notes=CONFLICT_NOTE,
    ),
    Route(
        "ingest",
        "post",
        "/v1/checkins/batch",
        "postCheckinBatch",
        "Up to 500 check-ins; every item is validated on its own",
        "ingest",
        CheckInBatch,
        {202: ("The valid items are durably in the event log", BatchResult)},
        (*BODY, *AUTH, 409, 503),
        notes="An item reusing an `event_id` accepted before with different content is rejected by index "
        "(error type `event_conflict`); when no item was accepted and one conflicted the answer is `409`, "
        "else `422`.",
    ),
    Route(
        "ingest",
        "post",
        "/v1/activity",
        "postActivity",
        "Up to 5000 wearable samples",
        "ingest",
        ActivityBatch,
        {202: ("The valid samples are durably in the event log", ActivityResult)},
        (*BODY, *AUTH, 404, 409, 503),
        notes="A sample reusing an `event_id` accepted before with different content (device included) is "
        "rejected by index (error type `event_conflict`); when every sample conflicted the answer is `409`.",
    ),
    # ingest: tenant administration (docs/security.md)
    Route(
        "ingest",
        "post",
        "/v1/admin/keys",
        "createApiKey",
        "Create an API key for the caller's tenant",
        "admin",
        KeyCreate,
        {201: ("The new key; `key` is shown only in this response", NewApiKey)},
        (*BODY, *AUTH),
        no_store=True,
    ),
    Route(
        "ingest",
        "get",
        "/v1/admin/keys",
        "listApiKeys",
        "The tenant's API keys, oldest first (never the keys themselves or their hashes)",
        "admin",
        None,
        {200: ("Every key of the tenant, revoked and expired ones included", ApiKeyList)},
        AUTH,
    ),
    Route(
        "ingest",
        "post",
        "/v1/admin/keys/{key_id}/rotate",
        "rotateApiKey",
        "Issue a successor with the same scopes; the old key keeps working for the overlap",
        "admin",
        KeyRotate,
        {201: ("The successor; `key` is shown only in this response", RotatedApiKey)},
        (*BODY, *AUTH, 404, 409),
        (KEY_ID,),
        body_required=False,
        no_store=True,
        notes="No body is the same as `{}`. A revoked or expired key cannot be rotated (409).",
    ),
    Route(
        "ingest",
        "delete",
        "/v1/admin/keys/{key_id}",
        "revokeApiKey",
        "Revoke an API key",
        "admin",
        None,
        {204: ("Revoked (also when it already was)", None)},
        (*AUTH, 404),
        (KEY_ID,),
        notes="Every process refuses the key within seconds (30 s at most).",
    ),
    Route(
        "ingest",
        "post",
        "/v1/admin/webhook-secret/rotate",
        "rotateWebhookSecret",
        "Replace the tenant's webhook signing secret; webhooks carry both signatures during the overlap",
        "admin",
        SecretRotate,
        {200: ("The new secret, shown only in this response", WebhookSecret)},
        (*BODY, *AUTH, 404),
        body_required=False,
        no_store=True,
        notes="No body is the same as `{}`.",
    ),
    Route(
        "ingest",
        "get",
        "/v1/admin/access-log",
        "getAccessLog",
        "The tenant's access audit: successful care-scope requests, oldest first",
        "admin",
        None,
        {200: ("A page of audit entries", AccessLogPage)},
        (400, *AUTH),
        ACCESS_LOG_QUERY,
    ),
    # scoring
    Route(
        "scoring",
        "get",
        "/v1/trajectories",
        "listTrajectories",
        "Every enrolled patient's current trajectory, by patient id",
        "care",
        None,
        {200: ("A page of trajectories", TrajectoryPage)},
        (400, *AUTH),
        (
            Param("state", "query", {"type": "string", "enum": [s.value for s in TrajectoryState]}),
            Param("condition", "query", {"type": "string", "enum": [c.value for c in Condition]}),
            Param("q", "query", {"type": "string", "pattern": PATIENT_ID_PATTERN}, "A prefix of `patient_id`."),
            Param("cursor", "query", {"type": "string", "maxLength": 100}, "`next_cursor` of the previous page."),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}),
        ),
    ),
    Route(
        "scoring",
        "get",
        "/v1/patients/{patient_id}/checkins",
        "listCheckins",
        "The patient's stored check-ins with notes, newest first",
        "care",
        None,
        {200: ("A page of check-ins", CheckinPage)},
        (400, *AUTH, 404),
        (
            PATIENT_ID,
            Param("since", "query", {"type": "string", "format": "date-time"}, "Recorded at or after (with offset)."),
            Param("until", "query", {"type": "string", "format": "date-time"}, "Recorded before (with offset)."),
            Param("cursor", "query", {"type": "string", "maxLength": 200}, "`next_cursor` of the previous page."),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}),
        ),
    ),
    Route(
        "scoring",
        "get",
        "/v1/patients/{patient_id}/trajectory",
        "getTrajectory",
        "The patient's recovery trajectory, with its days in a range of local dates",
        "care",
        None,
        {200: ("The trajectory; `days` limited to the range, oldest first", Trajectory)},
        (400, *AUTH, 404),
        (
            PATIENT_ID,
            Param(
                "since",
                "query",
                {"type": "string", "format": "date"},
                "First local date (inclusive); default: 119 days before `until`.",
            ),
            Param(
                "until",
                "query",
                {"type": "string", "format": "date"},
                "Last local date (inclusive); default: the patient's today.",
            ),
        ),
    ),
    Route(
        "scoring",
        "get",
        "/v1/conflicts",
        "listConflicts",
        "Conflicting event versions that reached the pipeline, newest first, at most 500 per page",
        "admin",
        None,
        {
            200: (
                "A page of recorded conflicts (ids, digests, time, red-flag boolean; never content)",
                EventConflictPage,
            )
        },
        (400, *AUTH),
        CONFLICTS_QUERY,
        notes="A conflict whose versions carry a red flag is scored with the conflicting version's red flags: "
        "it pages.",
    ),
    # scoring: tenant clinical profiles (docs/clinical-logic.md, "Tenant profiles and re-scoring")
    Route(
        "scoring",
        "get",
        "/v1/admin/clinical-profiles",
        "listClinicalProfiles",
        "The tenant's current clinical-profile override of every pair it has overridden",
        "admin",
        None,
        {200: ("Current versions, by condition and treatment", ProfileVersionList)},
        AUTH,
    ),
    Route(
        "scoring",
        "put",
        "/v1/admin/clinical-profiles/{condition}/{treatment}",
        "putClinicalProfile",
        "Store a new version of the tenant's override of one condition/treatment profile",
        "admin",
        ProfileOverrideBody,
        {201: ("The stored version", ProfileVersion)},
        (*BODY, *AUTH, 404),
        (CONDITION, TREATMENT),
        notes="The body holds only the fields to override (`{}`: back to the defaults). Unknown fields, values of "
        "another JSON type, out of range or inconsistent with the rest of the profile are 422, naming each field. "
        "Applies to data scored from then on; `nervewatch rescore` re-scores stored data.",
    ),
    Route(
        "scoring",
        "get",
        "/v1/admin/clinical-profiles/{condition}/{treatment}",
        "getClinicalProfile",
        "The effective profile of a pair (defaults plus the tenant's current override) and its version",
        "admin",
        None,
        {200: ("The effective profile", EffectiveProfile)},
        (*AUTH, 404),
        (CONDITION, TREATMENT),
    ),
    Route(
        "scoring",
        "get",
        "/v1/admin/clinical-profiles/{condition}/{treatment}/versions",
        "listClinicalProfileVersions",
        "Every stored version of the tenant's override of a pair, newest first",
        "admin",
        None,
        {200: ("The versions", ProfileVersionList)},
        (*AUTH, 404),
        (CONDITION, TREATMENT),
    ),
    # scoring: RTM billing (docs/billing.md)
    Route(
        "scoring",
        "post",
        "/v1/patients/{patient_id}/time-entries",
        "createTimeEntry",
        "Record care-team management time for a patient",
        "care",
        TimeEntryIn,
        {201: ("The stored entry", TimeEntry)},
        (*BODY, *AUTH, 404, 409),
        (PATIENT_ID,),
        notes="409: the member has an overlapping entry (any patient), or the entry's month is closed. "
        "422 also for a start in the future, an entry not ended yet, or `interactive` on an activity other "
        "than `patient_call`/`patient_video`.",
    ),
    Route(
        "scoring",
        "get",
        "/v1/patients/{patient_id}/time-entries",
        "listTimeEntries",
        "The patient's time entries, oldest first",
        "care",
        None,
        {200: ("The entries", TimeEntryPage)},
        (400, *AUTH, 404),
        (PATIENT_ID, MONTH_OPTIONAL),
    ),
    Route(
        "scoring",
        "patch",
        "/v1/patients/{patient_id}/time-entries/{entry_id}",
        "updateTimeEntry",
        "Correct a time entry while its month is open (audited)",
        "care",
        TimeEntryPatch,
        {200: ("The corrected entry", TimeEntry)},
        (*BODY, *AUTH, 404, 409),
        (PATIENT_ID, ENTRY_ID),
    ),
    Route(
        "scoring",
        "delete",
        "/v1/patients/{patient_id}/time-entries/{entry_id}",
        "deleteTimeEntry",
        "Delete a time entry while its month is open (audited)",
        "care",
        TimeEntryDelete,
        {204: ("Deleted", None)},
        (*BODY, *AUTH, 404, 409),
        (PATIENT_ID, ENTRY_ID),
    ),
    Route(
        "scoring",
        "get",
        "/v1/patients/{patient_id}/time-entries/{entry_id}/audit",
        "getTimeEntryAudit",
        "The time entry's audit trail, oldest first (never the note's text)",
        "care",
        None,
        {200: ("Audit entries", TimeEntryAuditPage)},
        (*AUTH, 404),
        (PATIENT_ID, ENTRY_ID),
    ),
    Route(
        "scoring",
        "get",
        "/v1/patients/{patient_id}/billing",
        "getPatientBilling",
        "The patient's device-supply periods, monthly management time and codes",
        "care",
        None,
        {200: ("The billing figures", PatientBilling)},
        (*AUTH, 404, 503),
        (PATIENT_ID,),
    ),
    Route(
        "scoring",
        "get",
        "/v1/billing/report",
        "getBillingReport",
        "One row per patient with a period closing in the month or time entries in it",
        "care",
        None,
        {200: ("The report (JSON, or CSV with `Accept: text/csv`)", BillingReport)},
        (400, *AUTH, 503),
        (MONTH_REQUIRED,),
        alt_media="text/csv",
    ),
    Route(
        "scoring",
        "get",
        "/v1/admin/billing-settings",
        "getBillingSettings",
        "The tenant's billing settings, defaults filled in",
        "admin",
        None,
        {200: ("The settings", BillingSettingsOut)},
        AUTH,
    ),
    Route(
        "scoring",
        "put",
        "/v1/admin/billing-settings",
        "putBillingSettings",
        "Replace the tenant's billing settings (absent keys take their defaults)",
        "admin",
        BillingSettingsIn,
        {200: ("The stored settings", BillingSettingsOut)},
        (*BODY, *AUTH),
    ),
    # alerts
    Route(
        "alerts",
        "get",
        "/v1/alerts",
        "listAlerts",
        "Alerts, newest first, at most 500 per page",
        "care",
        None,
        {200: ("A page of alerts", AlertPage)},
        (400, *AUTH),
        LIST_QUERY,
    ),
    Route(
        "alerts",
        "get",
        "/v1/alerts/counts",
        "countAlerts",
        "Alerts per patient, severity or kind, split by severity",
        "care",
        None,
        {200: ("Counts by group", AlertCounts)},
        (400, *AUTH),
        (
            Param("group_by", "query", {"type": "string", "enum": ["patient_id", "severity", "kind"]}, required=True),
            Param(
                "status", "query", _csv_enum([s.value for s in AlertStatus]), "Comma-separated statuses (default open)."
            ),
        ),
    ),
    Route(
        "alerts",
        "get",
        "/v1/alerts/stream",
        "streamAlerts",
        "Server-Sent Events: one `alert` event per alert change",
        "care",
        None,
        {200: ("An endless text/event-stream; `data` is the alert object", None)},
        AUTH,
        (
            Param(
                "ticket",
                "query",
                {"type": "string", "maxLength": 128},
                "A single-use ticket from `POST /v1/alerts/stream-tickets`, instead of the Authorization header "
                "(for a browser's EventSource). Unknown, used or expired: 401.",
            ),
        ),
        media="text/event-stream",
        notes="The stream re-checks its key (a ticket's: the key that asked for it) and ends once it is revoked.",
    ),
    Route(
        "alerts",
        "post",
        "/v1/alerts/stream-tickets",
        "createStreamTicket",
        "A single-use ticket, valid 60 s, that opens the alert stream without an Authorization header",
        "care",
        None,
        {201: ("The ticket; bound to the calling key and tenant", StreamTicket)},
        AUTH,
        no_store=True,
    ),
    Route(
        "alerts",
        "get",
        "/v1/alerts/{alert_id}",
        "getAlert",
        "One alert",
        "care",
        None,
        {200: ("The alert", Alert)},
        (*AUTH, 404),
        (ALERT_ID,),
    ),
    Route(
        "alerts",
        "get",
        "/v1/alerts/{alert_id}/audit",
        "getAlertAudit",
        "The alert's audit trail",
        "care",
        None,
        {200: ("Audit entries, oldest first", AuditPage)},
        (*AUTH, 404),
        (ALERT_ID,),
    ),
    Route(
        "alerts",
        "post",
        "/v1/alerts/{alert_id}/acknowledge",
        "acknowledgeAlert",
        "Acknowledge an alert",
        "care",
        AlertAction,
        {200: ("The updated alert", Alert)},
        (*BODY, *AUTH, 404, 409),
        (ALERT_ID,),
    ),
    Route(
        "alerts",
        "post",
        "/v1/alerts/{alert_id}/resolve",
        "resolveAlert",
        "Resolve an alert",
        "care",
        AlertAction,
        {200: ("The updated alert", Alert)},
        (*BODY, *AUTH, 404, 409),
        (ALERT_ID,),
    ),
    Route(
        "alerts",
        "post",
        "/v1/patients/{patient_id}/snoozes",
        "snoozeAlerts",
        "Hold back alerts of one kind for a patient (never red flags)",
        "care",
        SnoozeIn,
        {201: ("The snooze", Snooze)},
        (*BODY, *AUTH, 404),
        (PATIENT_ID,),
        notes="`until` must be in the future and at most the tenant's `max_snooze_days` (default 30) ahead; "
        "a new snooze of a kind ends the current one. Recorded in the patient's alert audit.",
    ),
    Route(
        "alerts",
        "get",
        "/v1/patients/{patient_id}/snoozes",
        "listSnoozes",
        "The patient's active snoozes",
        "care",
        None,
        {200: ("Active snoozes", SnoozePage)},
        (*AUTH, 404),
        (PATIENT_ID,),
    ),
    Route(
        "alerts",
        "delete",
        "/v1/patients/{patient_id}/snoozes/{snooze_id}",
        "endSnooze",
        "End an active snooze early",
        "care",
        SnoozeEnd,
        {204: ("Ended", None)},
        (*BODY, *AUTH, 404),
        (PATIENT_ID, SNOOZE_ID),
    ),
    Route(
        "alerts",
        "get",
        "/v1/patients/{patient_id}/audit",
        "patientAlertAudit",
        "The patient's alert audit: snoozes and every entry of the patient's alerts, oldest first",
        "care",
        None,
        {200: ("Audit entries", AuditPage)},
        (*AUTH, 404, 400),
        (PATIENT_ID, Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500})),
    ),
    Route(
        "alerts",
        "get",
        "/v1/admin/alert-policy",
        "getAlertPolicy",
        "The tenant's alerting policy, defaults filled in",
        "admin",
        None,
        {200: ("The policy", AlertPolicy)},
        AUTH,
    ),
    Route(
        "alerts",
        "put",
        "/v1/admin/alert-policy",
        "putAlertPolicy",
        "Replace the tenant's alerting policy",
        "admin",
        AlertPolicy,
        {200: ("The stored policy", AlertPolicy)},
        (*BODY, *AUTH),
    ),
)

ERROR_TEXT: dict[int, str] = {
    400: "Malformed JSON, JSON nested too deeply, or an invalid query parameter",
    401: "Missing, unknown or revoked API key",
    403: "The key lacks the operation's scope",
    404: "No such resource for this tenant (another tenant's resources are never revealed)",
    409: "Conflict: an `event_id` accepted before with different content (`.../event-conflict`), or with the "
    "resource's state (e.g. the alert is already resolved, the key is revoked or expired)",
    405: "The method is not supported on this path; `Allow` lists the methods that are",
    413: "The body exceeds 1 MiB",
    414: "The request line (path and query string) exceeds 8190 bytes; nothing of it is echoed",
    415: "The body is not application/json",
    422: "Validation failed: `errors` lists every bad field by `loc`; values are never echoed",
    429: "Too many requests; retry after `Retry-After` seconds",
    431: "A header field (name and value) exceeds 8192 bytes, or there are more than 128 headers",
    503: "A dependency (event log, database) is unavailable; nothing was accepted; retry after `Retry-After`",
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}}
ALLOW = {"Allow": {"description": "The methods this path supports, comma-separated", "schema": {"type": "string"}}}
NO_STORE = {
    "Cache-Control": {
        "description": "`no-store`: the body holds a secret that is never shown again",
        "schema": {"type": "string", "const": "no-store"},
    }
}


def _ref(model: type[BaseModel], refs: dict[type[BaseModel], str]) -> dict[str, Any]:
    return {"$ref": refs[model]}


def _operation(route: Route, refs: dict[type[BaseModel], str]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.service],
        "security": [{"bearerAuth": []}] if route.scope else [],
    }
    if route.scope:
        op["x-scope"] = route.scope
        op["description"] = f"Requires an API key with scope `{route.scope}`."
    if route.notes:
        op["description"] = f"{op.get('description', '')} {route.notes}".strip()
    if route.params:
        op["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.where == "path" or p.required, "schema": p.schema}
            | ({"description": p.description} if p.description else {})
            for p in route.params
        ]
    if route.request is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _ref(route.request, refs)}},
        }
    responses: dict[str, Any] = {}
    for status, (description, body) in sorted(route.responses.items()):
        resp: dict[str, Any] = {"description": description}
        if body is not None:
            resp["content"] = {"application/json": {"schema": _ref(body, refs)}}
        elif route.media != "application/json" or route.operation_id == "openapi":
            resp["content"] = {route.media: {"schema": {"type": "string"} if route.media != "application/json" else {}}}
        if route.alt_media and status == 200:
            resp.setdefault("content", {})[route.alt_media] = {"schema": {"type": "string"}}
        if route.no_store and body is not None:
            resp["headers"] = NO_STORE
        responses[str(status)] = resp
    for status in sorted(route.errors):
        responses[str(status)] = {"$ref": f"#/components/responses/Problem{status}"}
    op["responses"] = responses
    return op


def build() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict)."""
    models: list[type[BaseModel]] = []
    for route in ROUTES:
        for model in (route.request, *(body for _, body in route.responses.values())):
            if model is not None and model not in models:
                models.append(model)
    models.append(Problem)
    keys, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}", title="NerveWatch"
    )
    refs = {m: keys[(m, "validation")]["$ref"] for m in models}
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item = paths.setdefault(route.path, {})
        if route.service != "all":
            item["servers"] = [{"url": f"http://localhost:{PORTS[route.service]}", "description": route.service}]
        item[route.method] = _operation(route, refs)
    problem_ref = refs[Problem]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NerveWatch public API",
            "version": "1",
            "description": (
                "Remote monitoring of recovery from peripheral nerve entrapment and injury "
                "(shared/CONTRACT.md is the normative text). Ingest, scoring and alerts are separate "
                "services; each path item lists its service's default local server. Every error is an "
                "RFC 9457 problem (`application/problem+json`). Request bodies: at most 1 MiB, UTF-8 "
                "JSON nested at most 32 levels, without NUL characters or unpaired surrogates. Any path "
                "answers an unsupported method with `405` (`Allow` lists the supported ones), a request "
                "line over 8190 bytes with `414`, and a header field over 8192 bytes or more than 128 "
                "headers with `431` (components `Problem405`, `Problem414`, `Problem431`)."
            ),
        },
        "servers": [{"url": f"http://localhost:{port}", "description": name} for name, port in PORTS.items()],
        "tags": [{"name": name} for name in ("all", *PORTS)],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "responses": {
                f"Problem{status}": {
                    "description": text,
                    "content": {PROBLEM_MEDIA: {"schema": {"$ref": problem_ref}}},
                }
                | ({"headers": RETRY_AFTER} if status in (429, 503) else {})
                | ({"headers": ALLOW} if status == 405 else {})
                for status, text in ERROR_TEXT.items()
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key of one tenant; scopes `ingest`, `care`, `admin`.",
                }
            },
        },
    }


@cache
def openapi_json() -> bytes:
    """The document as served and exported (sorted keys, two-space indent, trailing newline)."""
    return (json.dumps(build(), indent=2, sort_keys=True) + "\n").encode()


def route_for(method: str, path: str) -> Route:
    """The route of an OpenAPI (method, path template)."""
    for route in ROUTES:
        if route.method == method.lower() and route.path == path:
            return route
    raise KeyError((method, path))


H = TypeVar("H", bound=Callable[..., Any])


class Router(Protocol):
    """What `bind` needs of a router (aiohttp's `UrlDispatcher` is one)."""

    def add_route(self, method: str, path: str, handler: Any) -> object: ...


def bind(router: Router, service: Service, *handlers: Mapping[str, H]) -> None:
    """Register every route of `service` (not those of `"all"`) on `router`, in `ROUTES` order, each
    with the handler of its `operation_id` from the merged `handlers`; a `GET` also answers `HEAD`
    (as aiohttp's `add_get` does).

    Raises ValueError, before registering anything, naming the operation ids of routes without a
    handler, of handlers for operations `service` does not have, and of ids given more than once.
    """
    merged: dict[str, H] = {}
    twice: set[str] = set()
    for mapping in handlers:
        for operation_id, handler in mapping.items():
            if operation_id in merged:
                twice.add(operation_id)
            merged[operation_id] = handler
    routes = [r for r in ROUTES if r.service == service]
    described = {r.operation_id for r in routes}
    missing, extra = sorted(described - merged.keys()), sorted(merged.keys() - described)
    if missing or extra or twice:
        raise ValueError(
            f"{service} handlers do not match the route table: missing {missing}, "
            f"not described {extra}, given twice {sorted(twice)}"
        )
    for route in routes:
        handler = merged[route.operation_id]
        if route.method == "get":
            router.add_route("HEAD", route.path, handler)
        router.add_route(route.method.upper(), route.path, handler)
