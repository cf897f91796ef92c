"""The alerts service process: consumes patients, trajectories and billing events, notifies care teams,
serves the API.

Owns schema `alerts`. Background loops: the consumer, the notification dispatcher, the timer
sweep (escalations, reminders, disengagement), the lifecycle-event outbox relay, and a
LISTEN connection that feeds the SSE streams of this process from changes made by any alerts
process, all run by the consumer-service scaffold (`nervewatch.consumer_service`). Shutdown:
HTTP stops, the consumer commits its batch in flight, loops are cancelled (an in-flight dispatch
round rolls back and is retried after restart), then everything closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import asyncpg
from aiohttp import web

from nervewatch.consumer_service import ConsumerSpec, consumer_app
from nervewatch.outbox import Outbox
from nervewatch.runtime import Runtime, retry_until_ready
from schemas.events import Topics
from schemas.openapi import bind
from services.alerts.api import AlertsApi, Broadcaster
from services.alerts.counts import AlertCountsApi
from services.alerts.delivery import Deliverer
from services.alerts.dispatcher import Dispatcher
from services.alerts.fhir_api import FhirAlerts
from services.alerts.policy import PolicyCache
from services.alerts.processor import AlertsProcessor, decode
from services.alerts.store import NOTIFY_CHANNEL
from services.alerts.sweeper import Sweeper

GROUP = "nervewatch-alerts"
log = logging.getLogger(__name__)


async def listen_changes(rt: Runtime, broadcaster: Broadcaster) -> None:
    """Hold a LISTEN connection (reconnecting as needed) and feed the broadcaster."""
    assert rt.settings.database_url is not None
    dsn = rt.settings.database_url

    def on_notify(_: Any, __: int, ___: str, payload: str) -> None:
        # A list of [tenant_id, alert_id, change] (one notice per written batch; see apply.EffectWriter);
        # [tenant_id, alert_id] pairs from a process of the previous release carry no change.
        for item in json.loads(payload):
            broadcaster.publish(item[0], item[1], item[2] if len(item) > 2 else None)

    while True:
        conn: asyncpg.Connection = await retry_until_ready("postgresql-listen", lambda: asyncpg.connect(dsn), 1e9)
        try:
            await conn.add_listener(NOTIFY_CHANNEL, on_notify)
            while not conn.is_closed():
                await asyncio.sleep(2)
                await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("listen connection lost", extra={"error": type(exc).__name__})
        finally:
            with contextlib.suppress(Exception):
                await conn.close()


async def build_app(rt: Runtime) -> web.Application:
    outbox = Outbox("alerts", rt.pool, rt.producer)
    wake = asyncio.Event()
    policies = PolicyCache()
    processor = AlertsProcessor(rt.pool, outbox, policies, wake)
    deliverer = Deliverer(rt.settings)
    dispatcher = Dispatcher(rt.pool, rt.identity, deliverer, rt.settings, wake)
    sweeper = Sweeper(rt.pool, outbox, policies, wake)
    broadcaster = Broadcaster()
    spec = ConsumerSpec(
        service="alerts",
        group_id=GROUP,
        topics=[Topics.patients, Topics.trajectories, Topics.billing],
        decode=decode,
        handle=processor.handle,
        outbox=outbox,
        background=[
            ("alerts-dispatcher", dispatcher.run),
            ("alerts-sweeper", lambda: sweeper.run(rt.settings.sweep_interval_s)),
            ("alerts-listen", lambda: listen_changes(rt, broadcaster)),
        ],
        on_close=[deliverer.close],
    )
    app, _ = consumer_app(rt, spec)
    bind(
        app.router,
        "alerts",
        AlertCountsApi(rt.pool).handlers(),
        AlertsApi(rt.pool, outbox, broadcaster, policies, wake).handlers(),
    )
    FhirAlerts(rt.pool).register(app)
    return app
