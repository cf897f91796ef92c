"""Alert counts for the care console (scope `care`).

    GET /v1/alerts/counts?group_by=patient_id|severity|kind&status=open -> 200 {counts}

`status` is a comma-separated list of alert statuses (default `open`). One item per group with
its alerts split by severity, ordered by key. Reads only `alerts.alerts` of the caller's tenant.
Grouped by patient, each patient listed adds a row to the access audit. Invalid parameters are
400 problems naming the parameter, never echoing its value. Register before the
`/v1/alerts/{alert_id}` routes (aiohttp matches in registration order).
"""

from __future__ import annotations

from collections import defaultdict

import asyncpg
from aiohttp import web

from nervewatch.http import Handler, authenticate, json_response, record_access
from nervewatch.paging import bad_param
from schemas.alerts import AlertStatus
from schemas.care_read import AlertCount, AlertCounts, SeverityCounts

GROUPS = {"patient_id": "patient_id", "severity": "severity", "kind": "kind"}  # parameter -> column
_STATUSES = frozenset(s.value for s in AlertStatus)
_SEVERITIES = ("critical", "high", "medium", "low")


class AlertCountsApi:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {"countAlerts": self.counts}

    async def counts(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        column = GROUPS.get(request.query.get("group_by", ""))
        if column is None:
            raise bad_param("group_by")
        statuses = request.query.get("status", "open").split(",")
        if not statuses or any(s not in _STATUSES for s in statuses) or len(statuses) > len(_STATUSES):
            raise bad_param("status")
        rows = await self.pool.fetch(
            f"""SELECT {column} AS key, severity, count(*) AS n FROM alerts.alerts
                WHERE tenant_id = $1 AND status = ANY($2::text[])
                GROUP BY {column}, severity""",  # column comes from GROUPS, never from input
            principal.tenant_id,
            sorted(set(statuses)),
        )
        grouped: dict[str, dict[str, int]] = defaultdict(dict)
        for r in rows:
            if r["severity"] in _SEVERITIES:
                grouped[r["key"]][r["severity"]] = r["n"]
        counts = [AlertCount(key=k, severity=SeverityCounts(**v)) for k, v in sorted(grouped.items())]
        if column == "patient_id":
            for c in counts:
                record_access(request, principal, patient_id=c.key, alert_id=None)
        return json_response(AlertCounts(counts=counts).model_dump_json())
