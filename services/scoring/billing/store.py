"""SQL of RTM billing: reads of scoring's own tables, time entries and their audit, recorded
period versions. Every statement filters by tenant. No rules here (services/scoring/billing/engine.py).

Blocking: none beyond the awaited statements. Transactions are the caller's, except where a
function says it opens one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from schemas.common import rfc3339
from services.scoring.billing.model import (
    Activity,
    BillingSettings,
    Code,
    DataDay,
    DataDaySource,
    PeriodsResult,
    PeriodVersion,
    Source,
    TimeEntry,
    VersionReason,
)
from services.scoring.billing.risk import AtRisk, Raised
from services.scoring.billing.views import settings_from_stored, settings_out

UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class PatientInfo:
    patient_id: str
    tz: tzinfo
    enrolled_on: date | None


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC_ZONE
    except (ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE


def _patient(row: asyncpg.Record) -> PatientInfo:
    tz = _zone(row["timezone"])
    created = (row["profile"] or {}).get("created_at")
    enrolled_on: date | None = None
    if isinstance(created, str):
        try:
            enrolled_on = rfc3339(created).astimezone(tz).date()
        except Exception:  # a profile without a valid created_at: no enrolment floor
            enrolled_on = None
    return PatientInfo(row["patient_id"], tz, enrolled_on)


async def patient(conn: asyncpg.Connection, tenant_id: str, patient_id: str) -> PatientInfo | None:
    """The enrolled patient (scoring has their profile), or None: unknown, not yet consumed, or
    another tenant's."""
    row = await conn.fetchrow(
        """SELECT patient_id, timezone, profile FROM scoring.patients
           WHERE tenant_id = $1 AND patient_id = $2 AND profile IS NOT NULL""",
        tenant_id,
        patient_id,
    )
    return _patient(row) if row is not None else None


async def patients(conn: asyncpg.Connection, tenant_id: str) -> dict[str, PatientInfo]:
    rows = await conn.fetch(
        "SELECT patient_id, timezone, profile FROM scoring.patients WHERE tenant_id = $1 AND profile IS NOT NULL",
        tenant_id,
    )
    return {r["patient_id"]: _patient(r) for r in rows}


# -- settings -------------------------------------------------------------------------------------


async def load_settings(conn: asyncpg.Connection, tenant_id: str) -> BillingSettings:
    raw = await conn.fetchval("SELECT settings FROM scoring.billing_settings WHERE tenant_id = $1", tenant_id)
    return settings_from_stored(raw)


async def save_settings(conn: asyncpg.Connection, tenant_id: str, settings: BillingSettings) -> None:
    await conn.execute(
        """INSERT INTO scoring.billing_settings (tenant_id, settings) VALUES ($1, $2)
           ON CONFLICT (tenant_id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()""",
        tenant_id,
        settings_out(settings).model_dump(mode="json"),
    )


# -- data days ------------------------------------------------------------------------------------


async def data_days(
    conn: asyncpg.Connection, tenant_id: str, patient_ids: Collection[str] | None, sources: DataDaySource
) -> dict[str, list[DataDay]]:
    """Distinct local dates with data per patient (all of the tenant's when `patient_ids` is None),
    with when the day's first point was stored; wearable samples only when `sources` counts them."""
    ids = list(patient_ids) if patient_ids is not None else None
    queries = [("checkin", "scoring.checkins")]
    if sources is DataDaySource.checkins_and_wearables:
        queries.append(("wearable", "scoring.activity"))
    out: dict[str, list[DataDay]] = defaultdict(list)
    for source, table in queries:
        rows = await conn.fetch(
            f"""SELECT patient_id, local_date, min(stored_at) AS known_since FROM {table}
                WHERE tenant_id = $1 AND ($2::text[] IS NULL OR patient_id = ANY($2::text[]))
                  AND local_date IS NOT NULL
                GROUP BY patient_id, local_date""",
            tenant_id,
            ids,
        )
        for r in rows:
            out[r["patient_id"]].append(DataDay(r["local_date"], Source(source), r["known_since"]))
    return out


# -- recorded periods -----------------------------------------------------------------------------


def _version(r: asyncpg.Record) -> PeriodVersion:
    return PeriodVersion(
        start=r["period_start"],
        version=r["version"],
        data_dates=tuple(r["data_dates"]),
        supply_code=Code(r["supply_code"]) if r["supply_code"] else None,
        recorded_at=r["recorded_at"],
        reason=VersionReason(r["reason"]),
        data_days_from=DataDaySource(r["data_days_from"]),
    )


