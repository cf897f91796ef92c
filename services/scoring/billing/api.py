"""HTTP API of RTM billing on the scoring service (shared/CONTRACT.md, "Remote therapeutic
monitoring (RTM) billing"; docs/billing.md).

Scope `care`: time entries (`POST`, `GET`, `PATCH`, `DELETE`, and their audit trail), a patient's
billing figures, the monthly report (JSON, or CSV for `Accept: text/csv`). Scope `admin`: the
tenant's billing settings. An unknown patient and another tenant's patient are both 404. Care
reads are in the access audit (`authenticate`); the report adds one access row per patient it
lists. A time entry's note is returned to the care team but never logged, never put in an error
and never in the audit trail.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import ValidationError

from nervewatch import metrics
from nervewatch.http import Handler, authenticate, json_response, record_access
from nervewatch.problems import ProblemError, not_found, read_json, validation_problem
from schemas.billing import (
    ENTRY_ID_PATTERN,
    BillingReport,
    BillingSettingsIn,
    TimeEntry,
    TimeEntryAuditEntry,
    TimeEntryAuditPage,
    TimeEntryDelete,
    TimeEntryIn,
    TimeEntryPage,
    TimeEntryPatch,
)
from schemas.checkins import ItemError
from schemas.common import PATIENT_ID_PATTERN
from services.scoring.billing import engine, store, views
from services.scoring.billing.entries import EntryFields, EntryProblem, check_editable, check_entry
from services.scoring.billing.figures import periods_of
from services.scoring.billing.model import Activity, BillingSettings, BillingSummary, Month

log = logging.getLogger(__name__)

_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN)
# The widest UTC offsets (-12:00 and +14:00): a local month lies within its UTC month widened by these.
_WIDEN = timedelta(hours=15)


def new_entry_id(now: datetime) -> str:
    """Time-ordered, unguessable id: `te_` + 12 hex digits of milliseconds + 12 random hex digits."""
    return f"te_{int(now.timestamp() * 1000):012x}{secrets.token_hex(6)}"


def _path(request: web.Request, name: str, pattern: re.Pattern[str], what: str) -> str:
    value = request.match_info[name]
    if not pattern.fullmatch(value):
        raise not_found(what)
    return value


def _bad_param(name: str) -> ProblemError:
    return ProblemError(400, "Invalid query parameter", f"'{name}' has an invalid value", slug="invalid-parameter")


def _month_param(request: web.Request, required: bool) -> Month | None:
    raw = request.query.get("month")
    if raw is None:
        if required:
            raise ProblemError(
                400, "Missing query parameter", "'month' (YYYY-MM) is required", slug="invalid-parameter"
            )
        return None
    try:
        return Month.parse(raw)
    except ValueError:
        raise _bad_param("month") from None


def _refuse(problem: EntryProblem) -> ProblemError:
    reason = "month_closed" if problem.slug == "month-closed" else "invalid"
    metrics.BILLING_TIME_ENTRY_REJECTIONS.labels(reason).inc()
    errors = [ItemError(loc=list(problem.loc), msg=problem.detail, type="value_error")] if problem.loc else None
    return ProblemError(problem.status, problem.title, problem.detail, slug=problem.slug, errors=errors)


def _overlap(other_id: str | None) -> ProblemError:
    metrics.BILLING_TIME_ENTRY_REJECTIONS.labels("overlap").inc()
    detail = "overlaps another time entry of this member" + (f" ({other_id})" if other_id else "")
    return ProblemError(409, "Overlapping time entry", detail, slug="time-entry-overlap")


def _entry_view(r: asyncpg.Record) -> TimeEntry:
    return TimeEntry(
        id=r["id"],
        patient_id=r["patient_id"],
        member_id=r["member_id"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        minutes=r["minutes"],
        activity=r["activity"],
        interactive=r["interactive"],
        note=r["note"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


_AUDITED = ("member_id", "started_at", "minutes", "activity", "interactive")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Activity):
        return value.value
    return value


def _diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Changed fields and their values (the note is named, never its text)."""
    fields = [f for f in (*_AUDITED, "note") if before.get(f) != after.get(f)]
    changes = {f: {"before": _jsonable(before.get(f)), "after": _jsonable(after.get(f))} for f in fields if f != "note"}
    return fields, changes


