"""Alert persistence (schema `alerts`): rows <-> core types, audit, notification outbox, change events.

Writes go through `services.alerts.apply.EffectWriter` inside the caller's transaction: alert
rows, audit entries, notifications, lifecycle events (outbox) and a `pg_notify` for live
streams all commit together or not at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from schemas.alerts import Alert, AlertKind, AlertStatus, NotificationSummary
from schemas.common import Reason, Role, Severity
from schemas.trajectory import TrajectoryState
from services.alerts.lifecycle import LIFECYCLE_REASONS
from services.alerts.model import AlertState, Member, RedFlagSeen

NOTIFY_CHANNEL = "nervewatch_alerts"
ALERT_COLUMNS = """id, tenant_id, patient_id, kind, severity, status, summary, reasons, trajectory_state, event_time,
    opened_at, updated_at, retrospective, acknowledged_by, acknowledged_at, resolved_at, resolution,
    escalation_level, last_notified_at, clear_since, paged_flags, paged_at, engine_version, profile_version"""


def new_alert_id(now: datetime) -> str:
    """Time-ordered, unguessable id: `al_` + 12 hex digits of milliseconds + 16 random hex digits."""
    return f"al_{int(now.timestamp() * 1000):012x}{secrets.token_hex(8)}"


def new_snooze_id(now: datetime) -> str:
    """Time-ordered, unguessable id: `sn_` + 12 hex digits of milliseconds + 12 random hex digits."""
    return f"sn_{int(now.timestamp() * 1000):012x}{secrets.token_hex(6)}"


async def patient_audit(
    conn: asyncpg.Connection, tenant_id: str, patient_id: str, actor: str, action: str, detail: dict[str, Any]
) -> None:
    """One entry of the patient-level alert audit (snoozes), in the caller's transaction."""
    await conn.execute(
        """INSERT INTO alerts.patient_audit (tenant_id, patient_id, actor, action, detail)
           VALUES ($1, $2, $3, $4, $5)""",
        tenant_id,
        patient_id,
        actor,
        action,
        detail,
    )


def state_from_row(r: asyncpg.Record) -> AlertState:
    return AlertState(
        id=r["id"],
        patient_id=r["patient_id"],
        kind=AlertKind(r["kind"]),
        severity=Severity(r["severity"]),
        status=AlertStatus(r["status"]),
        opened_at=r["opened_at"],
        updated_at=r["updated_at"],
        event_time=r["event_time"],
        retrospective=r["retrospective"],
        escalation_level=r["escalation_level"],
        last_notified_at=r["last_notified_at"],
        clear_since=r["clear_since"],
        acknowledged_at=r["acknowledged_at"],
        summary=r["summary"],
        reasons=tuple(Reason(**x) for x in r["reasons"]),
        trajectory_state=TrajectoryState(r["trajectory_state"]) if r["trajectory_state"] else None,
        acknowledged_by=r["acknowledged_by"],
        resolved_at=r["resolved_at"],
        resolution=r["resolution"],
        paged_flags=frozenset(r["paged_flags"] or ()),
        paged_at=r["paged_at"],
        engine_version=r["engine_version"],
        profile_version=r["profile_version"],
    )


def ledger_from_json(data: Mapping[str, Any] | None) -> dict[str, RedFlagSeen]:
    """The patient's red-flag ledger from `alerts.patients.red_flags_seen`."""
    return {
        key: RedFlagSeen(recorded_at=datetime.fromisoformat(v["at"]), flags=frozenset(v["flags"]))
        for key, v in (data or {}).items()
    }


def ledger_to_json(ledger: Mapping[str, RedFlagSeen]) -> dict[str, Any]:
    return {key: {"at": v.recorded_at.isoformat(), "flags": sorted(v.flags)} for key, v in sorted(ledger.items())}


def members_from_json(care_team: Sequence[dict[str, Any]]) -> list[Member]:
    out = []
    for m in care_team:
        notify = m.get("notify") or {}
        out.append(
            Member(
                member_id=m["member_id"],
                role=Role(m["role"]),
                min_severity=Severity(m.get("min_severity", "medium")),
                webhook_url=notify.get("webhook_url"),
                email=notify.get("email"),
            )
        )
    return out


async def load_alert(conn: asyncpg.Connection, tenant_id: str, alert_id: str) -> Alert | None:
    row = await conn.fetchrow(
        f"SELECT {ALERT_COLUMNS} FROM alerts.alerts WHERE tenant_id = $1 AND id = $2", tenant_id, alert_id
    )
    if row is None:
        return None
    return (await alerts_from_rows(conn, [row]))[0]


async def alerts_from_rows(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> list[Alert]:
    """API objects, with the per-member delivery summary of each alert's pages (the informational
    webhooks of its acknowledgement and resolution are not pages: not counted)."""
    ids = [r["id"] for r in rows]
    notes: dict[str, list[NotificationSummary]] = {i: [] for i in ids}
    if ids:
        for n in await conn.fetch(
            """SELECT alert_id, member_id, channel,
                      CASE WHEN bool_or(status = 'delivered') THEN 'delivered'
                           WHEN bool_or(status IN ('pending', 'retrying')) THEN
                                CASE WHEN max(attempts) > 0 THEN 'retrying' ELSE 'pending' END
                           WHEN bool_or(status = 'failed') THEN 'failed' ELSE 'suppressed' END AS status,
                      sum(attempts)::int AS attempts
               FROM alerts.notifications WHERE alert_id = ANY($1::text[]) AND reason <> ALL($2::text[])
               GROUP BY alert_id, member_id, channel ORDER BY alert_id, member_id, channel""",
            ids,
            list(LIFECYCLE_REASONS),
        ):
            notes[n["alert_id"]].append(
                NotificationSummary(
                    member_id=n["member_id"], channel=n["channel"], status=n["status"], attempts=n["attempts"]
                )
            )
    return [
        Alert(
            id=r["id"],
            patient_id=r["patient_id"],
            kind=r["kind"],
            severity=r["severity"],
            status=r["status"],
            summary=r["summary"],
            reasons=r["reasons"],
            trajectory_state=r["trajectory_state"],
            event_time=r["event_time"],
            opened_at=r["opened_at"],
            updated_at=r["updated_at"],
            retrospective=r["retrospective"],
            acknowledged_by=r["acknowledged_by"],
            acknowledged_at=r["acknowledged_at"],
            resolved_at=r["resolved_at"],
            resolution=r["resolution"],
            red_flags=sorted(r["paged_flags"] or ()) if r["kind"] == AlertKind.red_flag.value else [],
            notifications=notes[r["id"]],
            engine_version=r["engine_version"],
            profile_version=r["profile_version"],
        )
        for r in rows
    ]
