"""`GET /v1/conflicts` (scope `admin`): the tenant's recorded conflicting event versions, newest first.

Query: `since` (RFC 3339 with offset: seen at or after), `limit` (1-500, default 100), `cursor`
(`next_cursor` of the previous page, opaque). Invalid values are 400 problems. Only ids, digests,
times and the red-flag boolean leave the service: never the versions' content.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from pydantic_core import PydanticCustomError

from nervewatch import paging
from nervewatch.http import Handler, authenticate, json_response
from nervewatch.problems import ProblemError
from schemas.common import rfc3339
from schemas.conflicts import MAX_CONFLICTS_LIMIT, EventConflict, EventConflictPage

DEFAULT_LIMIT = 100
MAX_BIGINT = 2**63 - 1


def encode_cursor(seen_at: datetime, row_id: int) -> str:
    return paging.encode_cursor({"s": seen_at.astimezone(UTC).isoformat(), "i": row_id})


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(seen_at, id) of a cursor this service issued; else a 400 problem."""
    try:
        data = paging.decode_cursor(cursor, 200)
        seen_at, row_id = rfc3339(data["s"]).astimezone(UTC), data["i"]
        if type(row_id) is not int or not 0 < row_id <= MAX_BIGINT:
            raise ValueError("not a cursor this service issued")
        return seen_at, row_id
    except (ValueError, KeyError, TypeError, OverflowError, PydanticCustomError):
        raise paging.invalid_cursor() from None


def _bad_param(name: str) -> ProblemError:
    return paging.bad_param(name, "has an invalid value")


def _since(value: str) -> datetime:
    try:
        return rfc3339(value).astimezone(UTC)
    except (PydanticCustomError, ValueError, OverflowError):
        raise _bad_param("since") from None


def _item(r: asyncpg.Record) -> EventConflict:
    first = r["first_hash"]
    return EventConflict(
        event_id=r["event_id"],
        kind=r["kind"],
        patient_id=r["patient_id"],
        first_digest=bytes(first).hex() if first is not None else None,
        conflicting_digest=bytes(r["other_hash"]).hex(),
        seen_at=r["seen_at"],
        red_flag=r["red_flag"],
    )


async def read_conflicts(
    pool: asyncpg.Pool, tenant_id: str, *, since: datetime | None, after: tuple[datetime, int] | None, limit: int
) -> list[asyncpg.Record]:
    """Up to `limit` rows of the tenant, newest first (seen_at, id), older than `after` when given."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT id, event_id, kind, patient_id, first_hash, other_hash, seen_at, red_flag
           FROM scoring.event_conflicts
           WHERE tenant_id = $1
             AND ($2::timestamptz IS NULL OR seen_at >= $2)
             AND ($3::timestamptz IS NULL OR (seen_at, id) < ($3, $4::bigint))
           ORDER BY seen_at DESC, id DESC
           LIMIT $5""",
        tenant_id,
        since,
        after[0] if after else None,
        after[1] if after else 0,
        limit,
    )
    return rows


class ConflictHandlers:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {"listConflicts": self.list_conflicts}

    async def list_conflicts(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        q = request.query
        since = _since(q["since"]) if "since" in q else None
        limit = paging.limit_of(q.get("limit"), DEFAULT_LIMIT, MAX_CONFLICTS_LIMIT)
        if limit is None:
            raise _bad_param("limit")
        after = decode_cursor(q["cursor"]) if "cursor" in q else None
        rows = await read_conflicts(self.pool, principal.tenant_id, since=since, after=after, limit=limit + 1)
        next_cursor = encode_cursor(rows[limit - 1]["seen_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
        page = EventConflictPage(items=[_item(r) for r in rows[:limit]], next_cursor=next_cursor)
        return json_response(page.model_dump_json())
