"""The ingest service process: HTTP in, events on the log out. Owns schema `ingest`."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from nervewatch.identity.access_log import retention_loop as access_log_retention_loop
from nervewatch.retention import retention_loop
from nervewatch.runtime import Runtime
from schemas.openapi import bind
from services.ingest.admin import AdminHandlers
from services.ingest.digests import PURGE_FIRST_DELAY_S, PURGE_INTERVAL_S, DigestStore, purge_event_digests
from services.ingest.fhir_api import FhirIngest
from services.ingest.handlers import IngestHandlers
from services.ingest.patients import PatientRegistry
from services.ingest.read_api import PatientReads


def build_app(rt: Runtime) -> web.Application:
    app = rt.create_app("ingest")
    handlers = IngestHandlers(rt.settings, PatientRegistry(rt.pool, rt.producer), rt.producer, DigestStore(rt.pool))
    bind(
        app.router,
        "ingest",
        handlers.handlers(),
        AdminHandlers(rt.identity).handlers(),
        PatientReads(rt.pool).handlers(),
    )
    FhirIngest(handlers).register(app)

    async def start(_: web.Application) -> None:
        # Ingest administers identity (keys, access-log reads), so it also purges the access audit.
        retention = timedelta(days=rt.settings.access_log_retention_days)
        rt.spawn(access_log_retention_loop(rt.pool, retention), "access-log-retention")
        digests = timedelta(days=rt.settings.event_digest_retention_days)
        purge = retention_loop(
            "event_digests",
            lambda: purge_event_digests(rt.pool, digests),
            digests,
            first_delay_s=PURGE_FIRST_DELAY_S,
            interval_s=PURGE_INTERVAL_S,
        )
        rt.spawn(purge, "event-digest-retention")

    async def close(_: web.Application) -> None:
        await rt.close()

    app.on_startup.append(start)
    app.on_cleanup.append(close)
    return app