async def recorded(
    conn: asyncpg.Connection, tenant_id: str, patient_ids: Collection[str]
) -> tuple[dict[str, date], dict[str, dict[date, list[PeriodVersion]]]]:
    """Frozen anchors and recorded period versions (oldest version first) of the patients."""
    ids = list(patient_ids)
    anchors = {
        r["patient_id"]: r["monitoring_started"]
        for r in await conn.fetch(
            """SELECT patient_id, monitoring_started FROM scoring.billing_anchors
               WHERE tenant_id = $1 AND patient_id = ANY($2::text[])""",
            tenant_id,
            ids,
        )
    }
    versions: dict[str, dict[date, list[PeriodVersion]]] = defaultdict(lambda: defaultdict(list))
    for r in await conn.fetch(
        """SELECT patient_id, period_start, version, data_dates, supply_code, reason, data_days_from, recorded_at
           FROM scoring.billing_period_versions
           WHERE tenant_id = $1 AND patient_id = ANY($2::text[])
           ORDER BY patient_id, period_start, version""",
        tenant_id,
        ids,
    ):
        versions[r["patient_id"]][r["period_start"]].append(_version(r))
    return anchors, {pid: dict(v) for pid, v in versions.items()}


async def persist(conn: asyncpg.Connection, tenant_id: str, results: Mapping[str, PeriodsResult]) -> set[str]:
    """Record frozen anchors and new period versions (never updating a row). Returns the patients
    for whom another writer got there first (a row already existed): their results are stale and
    must be recomputed from what is now stored. Rows are inserted in key order (anchors, then
    versions), so concurrent writers wait on each other but never deadlock."""
    anchor_rows = [
        {"patient_id": pid, "monitoring_started": r.freeze_anchor.isoformat()}
        for pid, r in sorted(results.items())
        if r.freeze_anchor is not None
    ]
    lost: set[str] = set()
    if anchor_rows:
        applied = await conn.fetch(
            """INSERT INTO scoring.billing_anchors (tenant_id, patient_id, monitoring_started, frozen_at)
               SELECT $1, x.patient_id, x.monitoring_started, now()
               FROM jsonb_to_recordset($2::jsonb) AS x(patient_id text, monitoring_started date)
               ORDER BY x.patient_id
               ON CONFLICT DO NOTHING RETURNING patient_id""",
            tenant_id,
            anchor_rows,
        )
        lost |= {row["patient_id"] for row in anchor_rows} - {r["patient_id"] for r in applied}
    versions = sorted(
        ((pid, v) for pid, r in results.items() for v in r.new_versions), key=lambda x: (x[0], x[1].start, x[1].version)
    )
    if versions:
        version_rows = [
            {
                "patient_id": pid,
                "period_start": v.start.isoformat(),
                "version": v.version,
                "data_dates": [d.isoformat() for d in v.data_dates],
                "supply_code": v.supply_code.value if v.supply_code else None,
                "reason": v.reason.value,
                "data_days_from": v.data_days_from.value,
                "recorded_at": v.recorded_at.isoformat(),
            }
            for pid, v in versions
        ]
        applied = await conn.fetch(
            """INSERT INTO scoring.billing_period_versions
                   (tenant_id, patient_id, period_start, version, data_dates, supply_code, reason,
                    data_days_from, recorded_at)
               SELECT $1, x.patient_id, x.period_start, x.version, x.data_dates, x.supply_code, x.reason,
                      x.data_days_from, x.recorded_at
               FROM jsonb_to_recordset($2::jsonb) AS x(patient_id text, period_start date, version integer,
                    data_dates date[], supply_code text, reason text, data_days_from text, recorded_at timestamptz)
               ORDER BY x.patient_id, x.period_start, x.version
               ON CONFLICT DO NOTHING RETURNING patient_id, period_start, version""",
            tenant_id,
            version_rows,
        )
        done = {(r["patient_id"], r["period_start"], r["version"]) for r in applied}
        lost |= {pid for pid, v in versions if (pid, v.start, v.version) not in done}
    return lost


# -- data days at risk ----------------------------------------------------------------------------


