"""Care read API of scoring (scope `care`): every enrolled patient's current trajectory.

    GET /v1/trajectories?state=&condition=&q=&cursor=&limit= -> 200 {items, next_cursor}

One item per enrolled patient, ordered by `patient_id`; a patient without a trajectory yet is
`insufficient_data` as of its enrolment. `q` is a prefix of `patient_id`; `limit` 1-500 (default
100); `cursor` is the previous page's `next_cursor`, unchanged. Invalid parameters are 400 problems
naming the parameter, never echoing its value. Reads only `scoring.patients` and
`scoring.trajectories` of the caller's tenant; each returned patient adds an access-audit row.
"""

from __future__ import annotations

import re

import asyncpg
from aiohttp import web

from nervewatch import paging
from nervewatch.http import Handler, authenticate, json_response, record_access
from nervewatch.paging import bad_param
from schemas.care_read import TrajectoryPage, TrajectorySummary
from schemas.common import PATIENT_ID_PATTERN, Condition
from schemas.trajectory import TrajectoryState

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
_ID = re.compile(PATIENT_ID_PATTERN)
_CONDITIONS = frozenset(c.value for c in Condition)
_STATES = frozenset(s.value for s in TrajectoryState)


class TrajectoryReads:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {"listTrajectories": self.list_trajectories}

    async def list_trajectories(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        q = request.query
        state = q.get("state")
        if state is not None and state not in _STATES:
            raise bad_param("state")
        condition = q.get("condition")
        if condition is not None and condition not in _CONDITIONS:
            raise bad_param("condition")
        prefix = q.get("q")
        if prefix is not None and not _ID.fullmatch(prefix):
            raise bad_param("q")
        limit = paging.parse_limit(q.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)
        after = paging.decode_matching_cursor(q["cursor"], _ID, 100) if "cursor" in q else ""
        like = None if prefix is None else prefix.replace("_", r"\_") + "%"
        rows = await self.pool.fetch(
            """SELECT p.patient_id, p.profile->>'condition' AS condition,
                      coalesce(t.state, 'insufficient_data') AS state, coalesce(t.as_of, p.updated_at) AS as_of,
                      coalesce(p.latest_event_at, es.as_of) AS latest_event_at,
                      t.data->'symptom_index' AS symptom_index,
                      t.data->'change_from_baseline_pct' AS change_pct
               FROM scoring.patients p
               LEFT JOIN scoring.trajectories t ON t.tenant_id = p.tenant_id AND t.patient_id = p.patient_id
               LEFT JOIN scoring.engine_states es ON es.tenant_id = p.tenant_id AND es.patient_id = p.patient_id
               WHERE p.tenant_id = $1 AND p.profile IS NOT NULL AND p.patient_id COLLATE "C" > $2
                 AND ($3::text IS NULL OR coalesce(t.state, 'insufficient_data') = $3)
                 AND ($4::text IS NULL OR p.profile->>'condition' = $4)
                 AND ($5::text IS NULL OR p.patient_id LIKE $5)
               ORDER BY p.patient_id COLLATE "C" LIMIT $6""",
            principal.tenant_id,
            after,
            state,
            condition,
            like,
            limit + 1,
        )
        page = rows[:limit]
        items = [
            TrajectorySummary(
                patient_id=r["patient_id"],
                condition=r["condition"] if r["condition"] in _CONDITIONS else None,
                state=r["state"],
                as_of=r["as_of"],
                last_data_at=r["latest_event_at"],
                symptom_index=r["symptom_index"],
                change_from_baseline_pct=r["change_pct"],
            )
            for r in page
        ]
        for item in items:
            record_access(request, principal, patient_id=item.patient_id, alert_id=None)
        next_cursor = paging.encode_text_cursor(page[-1]["patient_id"]) if len(rows) > limit else None
        return json_response(TrajectoryPage(items=items, next_cursor=next_cursor).model_dump_json())
