"""Care-coordinator API of the alerts service (scope `care`).

Every query is filtered by the caller's tenant: another tenant's alert is a 404, and a cursor is
only a position (opened_at, id) inside the caller's own listing, so it cannot reveal anything.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from pydantic import ValidationError

from nervewatch import metrics, paging
from nervewatch.http import (
    Handler,
    authenticate,
    authenticate_key_id,
    json_response,
    record_access,
    still_authorized,
    unauthorized,
)
from nervewatch.identity.store import Principal
from nervewatch.outbox import Outbox
from nervewatch.problems import ProblemError, not_found, read_json, validation_problem
from schemas.alerts import (
    AlertAction,
    AlertDelivery,
    AlertKind,
    AlertPage,
    AlertStatus,
    AuditEntry,
    AuditPage,
    Snooze,
    SnoozeEnd,
    SnoozeIn,
    SnoozePage,
    StreamTicket,
)
from schemas.common import PATIENT_ID_PATTERN, Severity
from services.alerts import model, snooze_rules, tickets
from services.alerts.apply import EffectWriter
from services.alerts.book import ActionRefused, PatientBook
from services.alerts.book import acknowledge as book_acknowledge
from services.alerts.book import resolve as book_resolve
from services.alerts.policy import PolicyCache
from services.alerts.store import (
    ALERT_COLUMNS,
    alerts_from_rows,
    load_alert,
    new_snooze_id,
    patient_audit,
    state_from_row,
)

log = logging.getLogger(__name__)
MAX_LIMIT = 500
MAX_POLICY_DURATION = timedelta(days=366)
MAX_QUERY_VALUE = 1024  # characters per query parameter value; every valid value is far shorter
# Path ids are checked before they reach SQL: PostgreSQL text cannot hold NUL, so arbitrary bytes
# would be a driver error (500) rather than the 404 an unknown id deserves.
_ID = re.compile(PATIENT_ID_PATTERN)


def encode_cursor(opened_at: datetime, alert_id: str) -> str:
    return paging.encode_cursor({"o": opened_at.isoformat(), "i": alert_id})


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        data = paging.decode_cursor(cursor)
        opened_at, alert_id = datetime.fromisoformat(data["o"]), data["i"]
        if opened_at.tzinfo is None or not isinstance(alert_id, str) or not _ID.fullmatch(alert_id):
            raise ValueError("not a cursor this service issued")
        return opened_at.astimezone(UTC), alert_id
    except (ValueError, KeyError, TypeError, OverflowError):
        raise paging.invalid_cursor() from None


Change = tuple[str, str, str | None]  # tenant id, alert id, change (`book.Publish.action`; None: unknown)


class Broadcaster:
    """Fans alert changes (tenant, alert id, change) out to SSE subscribers of this process."""

    def __init__(self) -> None:
        self._subs: set[asyncio.Queue[Change]] = set()

    def publish(self, tenant_id: str, alert_id: str, change: str | None = None) -> None:
        for q in list(self._subs):
            if q.full():
                continue  # a slow console misses updates rather than growing memory
            q.put_nowait((tenant_id, alert_id, change))

    async def subscribe(self, tick_s: float = 15.0) -> AsyncIterator[Change | None]:
        """Yield changes; yields None after `tick_s` of silence, so that the caller can ping the
        client or re-check its credentials at least that often. Unsubscribes when closed."""
        q: asyncio.Queue[Change] = asyncio.Queue(maxsize=1000)
        self._subs.add(q)
        try:
            while True:
                try:
                    async with asyncio.timeout(tick_s):
                        change = await q.get()
                except TimeoutError:
                    yield None
                else:
                    yield change
        finally:
            self._subs.discard(q)


# The stream pings an idle client this often, and re-checks the caller's key at least this often
# (so that a revoked key's stream ends within REVOCATION_BOUND_S + STREAM_RECHECK_S).
STREAM_PING_S = 15.0
STREAM_RECHECK_S = 0.25


class AlertsApi:
    def __init__(
        self,
        pool: asyncpg.Pool,
        outbox: Outbox,
        broadcaster: Broadcaster,
        policies: PolicyCache,
        wake_dispatcher: asyncio.Event | None = None,
    ) -> None:
        self.pool = pool
        self.outbox = outbox
        self.broadcaster = broadcaster
        self.policies = policies
        self.wake_dispatcher = wake_dispatcher

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {
            "listAlerts": self.list_alerts,
            "streamAlerts": self.stream,
            "createStreamTicket": self.stream_ticket,
            "getAlert": self.get_alert,
            "getAlertAudit": self.audit,
            "acknowledgeAlert": self.acknowledge,
            "resolveAlert": self.resolve,
            "snoozeAlerts": self.snooze,
            "listSnoozes": self.list_snoozes,
            "endSnooze": self.end_snooze,
            "patientAlertAudit": self.patient_audit,
            "getAlertPolicy": self.get_policy,
            "putAlertPolicy": self.put_policy,
        }

    async def get_policy(self, request: web.Request) -> web.Response:
        """The tenant's alerting policy (escalation chain, quiet hours, repeat interval...), defaults filled in."""
        principal = await authenticate(request, "admin")
        raw = await self.pool.fetchval(
            "SELECT policy FROM alerts.tenant_config WHERE tenant_id = $1", principal.tenant_id
        )
        policy = model.policy_from_dict(raw) if raw else model.AlertPolicy()
        return web.json_response(model.policy_to_dict(policy))

    async def put_policy(self, request: web.Request) -> web.Response:
        """Replace the tenant's alerting policy; takes effect within the policy cache TTL (30 s)."""
        principal = await authenticate(request, "admin")
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ProblemError(422, "Invalid policy", "the policy must be a JSON object", slug="invalid-policy")
        try:
            policy = model.policy_from_dict(body)
        except ValueError as exc:
            raise ProblemError(422, "Invalid policy", str(exc)[:300], slug="invalid-policy") from None
        except OverflowError:  # a duration beyond what timedelta can hold, e.g. hysteresis_hours: 1e300
            raise ProblemError(422, "Invalid policy", "a duration is out of range", slug="invalid-policy") from None
        if any(d > MAX_POLICY_DURATION for d in _durations(policy)):
            # Timers add these to alert times; beyond a year they are a mistake that would overflow later.
            raise ProblemError(422, "Invalid policy", "durations must not exceed 366 days", slug="invalid-policy")
        stored = model.policy_to_dict(policy)
        await self.pool.execute(
            """INSERT INTO alerts.tenant_config (tenant_id, policy) VALUES ($1, $2)
               ON CONFLICT (tenant_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()""",
            principal.tenant_id,
            stored,
        )
        return web.json_response(stored)

    async def list_alerts(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        q = request.query
        for name, value in q.items():
            if len(value) > MAX_QUERY_VALUE:
                raise _bad_param(name)
        clauses = ["tenant_id = $1"]
        args: list[Any] = [principal.tenant_id]

        def add(sql: str, value: Any) -> None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))

        for name, enum in (("status", AlertStatus), ("severity", Severity), ("kind", AlertKind)):
            if name in q:
                values = q[name].split(",")
                try:
                    add(f"{name} = ANY({{}}::text[])", [enum(v).value for v in values])
                except ValueError:
                    raise _bad_param(name) from None
        if "patient_id" in q:
            if not _ID.fullmatch(q["patient_id"]):
                raise _bad_param("patient_id")
            add("patient_id = {}", q["patient_id"])
        if "since" in q:
            try:
                since = datetime.fromisoformat(q["since"])
                if since.tzinfo is None:
                    raise ValueError("no offset")
                since = since.astimezone(UTC)
            except (ValueError, OverflowError):
                raise _bad_param("since") from None
            add("opened_at >= {}", since)
        limit = paging.limit_of(q.get("limit"), 100, MAX_LIMIT)
        if limit is None:
            raise _bad_param("limit")
        if "cursor" in q:
            opened_at, alert_id = decode_cursor(q["cursor"])
            args.extend([opened_at, alert_id])
            clauses.append(f"(opened_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        sql = (
            f"SELECT {ALERT_COLUMNS} FROM alerts.alerts WHERE {' AND '.join(clauses)} "
            f"ORDER BY opened_at DESC, id DESC LIMIT ${len(args)}"
        )
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
            items = await alerts_from_rows(conn, rows[:limit])
        next_cursor = encode_cursor(rows[limit - 1]["opened_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
        return json_response(AlertPage(items=items, next_cursor=next_cursor).model_dump_json())

    async def get_alert(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        alert_id = _path_id(request, "alert_id", "alert")
        async with self.pool.acquire() as conn:
            alert = await load_alert(conn, principal.tenant_id, alert_id)
        if alert is None:
            raise not_found("alert")
        return json_response(alert.model_dump_json())

    async def audit(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        alert_id = _path_id(request, "alert_id", "alert")
        async with self.pool.acquire() as conn:
            owner = await conn.fetchval(
                "SELECT 1 FROM alerts.alerts WHERE tenant_id = $1 AND id = $2", principal.tenant_id, alert_id
            )
            if owner is None:
                raise not_found("alert")
            rows = await conn.fetch(
                "SELECT at, actor, action, detail FROM alerts.audit WHERE alert_id = $1 ORDER BY id", alert_id
            )
        page = AuditPage(
            items=[AuditEntry(at=r["at"], actor=r["actor"], action=r["action"], detail=r["detail"]) for r in rows]
        )
        return json_response(page.model_dump_json())

    async def _act(self, request: web.Request, action: str) -> web.Response:
        principal = await authenticate(request, "care")
        body = await read_json(request)
        try:
            act = AlertAction.model_validate(body)
        except ValidationError as exc:
            return validation_problem(exc)
        alert_id = _path_id(request, "alert_id", "alert")
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {ALERT_COLUMNS} FROM alerts.alerts WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
                principal.tenant_id,
                alert_id,
            )
            if row is None:
                raise not_found("alert")
            state = state_from_row(row)
            book = PatientBook(
                principal.tenant_id,
                state.patient_id,
                alerts={} if state.status is AlertStatus.resolved else {state.id: state},
            )
            try:
                change = book_acknowledge if action == "acknowledged" else book_resolve
                _, effects = change(book, alert_id, act.by, act.note, now)
            except ActionRefused:
                raise ProblemError(409, "Conflict", "the alert is already resolved", slug="conflict") from None
            writer = EffectWriter(self.outbox)
            writer.add(principal.tenant_id, state.patient_id, effects)
            queued, _ = await writer.flush(conn, now)
            alert = await load_alert(conn, principal.tenant_id, alert_id)
            assert alert is not None
        if queued and self.wake_dispatcher is not None:
            self.wake_dispatcher.set()  # the informational webhooks of this change
        if effects:
            await self.outbox.drain()
        return json_response(alert.model_dump_json())

    async def acknowledge(self, request: web.Request) -> web.Response:
        return await self._act(request, "acknowledged")

    async def resolve(self, request: web.Request) -> web.Response:
        return await self._act(request, "resolved")

    async def _known_patient(self, conn: asyncpg.Connection, tenant_id: str, patient_id: str) -> None:
        known = await conn.fetchval(
            "SELECT 1 FROM alerts.patients WHERE tenant_id = $1 AND patient_id = $2 AND version_at > '-infinity'",
            tenant_id,
            patient_id,
        )
        if known is None:
            raise not_found("patient")

    async def snooze(self, request: web.Request) -> web.Response:
        """Hold back one alert kind for a patient until `until` (future, at most the tenant's
        `max_snooze_days` ahead; red flags never). A new snooze of a kind ends the current one.
        Audited in the patient's alert audit."""
        principal = await authenticate(request, "care")
        body = await read_json(request)
        try:
            data = SnoozeIn.model_validate(body)
        except ValidationError as exc:
            return validation_problem(exc)
        patient_id = _path_id(request, "patient_id", "patient")
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._known_patient(conn, principal.tenant_id, patient_id)
            policy = await self.policies.get(conn, principal.tenant_id)
            problem = snooze_rules.check(data.kind, data.until, policy, now)
            if problem is not None:
                raise ProblemError(422, "Invalid snooze", problem, slug="invalid-snooze")
            snooze_id = new_snooze_id(now)
            ended = await conn.fetch(
                """UPDATE alerts.snoozes SET ended_at = $4, ended_by = $5
                   WHERE tenant_id = $1 AND patient_id = $2 AND kind = $3 AND ended_at IS NULL RETURNING id""",
                principal.tenant_id,
                patient_id,
                data.kind.value,
                now,
                data.by,
            )
            row = await conn.fetchrow(
                """INSERT INTO alerts.snoozes (id, tenant_id, patient_id, kind, until, by, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at""",
                snooze_id,
                principal.tenant_id,
                patient_id,
                data.kind.value,
                data.until,
                data.by,
                now,
            )
            detail = {"snooze_id": snooze_id, "kind": data.kind.value, "until": data.until.isoformat()}
            if ended:
                detail["replaces"] = ended[0]["id"]
            await patient_audit(conn, principal.tenant_id, patient_id, data.by, "snoozed", detail)
        assert row is not None
        metrics.SNOOZES.labels("created", data.kind.value).inc()
        snooze = Snooze(
            id=snooze_id,
            patient_id=patient_id,
            kind=data.kind,
            until=data.until,
            by=data.by,
            created_at=row["created_at"],
        )
        return json_response(snooze.model_dump_json(), status=201)

    async def list_snoozes(self, request: web.Request) -> web.Response:
        """The patient's active snoozes (not ended, `until` in the future)."""
        principal = await authenticate(request, "care")
        patient_id = _path_id(request, "patient_id", "patient")
        async with self.pool.acquire() as conn:
            await self._known_patient(conn, principal.tenant_id, patient_id)
            rows = await conn.fetch(
                """SELECT id, kind, until, by, created_at FROM alerts.snoozes
                   WHERE tenant_id = $1 AND patient_id = $2 AND ended_at IS NULL AND until > now()
                   ORDER BY until, id""",
                principal.tenant_id,
                patient_id,
            )
        page = SnoozePage(
            items=[
                Snooze(
                    id=r["id"],
                    patient_id=patient_id,
                    kind=r["kind"],
                    until=r["until"],
                    by=r["by"],
                    created_at=r["created_at"],
                )
                for r in rows
            ]
        )
        return json_response(page.model_dump_json())

    async def end_snooze(self, request: web.Request) -> web.Response:
        """End an active snooze early (`204`); audited. Unknown, ended or expired: 404."""
        principal = await authenticate(request, "care")
        body = await read_json(request)
        try:
            data = SnoozeEnd.model_validate(body)
        except ValidationError as exc:
            return validation_problem(exc)
        patient_id = _path_id(request, "patient_id", "patient")
        snooze_id = _path_id(request, "snooze_id", "snooze")
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE alerts.snoozes SET ended_at = $4, ended_by = $5
                   WHERE tenant_id = $1 AND patient_id = $2 AND id = $3 AND ended_at IS NULL AND until > $4
                   RETURNING kind, until""",
                principal.tenant_id,
                patient_id,
                snooze_id,
                now,
                data.by,
            )
            if row is None:
                raise not_found("snooze")
            await patient_audit(
                conn,
                principal.tenant_id,
                patient_id,
                data.by,
                "snooze_ended",
                {"snooze_id": snooze_id, "kind": row["kind"], "until": row["until"].isoformat()},
            )
        metrics.SNOOZES.labels("ended", row["kind"]).inc()
        return web.Response(status=204)

    async def patient_audit(self, request: web.Request) -> web.Response:
        """The patient's alert audit: patient-level entries (snoozes) and every entry of the
        patient's alerts, oldest first (at most the newest `limit`, default 500)."""
        principal = await authenticate(request, "care")
        patient_id = _path_id(request, "patient_id", "patient")
        limit = paging.limit_of(request.query.get("limit"), 500, 5000)
        if limit is None:
            raise _bad_param("limit")
        async with self.pool.acquire() as conn:
            await self._known_patient(conn, principal.tenant_id, patient_id)
            rows = await conn.fetch(
                """SELECT * FROM (
                       SELECT at, actor, action, detail, NULL::text AS alert_id, id AS seq, 0 AS src
                       FROM alerts.patient_audit WHERE tenant_id = $1 AND patient_id = $2
                       UNION ALL
                       SELECT u.at, u.actor, u.action, u.detail, u.alert_id, u.id, 1 FROM alerts.audit u
                       JOIN alerts.alerts a ON a.id = u.alert_id WHERE a.tenant_id = $1 AND a.patient_id = $2
                       ORDER BY at DESC, src DESC, seq DESC LIMIT $3) x
                   ORDER BY at, src, seq""",
                principal.tenant_id,
                patient_id,
                limit,
            )
        items = [
            AuditEntry(
                at=r["at"],
                actor=r["actor"],
                action=r["action"],
                detail={**r["detail"], **({"alert_id": r["alert_id"]} if r["alert_id"] else {})},
            )
            for r in rows
        ]
        return json_response(AuditPage(items=items).model_dump_json())

    async def stream_ticket(self, request: web.Request) -> web.Response:
        """A single-use ticket (valid 60 s) that opens `GET /v1/alerts/stream?ticket=...` without an
        Authorization header, bound to the caller's key. `201`, `Cache-Control: no-store`."""
        principal = await authenticate(request, "care")
        now = datetime.now(UTC)
        ticket, expires_at = await tickets.issue(self.pool, principal.tenant_id, principal.key_id, now)
        body = StreamTicket(ticket=ticket, expires_at=expires_at).model_dump_json()
        return json_response(body, status=201, headers={"Cache-Control": "no-store"})

    async def _stream_principal(self, request: web.Request) -> Principal:
        """The stream's caller: by its `ticket` (used up here; unknown, used or expired: 401) when
        the query has one, else by its Authorization header."""
        ticket = request.query.get("ticket")
        if ticket is None:
            return await authenticate(request, "care")
        redeemed = await tickets.redeem(self.pool, ticket, datetime.now(UTC))
        if redeemed is None:
            raise unauthorized("unknown, used or expired stream ticket")
        principal = await authenticate_key_id(request, redeemed.key_id, "care")
        if principal.tenant_id != redeemed.tenant_id:
            raise unauthorized("unknown, used or expired stream ticket")
        return principal

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: one `alert` event per change of one of the caller's tenant's alerts;
        `data` is the alert as it is when sent plus `change` (`schemas.alerts.AlertDelivery`).

        Opened with a bearer key or a single-use `ticket` (see `stream_ticket`); a ticket's key is
        what the stream re-checks. The caller's key is re-checked at least every `STREAM_RECHECK_S`: once it no longer
        authenticates (revoked, expired) the server ends the response and closes the connection,
        within 1 s of a revocation. The opening is in the access log (when the response starts),
        and so is every alert sent (route, patient id, alert id), after it was written."""
        principal = await self._stream_principal(request)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + STREAM_PING_S
        next_check = loop.time() + STREAM_RECHECK_S
        try:
            await resp.write(b": connected\n\n")
            async for change in self.broadcaster.subscribe(tick_s=STREAM_RECHECK_S):
                now = loop.time()
                if now >= next_check:
                    if not await still_authorized(request, principal):
                        log.info("alert stream closed: key no longer valid", extra={"key_id": principal.key_id})
                        resp.force_close()
                        break
                    next_check = now + STREAM_RECHECK_S
                if change is None:
                    if now >= next_ping:
                        await resp.write(b": ping\n\n")
                        next_ping = now + STREAM_PING_S
                    continue
                tenant_id, alert_id, what = change
                if tenant_id != principal.tenant_id:
                    continue
                async with self.pool.acquire() as conn:
                    alert = await load_alert(conn, tenant_id, alert_id)
                if alert is None:
                    continue
                data = AlertDelivery.model_construct(**dict(alert), change=what).model_dump_json()
                await resp.write(f"event: alert\nid: {alert_id}\ndata: {data}\n\n".encode())
                record_access(request, principal, patient_id=alert.patient_id, alert_id=alert_id)
                next_ping = loop.time() + STREAM_PING_S
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the console went away
        return resp


def _durations(policy: model.AlertPolicy) -> list[timedelta]:
    steps = [step.after for chain in policy.escalation.values() for step in chain]
    return [*steps, policy.repeat_interval, policy.hysteresis, policy.disengagement_after, policy.disengagement_quiet]


def _path_id(request: web.Request, name: str, what: str) -> str:
    """A path id that could exist (`[A-Za-z0-9._-]{1,64}`), else a 404 like any unknown id."""
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise not_found(what)
    return value


def _bad_param(name: str) -> ProblemError:
    return paging.bad_param(name, "has an invalid value")
