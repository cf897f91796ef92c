"""`GET /v1/patients/{patient_id}/trajectory?since=YYYY-MM-DD&until=YYYY-MM-DD` (scope `care`).

The patient's current trajectory as stored (state, index, reasons), with `days` rebuilt from the
stored daily series (`scoring.daily`) for the requested range of the patient's **local** calendar
dates, both ends inclusive, oldest first: the days with a check-in or a step count, each with its
symptom index (the engine's `symptom_index` with the patient's clinical profile; the same number
the stored trajectory holds for its recent days). Default range: the last `DEFAULT_DAYS` (120)
local days ending today; with only `since`, up to today; with only `until`, the 120 days ending
then; everything: an early `since` such as `1900-01-01` (a range is not capped: the rows are
bounded by the days with data, which the plausibility floor bounds). A malformed date or `since`
after `until` is a 400 problem naming the parameter (never echoing it). 404 for a patient the tenant has not enrolled.
Reads only `scoring.patients`, `scoring.trajectories` and `scoring.daily` of the caller's tenant;
the access-audit row carries the patient id (from the path).

`parse_range` and `api_days` are pure (today is passed in); `TrajectoryRange` is the shell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
from aiohttp import web

from nervewatch.http import Handler, authenticate, json_response
from nervewatch.paging import bad_param
from nervewatch.problems import ProblemError, not_found
from schemas.common import PATIENT_ID_PATTERN
from schemas.patients import Patient
from schemas.trajectory import Trajectory, TrajectoryDay, TrajectoryState
from services.scoring import daily, engine, series
from services.scoring.codec import day_from_json, profile_from_patient
from services.scoring.detectors.base import zone
from services.scoring.model import DayRecord
from services.scoring.profile import ClinicalProfile

DEFAULT_DAYS = 120
_ID = re.compile(PATIENT_ID_PATTERN)
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True, slots=True)
class DateRange:
    since: date
    until: date  # inclusive


def parse_date(raw: str | None, name: str) -> date | None:
    """A `YYYY-MM-DD` query value, None when absent; a 400 problem naming `name` otherwise."""
    if raw is None:
        return None
    if not _DATE.fullmatch(raw):
        raise bad_param(name)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_param(name) from None


def parse_range(query: Mapping[str, str], today: date) -> DateRange:
    """The requested range of local dates (see the module doc for defaults and problems)."""
    since = parse_date(query.get("since"), "since")
    until = parse_date(query.get("until"), "until")
    span = timedelta(days=DEFAULT_DAYS - 1)
    if until is None:
        until = today if since is None or since <= today else since
    if since is None:
        since = until - span if until.toordinal() > span.days else date.min
    if since > until:
        raise ProblemError(
            400, "Invalid query parameter", "'since' must not be after 'until'", slug="invalid-parameter"
        )
    return DateRange(since, until)


def api_days(days: Sequence[DayRecord], clinical: ClinicalProfile) -> list[TrajectoryDay]:
    """The API days of a stored series (oldest first): the days with a check-in or a step count."""
    return [series.api_day(d, engine.symptom_index(d, clinical)) for d in days if d.checkins or d.steps is not None]


class TrajectoryRange:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {"getTrajectory": self.get_trajectory}

    async def get_trajectory(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "care")
        patient_id = request.match_info["patient_id"]
        if not _ID.fullmatch(patient_id):  # e.g. a NUL byte, which PostgreSQL text cannot hold
            raise not_found("patient")
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT p.updated_at, p.profile, t.data FROM scoring.patients p
                   LEFT JOIN scoring.trajectories t ON t.tenant_id = p.tenant_id AND t.patient_id = p.patient_id
                   WHERE p.tenant_id = $1 AND p.patient_id = $2 AND p.profile IS NOT NULL""",
                principal.tenant_id,
                patient_id,
            )
            if row is None:
                raise not_found("patient")
            patient = Patient.model_validate(row["profile"])
            today = daily.local_day(datetime.now(UTC), zone(patient.timezone))
            wanted = parse_range(request.query, today)
            if row["data"] is None:
                empty = Trajectory(
                    patient_id=patient_id,
                    state=TrajectoryState.insufficient_data,
                    as_of=row["updated_at"] or datetime.now(UTC),
                )
                return json_response(empty.model_dump_json())
            rows = await conn.fetch(
                """SELECT data FROM scoring.daily WHERE tenant_id = $1 AND patient_id = $2 AND day BETWEEN $3 AND $4
                   ORDER BY day""",
                principal.tenant_id,
                patient_id,
                wanted.since,
                wanted.until,
            )
        trajectory = Trajectory.model_validate(row["data"])
        clinical = engine.Engine.of(profile_from_patient(patient)).patient.clinical  # as the processor scores
        trajectory.days = api_days([day_from_json(r["data"]) for r in rows], clinical)
        return json_response(trajectory.model_dump_json())
