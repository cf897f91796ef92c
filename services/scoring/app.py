"""The scoring service process: consumes patients, check-ins and activity; serves trajectories
and the tenant's recorded event conflicts (`GET /v1/conflicts`, scope `admin`) and clinical-profile
overrides (`/v1/admin/clinical-profiles`, scope `admin`).

Owns schema `scoring`. Start-up and shutdown are the consumer-service scaffold's
(`nervewatch.consumer_service`); background loops: the outbox relay and the data-days-at-risk
sweep (services/scoring/billing/risk_sweep.py). Shutdown: the HTTP server stops, the consumer
finishes and commits its batch in flight, the background loops stop (a sweep in flight rolls
back), then the producer and pool close.
"""

from __future__ import annotations

from aiohttp import web

from nervewatch.consumer_service import ConsumerSpec, consumer_app
from nervewatch.outbox import Outbox
from nervewatch.runtime import Runtime
from schemas.events import Topics
from schemas.openapi import bind
from services.scoring.billing.api import BillingHandlers
from services.scoring.billing.risk_sweep import RiskSweeper
from services.scoring.checkin_reads import CheckinReads
from services.scoring.conflicts import ConflictHandlers
from services.scoring.fhir_api import FhirScoring
from services.scoring.processor import ScoringProcessor, decode
from services.scoring.profiles_api import ProfileHandlers
from services.scoring.read_api import TrajectoryReads
from services.scoring.trajectory_range import TrajectoryRange

GROUP = "nervewatch-scoring"


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
        background=[
            ("scoring-billing-risk", lambda: RiskSweeper(rt.pool, outbox).run(rt.settings.billing_risk_interval_s)),
        ],
    )
    app, _ = consumer_app(rt, spec)
    app[RUNTIME] = rt
    bind(
        app.router,
        "scoring",
        TrajectoryReads(rt.pool).handlers(),
        CheckinReads(rt.pool).handlers(),
        TrajectoryRange(rt.pool).handlers(),
        ConflictHandlers(rt.pool).handlers(),
        ProfileHandlers(rt.pool).handlers(),
        BillingHandlers(rt.pool).handlers(),
    )
    FhirScoring(rt.pool).register(app)
    return app
