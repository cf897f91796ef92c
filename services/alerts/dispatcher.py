"""The notification dispatcher: sends due rows of `alerts.notifications`.

Each round claims up to `BATCH` due rows with `FOR UPDATE SKIP LOCKED` (so several alerts
processes never send the same row at once), sends them concurrently, and records each outcome
in the same transaction. A crash mid-round rolls the claims back: those rows are sent again
after restart with the same delivery id, so a crash causes at most one duplicate per
notification, which receivers drop by `NerveWatch-Delivery`; nothing is ever lost.
Failures retry with exponential backoff and full jitter until `delivery_max_age_s`, then the
row is marked `failed` and counted. A webhook's body is the alert as it is when sent plus
`change`, the change the row reports (`lifecycle.change_of` its reason): pages and the
informational acknowledged/resolved webhooks alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from nervewatch import metrics
from nervewatch.identity.store import IdentityStore
from nervewatch.settings import Settings
from schemas.alerts import AlertDelivery
from services.alerts import lifecycle
from services.alerts.delivery import Deliverer, DeliveryError
from services.alerts.store import ALERT_COLUMNS, alerts_from_rows

log = logging.getLogger(__name__)
BATCH = 200
BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 3600.0


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """Exponential backoff with jitter: base * 2^(attempts-1), capped, scaled by [0.5, 1.5)."""
    raw = min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_CAP_S)
    return timedelta(seconds=raw * (0.5 + rng()))


@dataclass(frozen=True, slots=True)
class _Send:
    body: bytes
    alert: dict[str, Any]
    secrets: tuple[str, ...]  # current webhook secret, then the previous one during a rotation overlap
    allow_private: bool


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        identity: IdentityStore,
        deliverer: Deliverer,
        settings: Settings,
        wake: asyncio.Event,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.pool = pool
        self.identity = identity
        self.deliverer = deliverer
        self.settings = settings
        self.wake = wake
        self.clock = clock or (lambda: datetime.now(UTC))

    async def run(self) -> None:
        """Loop until cancelled: send due notifications, then sleep until woken or the poll interval."""
        while True:
            try:
                sent = await self.round()
            except Exception as exc:
                log.warning("dispatch round failed", extra={"error": type(exc).__name__})
                sent = 0
            if sent >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings.dispatcher_poll_s)
            self.wake.clear()

    async def round(self) -> int:
        """One claim-send-record round; returns how many rows were attempted."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT n.id, n.delivery_id, n.alert_id, n.tenant_id, n.member_id, n.channel, n.target, n.reason,
                          n.attempts, n.created_at
                   FROM alerts.notifications n
                   WHERE n.status IN ('pending', 'retrying') AND n.next_attempt_at <= $1
                   ORDER BY n.next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
                self.clock(),
                BATCH,
            )
            if not rows:
                return 0
            plans = await self._prepare(conn, rows)
            outcomes = await asyncio.gather(*(self._deliver(r, p) for r, p in zip(rows, plans, strict=True)))
            await self._record(conn, rows, outcomes, self.clock())
        return len(rows)

    async def _prepare(
        self, conn: asyncpg.Connection, rows: list[asyncpg.Record]
    ) -> list[tuple[str, str | None] | _Send]:
        """Database reads for a round (alerts and signing secrets loaded once): per row, an outcome
        decided without sending, or what to send."""
        alert_rows = await conn.fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts.alerts WHERE id = ANY($1::text[])",
            list({r["alert_id"] for r in rows}),
        )
        alerts = {a.id: a for a in await alerts_from_rows(conn, alert_rows)}
        secrets = {t: await self.identity.signing_secrets(t) for t in {r["tenant_id"] for r in rows}}
        plans: list[tuple[str, str | None] | _Send] = []
        for row in rows:
            alert = alerts.get(row["alert_id"])
            tenant = secrets.get(row["tenant_id"])
            if alert is None:
                plans.append(("failed", "alert_missing"))
            elif row["reason"] in ("reminder", "escalation") and alert.status.value != "open":
                plans.append(("suppressed", f"alert_{alert.status.value}"))
            elif tenant is None:
                plans.append(("failed", "tenant_missing"))
            else:
                body = AlertDelivery.model_construct(**dict(alert), change=lifecycle.change_of(row["reason"]))
                plans.append(_Send(body.model_dump_json().encode(), alert.model_dump(mode="json"), *tenant))
        return plans

    async def _deliver(self, row: asyncpg.Record, plan: tuple[str, str | None] | _Send) -> tuple[str, str | None]:
        if not isinstance(plan, _Send):
            return plan
        try:
            if row["channel"] == "webhook":
                await self.deliverer.webhook(
                    row["target"], plan.body, plan.secrets, str(row["delivery_id"]), plan.allow_private
                )
            else:
                await self.deliverer.email(row["target"], plan.alert, str(row["delivery_id"]))
        except DeliveryError as exc:
            return "retry", exc.code
        return "delivered", None

    async def _record(
        self,
        conn: asyncpg.Connection,
        rows: list[asyncpg.Record],
        outcomes: list[tuple[str, str | None]],
        now: datetime,
    ) -> None:
        """Write every outcome of the round and its audit entry (two statements for the whole round)."""
        updates: list[tuple[object, ...]] = []
        audits: list[tuple[object, ...]] = []
        for row, (status, error) in zip(rows, outcomes, strict=True):
            attempts = row["attempts"] + (0 if status == "suppressed" else 1)
            channel = row["channel"]
            if status == "retry":
                expired = now - row["created_at"] >= timedelta(seconds=self.settings.delivery_max_age_s)
                status = "failed" if expired or error in ("blocked_target", "invalid_url") else "retrying"
            metrics.NOTIFICATIONS.labels(channel, status).inc()
            next_at = now + backoff(attempts) if status == "retrying" else now
            updates.append((row["id"], status, attempts, next_at, error, now))
            detail = {
                "member_id": row["member_id"],
                "channel": channel,
                "delivery_id": str(row["delivery_id"]),
                "attempt": attempts,
                "reason": row["reason"],
                "error": error,
            }
            audits.append((row["alert_id"], "notified" if status == "delivered" else f"delivery_{status}", detail))
            if status != "delivered":
                log.info(
                    "delivery not completed",
                    extra={"delivery_id": str(row["delivery_id"]), "status": status, "error": error},
                )
        await conn.executemany(
            """UPDATE alerts.notifications SET status = $2, attempts = $3, next_attempt_at = $4, last_error = $5,
                      delivered_at = CASE WHEN $2 = 'delivered' THEN $6 ELSE delivered_at END
               WHERE id = $1""",
            updates,
        )
        await conn.executemany(
            "INSERT INTO alerts.audit (alert_id, actor, action, detail) VALUES ($1, 'system', $2, $3)", audits
        )
