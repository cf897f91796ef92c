"""FHIR R4 reads of the scoring service (scope `care`): `GET /fhir/r4/Observation?patient=&code=&date=`.

The daily series (`scoring.daily`, the patient's local calendar days) as Observations, one per
day and field (docs/fhir.md), newest day first, keyset-paged with an opaque `_cursor` in the
Bundle's `next` link. A patient of another tenant (or unknown) is a 404 OperationOutcome.
"""

from __future__ import annotations

import re
from datetime import date
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

_PARAMS = frozenset({"patient", "code", "date", "_count", "_cursor"})
_DATE = re.compile(r"^(eq|ge|gt|le|lt)?(\d{4}-\d{2}-\d{2})$")
_SQL_OP = {"eq": "=", "ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def code_fields(values: list[str]) -> list[str]:
    """The daily fields selected by `code` parameters (comma lists, `[system|]code`); all when absent."""
    if not values:
        return list(outbound.DAILY_ORDER)
    fields: set[str] = set()
    for value in values:
        for token in value.split(","):
            system, sep, code = token.rpartition("|")
            found = outbound.daily_field_for(system if sep else None, code)
            if not found:
                raise bad_param("code", "is not a code of the daily series (see docs/fhir.md)")
            fields.update(found)
    return [f for f in outbound.DAILY_ORDER if f in fields]


def date_clauses(values: list[str], first_arg: int) -> tuple[list[str], list[date]]:
    clauses, args = [], []
    for value in values:
        m = _DATE.fullmatch(value)
        if m is None:
            raise bad_param("date", "must be [eq|ge|gt|le|lt]YYYY-MM-DD")
        try:
            day = date.fromisoformat(m.group(2))
        except ValueError:
            raise bad_param("date") from None
        args.append(day)
        clauses.append(f"day {_SQL_OP[m.group(1) or 'eq']} ${first_arg + len(args) - 1}")
    return clauses, args


class FhirScoring:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def register(self, app: web.Application) -> None:
        install(app, "scoring", [web.get(f"{BASE_PATH}/Observation", self.search_observations)])

    async def search_observations(self, request: web.Request) -> web.Response:
        principal, patient_id, count = await patient_search(request, _PARAMS, "patient")
        tenant = principal.tenant_id
        fields = code_fields(request.query.getall("code", []))
        clauses, args = date_clauses(request.query.getall("date", []), 3)
        cursor = decode_cursor(request)
        after: tuple[date, int] | None = None
        if cursor is not None:
            try:
                after = (date.fromisoformat(cursor[0]), int(cursor[1]))
            except (IndexError, TypeError, ValueError):
                raise bad_param("_cursor") from None
        out: list[dict[str, Any]] = []
        last: tuple[date, int] | None = None
        more = False
        async with self.pool.acquire() as conn:
            known = await conn.fetchval(
                "SELECT 1 FROM scoring.patients WHERE tenant_id = $1 AND patient_id = $2 AND profile IS NOT NULL",
                tenant,
                patient_id,
            )
            if known is None:
                raise unknown_patient("patient")
            upper = after[0] if after else None
            while True:
                extra = f" AND day <= ${3 + len(args)}" if upper is not None else ""
                params = [tenant, patient_id, *args, *([upper] if upper is not None else [])]
                rows = await conn.fetch(
                    "SELECT day, data, updated_at FROM scoring.daily WHERE tenant_id = $1 AND patient_id = $2"
                    + "".join(f" AND {cl}" for cl in clauses)
                    + extra
                    + f" ORDER BY day DESC LIMIT {count + 1}",
                    *params,
                )
                for r in rows:
                    values = outbound.daily_values(r["data"])
                    for ordinal, name in enumerate(outbound.DAILY_ORDER):
                        if name not in fields or name not in values:
                            continue
                        if after is not None and r["day"] == after[0] and ordinal <= after[1]:
                            continue
                        if len(out) == count:
                            more = True
                            break
                        out.append(
                            outbound.daily_observation(
                                tenant, patient_id, r["day"], name, values[name], r["updated_at"]
                            )
                        )
                        last = (r["day"], ordinal)
                    if more:
                        break
                if more or len(rows) <= count:
                    break
                # every row of this batch was used up: go on from its last day (whose fields are all done)
                upper = rows[-1]["day"]
                after = (upper, len(outbound.DAILY_ORDER))
        position = [last[0].isoformat(), last[1]] if more and last is not None else None
        return searchset_response(request, "Observation", out, position)
