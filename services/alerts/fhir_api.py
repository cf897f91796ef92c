"""FHIR R4 reads of the alerts service (scope `care`): `GET /fhir/r4/Flag` and `GET /fhir/r4/Communication`.

Tenant-filtered like `/v1/alerts`: a patient of another tenant (or unknown) is a 404
OperationOutcome. Pages are newest first, keyset-paged with an opaque `_cursor` in the Bundle's
`next` link. Mapping: `schemas.fhir.outbound`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from nervewatch.fhir_http import (
    BASE_PATH,
    bad_param,
    decode_cursor,
    install,
    patient_search,
    searchset_response,
    unknown_patient,
)
from schemas.fhir import outbound

_FLAG_STATUS = {"active": ["open", "acknowledged"], "inactive": ["resolved"]}
_FLAG_PARAMS = frozenset({"patient", "status", "_count", "_cursor"})
_COMMUNICATION_PARAMS = frozenset({"subject", "_count", "_cursor"})


class FhirAlerts:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def register(self, app: web.Application) -> None:
        install(
            app,
            "alerts",
            [
                web.get(f"{BASE_PATH}/Flag", self.search_flags),
                web.get(f"{BASE_PATH}/Communication", self.search_communications),
            ],
        )

    async def _known(self, conn: asyncpg.Connection, tenant: str, patient_id: str, param: str) -> None:
        found = await conn.fetchval(
            "SELECT 1 FROM alerts.patients WHERE tenant_id = $1 AND patient_id = $2", tenant, patient_id
        )
        if found is None:
            raise unknown_patient(param)

    async def search_flags(self, request: web.Request) -> web.Response:
        principal, patient_id, count = await patient_search(request, _FLAG_PARAMS, "patient")
        clauses = ["tenant_id = $1", "patient_id = $2"]
        args: list[Any] = [principal.tenant_id, patient_id]
        if "status" in request.query:
            statuses: list[str] = []
            for token in request.query["status"].split(","):
                if token not in _FLAG_STATUS:
                    raise bad_param("status", "must be active or inactive")
                statuses += _FLAG_STATUS[token]
            args.append(statuses)
            clauses.append(f"status = ANY(${len(args)}::text[])")
        cursor = decode_cursor(request)
        if cursor is not None:
            try:
                opened_at, alert_id = datetime.fromisoformat(cursor[0]), str(cursor[1])
            except (IndexError, TypeError, ValueError):
                raise bad_param("_cursor") from None
            args += [opened_at, alert_id]
            clauses.append(f"(opened_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(count + 1)
        async with self.pool.acquire() as conn:
            await self._known(conn, principal.tenant_id, patient_id, "patient")
            rows = await conn.fetch(
                "SELECT id, patient_id, kind, severity, status, summary, reasons, opened_at, updated_at, resolved_at "
                f"FROM alerts.alerts WHERE {' AND '.join(clauses)} ORDER BY opened_at DESC, id DESC LIMIT ${len(args)}",
                *args,
            )
        page = rows[:count]
        nxt = [page[-1]["opened_at"].isoformat(), page[-1]["id"]] if len(rows) > count else None
        return searchset_response(request, "Flag", [outbound.flag(dict(r)) for r in page], nxt)

    async def search_communications(self, request: web.Request) -> web.Response:
        principal, patient_id, count = await patient_search(request, _COMMUNICATION_PARAMS, "subject")
        args: list[Any] = [principal.tenant_id, patient_id]
        clause = ""
        cursor = decode_cursor(request)
        if cursor is not None:
            if len(cursor) != 1 or not isinstance(cursor[0], int) or isinstance(cursor[0], bool):
                raise bad_param("_cursor")
            args.append(cursor[0])
            clause = f" AND n.id < ${len(args)}"
        args.append(count + 1)
        async with self.pool.acquire() as conn:
            await self._known(conn, principal.tenant_id, patient_id, "subject")
            rows = await conn.fetch(
                "SELECT n.id, n.delivery_id, n.member_id, n.channel, n.status, n.reason, n.created_at, n.delivered_at, "
                "a.id AS alert_id, a.patient_id, a.severity "
                "FROM alerts.notifications n JOIN alerts.alerts a ON a.id = n.alert_id "
                f"WHERE n.tenant_id = $1 AND a.tenant_id = $1 AND a.patient_id = $2{clause} "
                f"ORDER BY n.id DESC LIMIT ${len(args)}",
                *args,
            )
        page = rows[:count]
        nxt = [page[-1]["id"]] if len(rows) > count else None
        return searchset_response(request, "Communication", [outbound.communication(dict(r)) for r in page], nxt)
