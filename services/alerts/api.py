"""Care-coordinator API of the alerts service (scope `care`).

Every query is filtered by the caller's tenant: another tenant's alert is a 404, and a cursor is
only a position (opened_at, id) inside the caller's own listing, so it cannot reveal anything.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from pydantic import ValidationError

from nervewatch import metrics
from nervewatch.http import authenticate, json_response, record_access, still_authorized
from nervewatch.outbox import Outbox
from nervewatch.problems import ProblemError, not_found, read_json, validation_problem
from schemas.alerts import AlertAction, AlertKind, AlertPage, AlertStatus, AuditEntry, AuditPage, Snooze, SnoozeIn
from schemas.common import PATIENT_ID_PATTERN, Severity
from services.alerts import model
from services.alerts.store import ALERT_COLUMNS, AlertWriter, alerts_from_rows, load_alert

log = logging.getLogger(__name__)
MAX_LIMIT = 500
MAX_POLICY_DURATION = timedelta(days=366)
MAX_QUERY_VALUE = 1024  # characters per query parameter value; every valid value is far shorter
# Path ids are checked before they reach SQL: PostgreSQL text cannot hold NUL, so arbitrary bytes
# would be a driver error (500) rather than the 404 an unknown id deserves.
_ID = re.compile(PATIENT_ID_PATTERN)


def encode_cursor(opened_at: datetime, alert_id: str) -> str:
    raw = json.dumps({"o": opened_at.isoformat(), "i": alert_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        opened_at, alert_id = datetime.fromisoformat(data["o"]), data["i"]
        if opened_at.tzinfo is None or not isinstance(alert_id, str) or not _ID.fullmatch(alert_id):
            raise ValueError("not a cursor this service issued")
        return opened_at.astimezone(UTC), alert_id
    except (binascii.Error, ValueError, KeyError, TypeError, OverflowError):
        raise ProblemError(400, "Invalid cursor", "pass next_cursor unchanged", slug="invalid-cursor") from None


class Broadcaster:
    """Fans alert changes (tenant, alert id) out to SSE subscribers of this process."""

    def __init__(self) -> None:
        self._subs: set[asyncio.Queue[tuple[str, str]]] = set()

    def publish(self, tenant_id: str, alert_id: str) -> None:
        for q in list(self._subs):
            if q.full():
                continue  # a slow console misses updates rather than growing memory
            q.put_nowait((tenant_id, alert_id))

    async def subscribe(self, tick_s: float = 15.0) -> AsyncIterator[tuple[str, str] | None]:
        """Yield changes; yields None after `tick_s` of silence, so that the caller can ping the
        client or re-check its credentials at least that often. Unsubscribes when closed."""
        q: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1000)
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
    def __init__(self, pool: asyncpg.Pool, outbox: Outbox, broadcaster: Broadcaster) -> None:
        self.pool = pool
        self.outbox = outbox
        self.broadcaster = broadcaster

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/alerts", self.list_alerts),
            web.get("/v1/alerts/stream", self.stream),
            web.get("/v1/alerts/{alert_id}", self.get_alert),
            web.get("/v1/alerts/{alert_id}/audit", self.audit),
            web.post("/v1/alerts/{alert_id}/acknowledge", self.acknowledge),
            web.post("/v1/alerts/{alert_id}/resolve", self.resolve),
            web.post("/v1/patients/{patient_id}/snoozes", self.snooze),
            web.get("/v1/admin/alert-policy", self.get_policy),
            web.put("/v1/admin/alert-policy", self.put_policy),
        ]

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
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise _bad_param("limit") from None
        if not 1 <= limit <= MAX_LIMIT:
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
                "SELECT status, kind FROM alerts.alerts WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
                principal.tenant_id,
                alert_id,
            )
            if row is None:
                raise not_found("alert")
            writer = AlertWriter(conn, self.outbox)
            detail: dict[str, Any] = {"note_present": act.note is not None}
            if action == "acknowledged":
                if row["status"] == "resolved":
                    raise ProblemError(409, "Conflict", "the alert is already resolved", slug="conflict")
                if row["status"] == "acknowledged":
                    alert = await load_alert(conn, principal.tenant_id, alert_id)
                    assert alert is not None
                    return json_response(alert.model_dump_json())
                await conn.execute(
                    """UPDATE alerts.alerts SET status = 'acknowledged', acknowledged_by = $2, acknowledged_at = $3,
                              updated_at = $3 WHERE id = $1""",
                    alert_id,
                    act.by,
                    now,
                )
            else:
                if row["status"] == "resolved":
                    raise ProblemError(409, "Conflict", "the alert is already resolved", slug="conflict")
                await conn.execute(
                    """UPDATE alerts.alerts SET status = 'resolved', resolution = 'manual', resolved_at = $2,
                              updated_at = $2 WHERE id = $1""",
                    alert_id,
                    now,
                )
                metrics.ALERTS_RESOLVED.labels(row["kind"], "manual").inc()
            if act.note is not None:
                detail["note"] = act.note
            await writer.audit(alert_id, act.by, action, detail)
            alert = await writer.publish(principal.tenant_id, alert_id, action, act.by)
        await self.outbox.drain()
        return json_response(alert.model_dump_json())

    async def acknowledge(self, request: web.Request) -> web.Response:
        return await self._act(request, "acknowledged")

    async def resolve(self, request: web.Request) -> web.Response:
        return await self._act(request, "resolved")

    async def snooze(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        body = await read_json(request)
        try:
            data = SnoozeIn.model_validate(body)
        except ValidationError as exc:
            return validation_problem(exc)
        if data.kind is AlertKind.red_flag:
            raise ProblemError(422, "Red flags are never snoozed", "choose another kind", slug="red-flag-snooze")
        patient_id = _path_id(request, "patient_id", "patient")
        async with self.pool.acquire() as conn:
            known = await conn.fetchval(
                "SELECT 1 FROM alerts.patients WHERE tenant_id = $1 AND patient_id = $2",
                principal.tenant_id,
                patient_id,
            )
            if known is None:
                raise not_found("patient")
            row = await conn.fetchrow(
                """INSERT INTO alerts.snoozes (tenant_id, patient_id, kind, until, by) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (tenant_id, patient_id, kind) DO UPDATE SET until = EXCLUDED.until, by = EXCLUDED.by,
                     created_at = now()
                   RETURNING created_at""",
                principal.tenant_id,
                patient_id,
                data.kind.value,
                data.until,
                data.by,
            )
        assert row is not None
        snooze = Snooze(
            patient_id=patient_id, kind=data.kind, until=data.until, by=data.by, created_at=row["created_at"]
        )
        return json_response(snooze.model_dump_json(), status=201)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: one `alert` event per change of one of the caller's tenant's alerts.

        The caller's key is re-checked at least every `STREAM_RECHECK_S`: once it no longer
        authenticates (revoked, expired) the server ends the response and closes the connection,
        within 1 s of a revocation. The opening is in the access log (when the response starts),
        and so is every alert sent (route, patient id, alert id), after it was written."""
        principal = await authenticate(request, "care")
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
                tenant_id, alert_id = change
                if tenant_id != principal.tenant_id:
                    continue
                async with self.pool.acquire() as conn:
                    alert = await load_alert(conn, tenant_id, alert_id)
                if alert is None:
                    continue
                await resp.write(f"event: alert\nid: {alert_id}\ndata: {alert.model_dump_json()}\n\n".encode())
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
    return ProblemError(400, "Invalid query parameter", f"'{name}' has an invalid value", slug="invalid-parameter")