async def billing_tenants(conn: asyncpg.Connection) -> list[str]:
    """Tenants with at least one enrolled patient."""
    rows = await conn.fetch("SELECT DISTINCT tenant_id FROM scoring.patients WHERE profile IS NOT NULL ORDER BY 1")
    return [r["tenant_id"] for r in rows]


async def anchors(conn: asyncpg.Connection, tenant_id: str) -> dict[str, date]:
    """The tenant's frozen `monitoring_started` dates by patient."""
    rows = await conn.fetch(
        "SELECT patient_id, monitoring_started FROM scoring.billing_anchors WHERE tenant_id = $1", tenant_id
    )
    return {r["patient_id"]: r["monitoring_started"] for r in rows}


async def risks(
    conn: asyncpg.Connection, tenant_id: str, since: date
) -> tuple[dict[str, list[Raised]], dict[str, set[date]]]:
    """The tenant's raises not ended yet, and the period starts raised (ended or not) of periods
    ending on or after `since`, by patient."""
    unended: dict[str, list[Raised]] = defaultdict(list)
    starts: dict[str, set[date]] = defaultdict(set)
    for r in await conn.fetch(
        """SELECT patient_id, period_start, period_end, raised_at, ended_at FROM scoring.billing_risk
           WHERE tenant_id = $1 AND (ended_at IS NULL OR period_end >= $2)""",
        tenant_id,
        since,
    ):
        starts[r["patient_id"]].add(r["period_start"])
        if r["ended_at"] is None:
            unended[r["patient_id"]].append(Raised(r["period_start"], r["period_end"], r["raised_at"]))
    return unended, starts


async def insert_raise(conn: asyncpg.Connection, tenant_id: str, patient_id: str, risk: AtRisk, at: datetime) -> bool:
    """Record a raise; False when this period was raised already (a concurrent sweep got there first)."""
    row = await conn.fetchrow(
        """INSERT INTO scoring.billing_risk
               (tenant_id, patient_id, period_start, period_end, raised_at, data_days, data_days_possible, needed)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT DO NOTHING RETURNING 1""",
        tenant_id,
        patient_id,
        risk.period_start,
        risk.period_end,
        at,
        risk.data_days,
        risk.data_days_possible,
        risk.needed,
    )
    return row is not None


async def end_raise(
    conn: asyncpg.Connection, tenant_id: str, patient_id: str, period_start: date, reason: str, at: datetime
) -> bool:
    """Mark a raise ended; False when it was ended already (a concurrent sweep got there first)."""
    row = await conn.fetchrow(
        """UPDATE scoring.billing_risk SET ended_at = $4, end_reason = $5
           WHERE tenant_id = $1 AND patient_id = $2 AND period_start = $3 AND ended_at IS NULL RETURNING 1""",
        tenant_id,
        patient_id,
        period_start,
        at,
        reason,
    )
    return row is not None


# -- time entries ---------------------------------------------------------------------------------

ENTRY_COLUMNS = (
    "id, patient_id, member_id, started_at, ended_at, minutes, activity, interactive, note, created_at, updated_at"
)


def engine_entry(r: asyncpg.Record) -> TimeEntry:
    return TimeEntry(r["id"], r["member_id"], r["started_at"], r["minutes"], Activity(r["activity"]), r["interactive"])


async def entries_of_patient(
    conn: asyncpg.Connection,
    tenant_id: str,
    patient_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[asyncpg.Record]:
    """The patient's entries (not deleted) started in [since, until), oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {ENTRY_COLUMNS} FROM scoring.time_entries
            WHERE tenant_id = $1 AND patient_id = $2 AND deleted_at IS NULL
              AND ($3::timestamptz IS NULL OR started_at >= $3) AND ($4::timestamptz IS NULL OR started_at < $4)
            ORDER BY started_at, id""",
        tenant_id,
        patient_id,
        since,
        until,
    )
    return rows


async def entries_around(
    conn: asyncpg.Connection, tenant_id: str, since: datetime, until: datetime
) -> dict[str, list[TimeEntry]]:
    """The tenant's entries started in [since, until) by patient (the caller widens the range by
    the time-zone offsets and filters by each patient's local month)."""
    out: dict[str, list[TimeEntry]] = defaultdict(list)
    for r in await conn.fetch(
        f"""SELECT {ENTRY_COLUMNS} FROM scoring.time_entries
            WHERE tenant_id = $1 AND deleted_at IS NULL AND started_at >= $2 AND started_at < $3""",
        tenant_id,
        since,
        until,
    ):
        out[r["patient_id"]].append(engine_entry(r))
    return out