def wants_csv(accept: str) -> bool:
    """Whether an `Accept` header prefers `text/csv` to JSON (JSON on a tie or without one)."""
    csv_q = json_q = 0.0
    for part in accept.split(",")[:32]:
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in ("text/csv", "text/*"):
            csv_q = max(csv_q, q)
        if media in ("application/json", "application/*", "*/*"):
            json_q = max(json_q, q)
    return csv_q > json_q


class BillingHandlers:
    """The billing routes. `clock` is injectable for tests."""

    def __init__(self, pool: asyncpg.Pool, clock: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.clock = clock or (lambda: datetime.now(UTC))

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {
            "createTimeEntry": self.create_entry,
            "listTimeEntries": self.list_entries,
            "updateTimeEntry": self.update_entry,
            "deleteTimeEntry": self.delete_entry,
            "getTimeEntryAudit": self.entry_audit,
            "getPatientBilling": self.patient_billing,
            "getBillingReport": self.report,
            "getBillingSettings": self.get_settings,
            "putBillingSettings": self.put_settings,
        }

    async def _patient(self, conn: asyncpg.Connection, tenant_id: str, patient_id: str) -> store.PatientInfo:
        info = await store.patient(conn, tenant_id, patient_id)
        if info is None:
            raise not_found("patient")
        return info

    async def _editable_entry(
        self, conn: asyncpg.Connection, tenant_id: str, patient_id: str, entry_id: str, now: datetime
    ) -> tuple[store.PatientInfo, asyncpg.Record, BillingSettings]:
        """The patient, its entry (locked for the caller's transaction) and the tenant's billing
        settings, when the entry's month is still open at `now`; 404 for an unknown patient or
        entry, the `check_editable` refusal (month closed) otherwise."""
        info = await self._patient(conn, tenant_id, patient_id)
        row = await store.entry_for_update(conn, tenant_id, patient_id, entry_id)
        if row is None:
            raise not_found("time entry")
        settings = await store.load_settings(conn, tenant_id)
        problem = check_editable(row["started_at"], tz=info.tz, now=now, grace_days=settings.grace_days)
        if problem is not None:
            raise _refuse(problem)
        return info, row, settings

    # -- time entries -----------------------------------------------------------------------------

    async def create_entry(self, request: web.Request) -> web.Response:
        """Record management time (`201`). 422: invalid fields, a start in the future or an entry
        not ended yet, `interactive` on something else than a call or video; 409: the member has an
        overlapping entry (any patient), or the entry's month is closed; 404: unknown patient."""
        principal = await authenticate(request, "care")
        patient_id = _path(request, "patient_id", _PATIENT_ID, "patient")
        body = await read_json(request)
        try:
            data = TimeEntryIn.model_validate(body)
        except ValidationError as exc:
            metrics.BILLING_TIME_ENTRY_REJECTIONS.labels("invalid").inc()
            return validation_problem(exc)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            info = await self._patient(conn, principal.tenant_id, patient_id)
            settings = await store.load_settings(conn, principal.tenant_id)
            fields = EntryFields(data.member_id, data.started_at, data.minutes, data.activity, data.interactive)
            problem = check_entry(fields, tz=info.tz, now=now, grace_days=settings.grace_days)
            if problem is not None:
                raise _refuse(problem)
            await store.lock_member(conn, principal.tenant_id, data.member_id)
            other = await store.overlapping(conn, principal.tenant_id, data.member_id, data.started_at, data.minutes)
            if other is not None:
                raise _overlap(other)
            values = {
                "id": new_entry_id(now),
                "patient_id": patient_id,
                "member_id": data.member_id,
                "started_at": data.started_at,
                "minutes": data.minutes,
                "activity": data.activity.value,
                "interactive": data.interactive,
                "note": data.note,
                "at": now,
            }
            row = await store.insert_entry(conn, principal.tenant_id, values)
            fields_set, changes = _diff({}, {**values, "activity": data.activity})
            await store.audit(
                conn,
                principal.tenant_id,
                patient_id,
                row["id"],
                at=now,
                actor=data.member_id,
                key_id=principal.key_id,
                action="created",
                fields=fields_set,
                changes=changes,
            )
        metrics.BILLING_TIME_ENTRIES.labels("created").inc()
        return json_response(_entry_view(row).model_dump_json(), status=201)

    async def list_entries(self, request: web.Request) -> web.Response:
        """The patient's time entries, oldest first; `?month=YYYY-MM` (the patient's local month)."""
        principal = await authenticate(request, "care")
        patient_id = _path(request, "patient_id", _PATIENT_ID, "patient")
        month = _month_param(request, required=False)
        async with self.pool.acquire() as conn:
            info = await self._patient(conn, principal.tenant_id, patient_id)
            since, until = engine.month_bounds(month, info.tz) if month else (None, None)
            rows = await store.entries_of_patient(conn, principal.tenant_id, patient_id, since, until)
        return json_response(TimeEntryPage(items=[_entry_view(r) for r in rows]).model_dump_json())

    async def update_entry(self, request: web.Request) -> web.Response:
        """Correct an entry while its month (and the month it moves to) is open; audited."""
        principal = await authenticate(request, "care")
        patient_id = _path(request, "patient_id", _PATIENT_ID, "patient")
        entry_id = _path(request, "entry_id", _ENTRY_ID, "time entry")
        body = await read_json(request)
        try:
            data = TimeEntryPatch.model_validate(body)
        except ValidationError as exc:
            metrics.BILLING_TIME_ENTRY_REJECTIONS.labels("invalid").inc()
            return validation_problem(exc)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            info, row, settings = await self._editable_entry(conn, principal.tenant_id, patient_id, entry_id, now)
            before = {f: row[f] for f in (*_AUDITED, "note")}
            before["activity"] = Activity(before["activity"])
            after = {**before, **data.changes()}
            fields = EntryFields(
                after["member_id"], after["started_at"], after["minutes"], after["activity"], after["interactive"]
            )
            problem = check_entry(fields, tz=info.tz, now=now, grace_days=settings.grace_days)
            if problem is not None:
                raise _refuse(problem)
            changed, changes = _diff(before, after)
            if not changed:
                return json_response(_entry_view(row).model_dump_json())
            await store.lock_member(conn, principal.tenant_id, fields.member_id)
            other = await store.overlapping(
                conn, principal.tenant_id, fields.member_id, fields.started_at, fields.minutes, exclude_id=entry_id
            )
            if other is not None:
                raise _overlap(other)
            values = {**after, "activity": fields.activity.value}
            updated = await store.update_entry(conn, principal.tenant_id, entry_id, values, now)
            await store.audit(
                conn,
                principal.tenant_id,
                patient_id,
                entry_id,
                at=now,
                actor=data.by,
                key_id=principal.key_id,
                action="updated",
                fields=changed,
                changes=changes,
            )
        metrics.BILLING_TIME_ENTRIES.labels("updated").inc()
        return json_response(_entry_view(updated).model_dump_json())

    async def delete_entry(self, request: web.Request) -> web.Response:
        """Delete an entry while its month is open (`204`); it stays in the audit trail."""
        principal = await authenticate(request, "care")
        patient_id = _path(request, "patient_id", _PATIENT_ID, "patient")
        entry_id = _path(request, "entry_id", _ENTRY_ID, "time entry")
        body = await read_json(request)
        try:
            data = TimeEntryDelete.model_validate(body)
        except ValidationError as exc:
            return validation_problem(exc)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            await self._editable_entry(conn, principal.tenant_id, patient_id, entry_id, now)
            await store.delete_entry(conn, principal.tenant_id, entry_id, now)
            await store.audit(
                conn,
                principal.tenant_id,
                patient_id,
                entry_id,
                at=now,
                actor=data.by,
                key_id=principal.key_id,
                action="deleted",
                fields=[],
                changes={},
            )
        metrics.BILLING_TIME_ENTRIES.labels("deleted").inc()
        return web.Response(status=204)

    async def entry_audit(self, request: web.Request) -> web.Response:
        """The entry's audit trail, oldest first (deleted entries included)."""
        principal = await authenticate(request, "care")
        patient_id = _path(request, "patient_id", _PATIENT_ID, "patient")
        entry_id = _path(request, "entry_id", _ENTRY_ID, "time entry")
        async with self.pool.acquire() as conn:
            await self._patient(conn, principal.tenant_id, patient_id)
            rows = await store.audit_of(conn, principal.tenant_id, patient_id, entry_id)
        if not rows:
            raise not_found("time entry")
        items = [
            TimeEntryAuditEntry(
                at=r["at"],
                entry_id=r["entry_id"],
                actor=r["actor"],
                key_id=r["key_id"],
                action=r["action"],
                fields=list(r["fields"]),
                changes=r["changes"] or {},
            )
            for r in rows
        ]
        return json_response(TimeEntryAuditPage(items=items).model_dump_json())

    # -- figures ----------------------------------------------------------------------------------

    async def patient_billing(self, request: web.Request) -> web.Response:
        """The patient's periods, months and 98975 eligibility; records closed periods' figures."""
        principal = await authenticate(request, "care")
        patient_id = _path(request, "patient_id", _PATIENT_ID, "patient")
        started = time.perf_counter()
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            info = await self._patient(conn, principal.tenant_id, patient_id)
            settings = await store.load_settings(conn, principal.tenant_id)
            periods = (await periods_of(conn, principal.tenant_id, {patient_id: info}, settings, now))[patient_id]
            rows = await store.entries_of_patient(conn, principal.tenant_id, patient_id)
        entries = [store.engine_entry(r) for r in rows]
        months = engine.months_of(entries, tz=info.tz, now=now, settings=settings)
        summary = BillingSummary(patient_id, now, settings, periods, months)
        metrics.BILLING_COMPUTE_LATENCY.labels("patient").observe(time.perf_counter() - started)
        return json_response(views.patient_billing(summary).model_dump_json())

    async def report(self, request: web.Request) -> web.Response:
        """One row per patient with a period closing in `month` or time entries in it."""
        principal = await authenticate(request, "care")
        month = _month_param(request, required=True)
        assert month is not None
        csv_wanted = wants_csv(request.headers.get("Accept", ""))
        started = time.perf_counter()
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            settings = await store.load_settings(conn, principal.tenant_id)
            patients = await store.patients(conn, principal.tenant_id)
            periods = await periods_of(conn, principal.tenant_id, patients, settings, now) if patients else {}
            lo = datetime.combine(month.first_day, datetime.min.time(), UTC) - _WIDEN
            hi = datetime.combine(month.next().first_day, datetime.min.time(), UTC) + _WIDEN
            entries = await store.entries_around(conn, principal.tenant_id, lo, hi)
        rows = []
        for pid in sorted(patients):
            info = patients[pid]
            figures = engine.month_figures(entries.get(pid, ()), month, tz=info.tz, now=now, settings=settings)
            closing = engine.periods_closing_in(periods[pid], month)
            if closing or figures.minutes:
                rows.append(views.report_row(pid, periods[pid], closing, figures))
        report = BillingReport(month=str(month), data_days_from=settings.data_days_from, as_of=now, items=rows)
        metrics.BILLING_COMPUTE_LATENCY.labels("report").observe(time.perf_counter() - started)
        for row in rows:  # one access-audit row per patient listed (besides the request's own row)
            record_access(request, principal, patient_id=row.patient_id, alert_id=None)
        if csv_wanted:
            return web.Response(
                text=views.report_csv(report),
                content_type="text/csv",
                charset="utf-8",
                headers={"Content-Disposition": f'attachment; filename="nervewatch-billing-{month}.csv"'},
            )
        return json_response(report.model_dump_json())

    # -- settings ---------------------------------------------------------------------------------

    async def get_settings(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        async with self.pool.acquire() as conn:
            settings = await store.load_settings(conn, principal.tenant_id)
        return json_response(views.settings_out(settings).model_dump_json())

    async def put_settings(self, request: web.Request) -> web.Response:
        """Replace the tenant's billing settings (absent keys: defaults). Closed periods whose
        figures change under the new settings get a new version on the next read."""
        principal = await authenticate(request, "admin")
        body = await read_json(request)
        try:
            data = BillingSettingsIn.model_validate(body)
        except ValidationError as exc:
            return validation_problem(exc)
        settings = views.settings_from_input(data)
        async with self.pool.acquire() as conn:
            await store.save_settings(conn, principal.tenant_id, settings)
        log.info("billing settings replaced")
        return json_response(views.settings_out(settings).model_dump_json())
