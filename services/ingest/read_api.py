"""Care read API of ingest (scope `care`): the tenant's enrolled patients.

    GET /v1/patients?condition=&member_id=&q=&cursor=&limit= -> 200 {items, next_cursor}

Ordered by `patient_id`; `q` is a prefix of `patient_id`; `member_id` keeps the patients whose
care team has that member; `limit` 1-500 (default 100); `cursor` is the previous page's
`next_cursor`, unchanged. Invalid parameters are 400 problems naming the parameter, never echoing
its value. Reads only `ingest.patients` of the caller's tenant. Each returned patient adds one row
to the access audit (the request itself adds one more, without a patient id).
"""

from __future__ import annotations

import re

import asyncpg
from aiohttp import web

from nervewatch import paging
from nervewatch.http import Handler, authenticate, json_response, record_access
from nervewatch.paging import bad_param
from schemas.care_read import PatientPage, PatientSummary
from schemas.common import PATIENT_ID_PATTERN, Condition

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
_ID = re.compile(PATIENT_ID_PATTERN)
_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CONDITIONS = frozenset(c.value for c in Condition)


class PatientReads:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {"listPatients": self.list_patients}

    async def list_patients(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        q = request.query
        condition = q.get("condition")
        if condition is not None and condition not in _CONDITIONS:
            raise bad_param("condition")
        member_id = q.get("member_id")
        if member_id is not None and not _ID.fullmatch(member_id):
            raise bad_param("member_id")
        prefix = q.get("q")
        if prefix is not None and not _PREFIX.fullmatch(prefix):
            raise bad_param("q")
        limit = paging.parse_limit(q.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)
        after = paging.decode_matching_cursor(q["cursor"], _ID, 100) if "cursor" in q else ""
        like = None
        if prefix is not None:
            like = prefix.replace("_", r"\_") + "%"  # '.', '-' and alphanumerics are literal in LIKE
        member = None if member_id is None else [{"member_id": member_id}]
        rows = await self.pool.fetch(
            """SELECT patient_id, data->>'condition' AS condition, data->>'side' AS side,
                      data->>'treatment' AS treatment, data->>'timezone' AS timezone, created_at, updated_at
               FROM ingest.patients
               WHERE tenant_id = $1 AND patient_id COLLATE "C" > $2
                 AND ($3::text IS NULL OR data->>'condition' = $3)
                 AND ($4::jsonb IS NULL OR data->'care_team' @> $4::jsonb)
                 AND ($5::text IS NULL OR patient_id LIKE $5)
               ORDER BY patient_id COLLATE "C" LIMIT $6""",
            principal.tenant_id,
            after,
            condition,
            member,
            like,
            limit + 1,
        )
        page = rows[:limit]
        items = [
            PatientSummary(
                patient_id=r["patient_id"],
                condition=r["condition"],
                side=r["side"],
                treatment=r["treatment"],
                timezone=r["timezone"],
                enrolled_at=r["created_at"],
                updated_at=r["updated_at"],
            )
            for r in page
        ]
        for item in items:
            record_access(request, principal, patient_id=item.patient_id, alert_id=None)
        next_cursor = paging.encode_text_cursor(page[-1]["patient_id"]) if len(rows) > limit else None
        return json_response(PatientPage(items=items, next_cursor=next_cursor).model_dump_json())