async def entry_for_update(
    conn: asyncpg.Connection, tenant_id: str, patient_id: str, entry_id: str
) -> asyncpg.Record | None:
    """The entry (not deleted), locked for the caller's transaction."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT {ENTRY_COLUMNS} FROM scoring.time_entries
            WHERE tenant_id = $1 AND patient_id = $2 AND id = $3 AND deleted_at IS NULL
            FOR UPDATE""",
        tenant_id,
        patient_id,
        entry_id,
    )
    return row


async def lock_member(conn: asyncpg.Connection, tenant_id: str, member_id: str) -> None:
    """Serialise writes of one member's time entries until the caller's transaction ends.

    Two concurrent entries of one member cannot both pass `overlapping`: the second waits here."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('nervewatch.time_entries:' || $1 || ':' || $2, 0))",
        tenant_id,
        member_id,
    )


async def overlapping(
    conn: asyncpg.Connection,
    tenant_id: str,
    member_id: str,
    started_at: datetime,
    minutes: int,
    exclude_id: str | None = None,
) -> str | None:
    """The id of an entry of `member_id` (any patient of the tenant) that overlaps, or None."""
    ended_at = started_at + timedelta(minutes=minutes)
    value: str | None = await conn.fetchval(
        """SELECT id FROM scoring.time_entries
           WHERE tenant_id = $1 AND member_id = $2 AND deleted_at IS NULL
             AND started_at < $4 AND ended_at > $3 AND ($5::text IS NULL OR id <> $5)
           ORDER BY started_at LIMIT 1""",
        tenant_id,
        member_id,
        started_at,
        ended_at,
        exclude_id,
    )
    return value


async def insert_entry(conn: asyncpg.Connection, tenant_id: str, values: Mapping[str, Any]) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""INSERT INTO scoring.time_entries
               (tenant_id, id, patient_id, member_id, started_at, ended_at, minutes, activity, interactive, note,
                created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
            RETURNING {ENTRY_COLUMNS}""",
        tenant_id,
        values["id"],
        values["patient_id"],
        values["member_id"],
        values["started_at"],
        values["started_at"] + timedelta(minutes=values["minutes"]),
        values["minutes"],
        values["activity"],
        values["interactive"],
        values["note"],
        values["at"],
    )
    assert row is not None
    return row


async def update_entry(
    conn: asyncpg.Connection, tenant_id: str, entry_id: str, values: Mapping[str, Any], at: datetime
) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""UPDATE scoring.time_entries
            SET member_id = $3, started_at = $4, ended_at = $5, minutes = $6, activity = $7, interactive = $8,
                note = $9, updated_at = $10
            WHERE tenant_id = $1 AND id = $2
            RETURNING {ENTRY_COLUMNS}""",
        tenant_id,
        entry_id,
        values["member_id"],
        values["started_at"],
        values["started_at"] + timedelta(minutes=values["minutes"]),
        values["minutes"],
        values["activity"],
        values["interactive"],
        values["note"],
        at,
    )
    assert row is not None
    return row


async def delete_entry(conn: asyncpg.Connection, tenant_id: str, entry_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE scoring.time_entries SET deleted_at = $3, updated_at = $3 WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        entry_id,
        at,
    )


async def audit(
    conn: asyncpg.Connection,
    tenant_id: str,
    patient_id: str,
    entry_id: str,
    *,
    at: datetime,
    actor: str,
    key_id: str,
    action: str,
    fields: Sequence[str],
    changes: Mapping[str, Mapping[str, Any]],
) -> None:
    """One audit row. `changes` must not hold note text (the caller names `note` in `fields` only)."""
    await conn.execute(
        """INSERT INTO scoring.time_entry_audit
               (tenant_id, patient_id, entry_id, at, actor, key_id, action, fields, changes)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        tenant_id,
        patient_id,
        entry_id,
        at,
        actor,
        key_id,
        action,
        list(fields),
        json.loads(json.dumps(changes, default=str)),
    )


async def audit_of(conn: asyncpg.Connection, tenant_id: str, patient_id: str, entry_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT at, entry_id, actor, key_id, action, fields, changes FROM scoring.time_entry_audit
           WHERE tenant_id = $1 AND patient_id = $2 AND entry_id = $3 ORDER BY id""",
        tenant_id,
        patient_id,
        entry_id,
    )
    return rows
