"""Care read API of scoring (scope `care`): a patient's stored check-ins, notes included.

    GET /v1/patients/{patient_id}/checkins?since=&until=&cursor=&limit= -> 200 {items, next_cursor}

Newest first by `recorded_at` (then event id); `since` (inclusive) and `until` (exclusive) are
RFC 3339 times with an offset; `limit` 1-500 (default 100); `cursor` is the previous page's
`next_cursor`, unchanged. Each item is the check-in as received plus `received_at`. 404 for a
patient the tenant has not enrolled; invalid parameters are 400 problems naming the parameter,
never echoing its value. Reads only `scoring.patients` and `scoring.checkins` of the caller's
tenant; the request's access-audit row carries the patient id (from the path).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from nervewatch import paging
from nervewatch.http import Handler, authenticate
from nervewatch.paging import bad_param
from nervewatch.problems import not_found
from schemas.common import PATIENT_ID_PATTERN

_ID = re.compile(PATIENT_ID_PATTERN)
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


def encode_cursor(recorded_at: datetime, event_id: uuid.UUID) -> str:
    return paging.encode_cursor([recorded_at.isoformat(), str(event_id)])


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(recorded_at, event_id) of the previous page's last item; a 400 problem otherwise."""
    try:
        at, event = paging.decode_cursor(cursor, 200)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("no offset")
        return when.astimezone(UTC), uuid.UUID(event)
    except (ValueError, TypeError, AttributeError, OverflowError):  # AttributeError: uuid.UUID(5)
        raise bad_param("cursor") from None


def parse_time(raw: str | None, name: str) -> datetime | None:
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw)
        if when.tzinfo is None:
            raise ValueError("no offset")
        return when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad_param(name) from None


class CheckinReads:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {"listCheckins": self.list_checkins}

    async def list_checkins(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        patient_id = request.match_info["patient_id"]
        if not _ID.fullmatch(patient_id):
            raise not_found("patient")
        q = request.query
        since = parse_time(q.get("since"), "since")
        until = parse_time(q.get("until"), "until")
        limit = paging.parse_limit(q.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)
        after = decode_cursor(q["cursor"]) if "cursor" in q else None
        enrolled = await self.pool.fetchval(
            "SELECT 1 FROM scoring.patients WHERE tenant_id = $1 AND patient_id = $2 AND profile IS NOT NULL",
            principal.tenant_id,
            patient_id,
        )
        if not enrolled:
            raise not_found("patient")
        rows = await self.pool.fetch(
            """SELECT event_id, recorded_at, received_at, data FROM scoring.checkins
               WHERE tenant_id = $1 AND patient_id = $2
                 AND ($3::timestamptz IS NULL OR recorded_at >= $3)
                 AND ($4::timestamptz IS NULL OR recorded_at < $4)
                 AND ($5::timestamptz IS NULL OR (recorded_at, event_id) < ($5, $6::uuid))
               ORDER BY recorded_at DESC, event_id DESC LIMIT $7""",
            principal.tenant_id,
            patient_id,
            since,
            until,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
        page = rows[:limit]
        items = [{**r["data"], "received_at": r["received_at"].astimezone(UTC).isoformat()} for r in page]
        last = page[-1] if len(rows) > limit else None
        next_cursor = encode_cursor(last["recorded_at"], last["event_id"]) if last is not None else None
        return web.json_response({"items": items, "next_cursor": next_cursor})
