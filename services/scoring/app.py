"""The scoring service process: consumes patients, check-ins and activity; serves trajectories
and the tenant's recorded event conflicts (`GET /v1/conflicts`, scope `admin`).

Owns schema `scoring`. Start-up and shutdown are the consumer-service scaffold's
(`nervewatch.consumer_service`): the HTTP server stops, the consumer finishes and commits its
batch in flight, the outbox relay stops, then the producer and pool close.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp import web

from nervewatch.consumer_service import ConsumerSpec, consumer_app
from nervewatch.http import authenticate, json_response
from nervewatch.outbox import Outbox
from nervewatch.problems import not_found
from nervewatch.runtime import Runtime
from schemas.common import PATIENT_ID_PATTERN
from schemas.events import Topics
from schemas.trajectory import Trajectory, TrajectoryState
from services.scoring.billing.api import BillingHandlers
from services.scoring.checkin_reads import CheckinReads
from services.scoring.conflicts import ConflictHandlers
from services.scoring.fhir_api import FhirScoring
from services.scoring.processor import ScoringProcessor, decode
from services.scoring.read_api import TrajectoryReads

GROUP = "nervewatch-scoring"
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)


async def get_trajectory(request: web.Request) -> web.Response:
    principal = await authenticate(request, "care")
    rt: Runtime = request.app[RUNTIME]
    patient_id = request.match_info["patient_id"]
    if not _PATIENT_ID.fullmatch(patient_id):  # e.g. a NUL byte, which PostgreSQL text cannot hold
        raise not_found("patient")
    row = await rt.pool.fetchrow(
        """SELECT p.updated_at, t.data FROM scoring.patients p
           LEFT JOIN scoring.trajectories t ON t.tenant_id = p.tenant_id AND t.patient_id = p.patient_id
           WHERE p.tenant_id = $1 AND p.patient_id = $2 AND p.profile IS NOT NULL""",
        principal.tenant_id,
        patient_id,
    )
    if row is None:
        raise not_found("patient")
    if row["data"] is None:
        empty = Trajectory(
            patient_id=patient_id, state=TrajectoryState.insufficient_data, as_of=row["updated_at"] or datetime.now(UTC)
        )
        return json_response(empty.model_dump_json())
    return json_response(Trajectory.model_validate(row["data"]).model_dump_json())


RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)


async def build_app(rt: Runtime) -> web.Application:
    """The scoring app on the shared consumer-service scaffold (`nervewatch.consumer_service`)."""
    outbox = Outbox("scoring", rt.pool, rt.producer)
    processor = ScoringProcessor(rt.pool, outbox)
    spec = ConsumerSpec(
        service="scoring",
        group_id=GROUP,
        topics=[Topics.patients, Topics.checkins, Topics.activity],
        decode=decode,
        handle=processor.handle,
        outbox=outbox,
    )
    app, _ = consumer_app(rt, spec)
    app[RUNTIME] = rt
    app.router.add_get("/v1/patients/{patient_id}/trajectory", get_trajectory)
    app.add_routes(ConflictHandlers(rt.pool).routes())
    app.add_routes(BillingHandlers(rt.pool).routes())
    FhirScoring(rt.pool).register(app)
    TrajectoryReads(rt.pool).register(app)
    CheckinReads(rt.pool).register(app)
    return app
