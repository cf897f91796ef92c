"""The scoring shell: persist observations idempotently, rebuild affected days, score, publish.

`handle(batch)` runs one database transaction per batch:
1. patient events upsert profiles; a new or re-zoned patient gets its held observations dated
   and its whole series rebuilt;
2. check-ins and samples are inserted once per (tenant, event_id); a repeat with different
   content (digest of `schemas.digests`, the same ingest compares) is a conflict: the first is kept
   and the conflicting version is recorded once per distinct content in `scoring.event_conflicts`
   (served by `GET /v1/conflicts`). The red flags of a conflicting check-in version are never
   hidden: its local day is rebuilt with them (`daily.aggregate_day(conflicting_red_flags=...)`),
   so the engine emits a `red_flag` signal for that version, and the patient is re-scored as of
   the newest of its event times, the conflicting version's included;
3. every patient with new data gets its affected local days re-aggregated and is re-scored
   incrementally from its persisted engine state (`scoring.engine_states`: the state after its
   newest day plus bounded snapshots; see `_rescore_all` for forward steps, rewinds on late data
   and whole re-folds), as of each changed day and as of its newest event time; the trajectory
   events are queued in the outbox, the final trajectory (stamped with the engine and profile
   versions) and the new state are written in the same transaction.
After the commit the consumer's commit path drains the outbox, then commits offsets. Observations of a
patient who is not enrolled yet are stored with no local date (held) and scored on enrolment.
"""

from __future__ import annotations

import json
import typing
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import asyncpg
from aiokafka import ConsumerRecord
from pydantic import TypeAdapter

from nervewatch import metrics
from nervewatch.kafka import Decoded, decode_event
from nervewatch.outbox import Outbox
from schemas.activity import ActivitySample
from schemas.digests import checkin_digest, sample_digest
from schemas.events import (
    ActivityRecorded,
    CheckInRecorded,
    IngestEvent,
    PatientUpserted,
    Topics,
    TrajectoryUpdated,
    TriggerRef,
    event_key,
)
from schemas.patients import Patient
from schemas.trajectory import Trajectory, TrajectoryState
from services.scoring import daily, engine, profiles_store, series
from services.scoring.codec import (
    activity_obs,
    checkin_obs,
    day_from_json,
    day_to_json,
    profile_from_patient,
)
from services.scoring.engine import EngineState, StateVersionError, from_json, thin
from services.scoring.model import ActivityObs, Assessment, CheckinObs, DayRecord, RedFlagObs
from services.scoring.profile import ProfileOverride
from services.scoring.state import to_json_text

#: At most this many changed past local days get their own trajectory event per patient and batch
#: (the newest ones: a late backfill of months publishes its last MAX_DAY_EVENTS days, then the final).
MAX_DAY_EVENTS = 120
#: Snapshots persisted per patient: rewinds reach SNAPSHOT_DAYS days back without a re-fold; one
#: snapshot per SNAPSHOT_EVERY days at most (a rewind replays at most SNAPSHOT_EVERY - 1 extra days).
SNAPSHOT_DAYS = 35
SNAPSHOT_EVERY = 7
#: First key of the transaction-scoped advisory locks that serialise re-scoring per patient.
STATE_LOCK_CLASS = 0x5C0E
#: Check-in rows read per round trip while days are rebuilt (bounds the rebuild's memory).
REBUILD_FETCH = 2000

_event_adapter: TypeAdapter[PatientUpserted | CheckInRecorded | ActivityRecorded] = TypeAdapter(IngestEvent)
Key = tuple[str, str]


def decode(record: ConsumerRecord) -> PatientUpserted | CheckInRecorded | ActivityRecorded:
    """Decode an ingest event; raises DecodeError (dead-letter) for anything unusable."""
    return decode_event(record, _event_adapter)


@dataclass
class _Work:
    """What one batch changed for one patient."""

    dates: set[date] = field(default_factory=set)
    full: bool = False
    trigger: TriggerRef | None = None
    newest: datetime | None = None  # the newest event time of the batch's new dated observations

    def offer_time(self, t: datetime) -> None:
        if self.newest is None or t > self.newest:
            self.newest = t

    def offer_trigger(self, event_id: str, recorded_at: datetime, received_at: datetime) -> None:
        if self.trigger is None or recorded_at >= self.trigger.recorded_at:
            self.trigger = TriggerRef(event_id=event_id, recorded_at=recorded_at, received_at=received_at)


@dataclass(frozen=True, slots=True)
class _Version:
    """A second version of a known event id, as offered in this batch (conflict if its hash differs)."""

    tenant_id: str
    event_id: uuid.UUID
    patient_id: str
    content_hash: bytes
    data: str  # the version's JSON (check-in as validated; sample plus device)
    recorded_at: datetime  # check-in recorded_at; sample start
    received_at: datetime
    local_date: date | None
    red_flags: tuple[str, ...] = ()


class ScoringProcessor:
    def __init__(self, pool: asyncpg.Pool, outbox: Outbox, clock: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.outbox = outbox
        self.clock = clock or (lambda: datetime.now(UTC))

    async def handle(self, batch: list[Decoded[PatientUpserted | CheckInRecorded | ActivityRecorded]]) -> None:
        events = [d.value for d in batch]
        work: dict[Key, _Work] = defaultdict(_Work)
        async with self.pool.acquire() as conn, conn.transaction():
            for ev in events:
                if isinstance(ev, PatientUpserted):
                    await self._upsert_patient(conn, ev, work)
            keys = {_key(ev) for ev in events if not isinstance(ev, PatientUpserted)}
            zones = await self._zones(conn, keys)
            checkins = [ev for ev in events if isinstance(ev, CheckInRecorded)]
            activity = [ev for ev in events if isinstance(ev, ActivityRecorded)]
            if checkins:
                await self._store_checkins(conn, checkins, zones, work)
            if activity:
                await self._store_activity(conn, activity, zones, work)
            records = await self._rescore_all(conn, work)
            await self.outbox.add(conn, records)  # drained by the consumer's commit path (step 3)
        now = self.clock()
        for ev in checkins:
            metrics.END_TO_END_LATENCY.labels("scored", "received_at").observe((now - ev.received_at).total_seconds())
            metrics.END_TO_END_LATENCY.labels("scored", "recorded_at").observe(
                (now - ev.checkin.recorded_at).total_seconds()
            )

    # -- patients ----------------------------------------------------------------------------

    async def _upsert_patient(self, conn: asyncpg.Connection, ev: PatientUpserted, work: dict[Key, _Work]) -> None:
        p = ev.patient
        prev = await conn.fetchrow(
            "SELECT timezone, profile FROM scoring.patients WHERE tenant_id = $1 AND patient_id = $2",
            ev.tenant_id,
            p.patient_id,
        )
        if prev is not None and prev["profile"] is not None and _updated_at(prev["profile"]) > p.updated_at:
            return  # an older version of the patient replayed late
        await conn.execute(
            """INSERT INTO scoring.patients (tenant_id, patient_id, profile, timezone, updated_at)
               VALUES ($1, $2, $3, $4, now())
               ON CONFLICT (tenant_id, patient_id) DO UPDATE
               SET profile = EXCLUDED.profile, timezone = EXCLUDED.timezone, updated_at = now()""",
            ev.tenant_id,
            p.patient_id,
            p.model_dump(mode="json"),
            p.timezone,
        )
        key = (ev.tenant_id, p.patient_id)
        if prev is None or prev["timezone"] != p.timezone:
            # Date (or re-date) every stored observation in the patient's zone, held ones included.
            await conn.execute(
                """UPDATE scoring.checkins SET local_date = (recorded_at AT TIME ZONE $3)::date
                   WHERE tenant_id = $1 AND patient_id = $2""",
                ev.tenant_id,
                p.patient_id,
                p.timezone,
            )
            await conn.execute(
                """UPDATE scoring.activity SET local_date = ((start_at + (end_at - start_at) / 2) AT TIME ZONE $3)::date
                   WHERE tenant_id = $1 AND patient_id = $2""",
                ev.tenant_id,
                p.patient_id,
                p.timezone,
            )
            await conn.execute(
                """UPDATE scoring.event_conflicts SET local_date = CASE kind
                       WHEN 'checkin' THEN (recorded_at AT TIME ZONE $3)::date
                       ELSE ((recorded_at + ((data->>'end')::timestamptz - recorded_at) / 2) AT TIME ZONE $3)::date
                   END
                   WHERE tenant_id = $1 AND patient_id = $2 AND recorded_at IS NOT NULL AND data IS NOT NULL""",
                ev.tenant_id,
                p.patient_id,
                p.timezone,
            )
            await conn.execute("DELETE FROM scoring.daily WHERE tenant_id = $1 AND patient_id = $2", *key)
        work[key].full = True

    async def _zones(self, conn: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, ZoneInfo]:
        keys = list(keys)
        if not keys:
            return {}
        rows = await conn.fetch(
            """SELECT p.tenant_id, p.patient_id, p.timezone FROM scoring.patients p
               JOIN unnest($1::text[], $2::text[]) AS k(t, pid) ON p.tenant_id = k.t AND p.patient_id = k.pid
               WHERE p.timezone IS NOT NULL""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["tenant_id"], r["patient_id"]): ZoneInfo(r["timezone"]) for r in rows}

    # -- observations ------------------------------------------------------------------------

    async def _store_checkins(
        self, conn: asyncpg.Connection, evs: list[CheckInRecorded], zones: dict[Key, ZoneInfo], work: dict[Key, _Work]
    ) -> None:
        cols: dict[str, list[object]] = defaultdict(list)
        for ev in evs:
            c = ev.checkin
            raw = c.model_dump_json().encode()
            tz = zones.get(_key(ev))
            cols["tenant"].append(ev.tenant_id)
            cols["event"].append(c.event_id)
            cols["patient"].append(c.patient_id)
            cols["recorded"].append(c.recorded_at)
            cols["received"].append(ev.received_at)
            cols["local"].append(daily.local_day(c.recorded_at, tz) if tz else None)
            cols["hash"].append(checkin_digest(c))
            cols["data"].append(raw.decode())
        inserted = await conn.fetch(
            """INSERT INTO scoring.checkins
                 (tenant_id, event_id, patient_id, recorded_at, received_at, local_date, content_hash, data)
               SELECT t, e, p, rec, rcv, ld, h, d::jsonb
               FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                           $6::date[], $7::bytea[], $8::text[]) AS x(t, e, p, rec, rcv, ld, h, d)
               ON CONFLICT (tenant_id, event_id) DO NOTHING
               RETURNING tenant_id, event_id""",
            cols["tenant"],
            cols["event"],
            cols["patient"],
            cols["recorded"],
            cols["received"],
            cols["local"],
            cols["hash"],
            cols["data"],
        )
        new = {(r["tenant_id"], r["event_id"]) for r in inserted}
        seen: set[tuple[str, uuid.UUID]] = set()
        dups: list[_Version] = []
        for i, ev in enumerate(evs):
            ident = (ev.tenant_id, ev.checkin.event_id)
            local = cols["local"][i]
            if ident in new and ident not in seen:
                seen.add(ident)
                if isinstance(local, date):
                    w = work[_key(ev)]
                    w.dates.add(local)
                    w.offer_trigger(str(ev.checkin.event_id), ev.checkin.recorded_at, ev.received_at)
                    w.offer_time(ev.checkin.recorded_at)
            else:
                c = ev.checkin
                dups.append(
                    _Version(
                        tenant_id=ev.tenant_id,
                        event_id=c.event_id,
                        patient_id=c.patient_id,
                        content_hash=typing.cast(bytes, cols["hash"][i]),
                        data=typing.cast(str, cols["data"][i]),
                        recorded_at=c.recorded_at,
                        received_at=ev.received_at,
                        local_date=local if isinstance(local, date) else None,
                        red_flags=tuple(sorted({f.value for f in c.red_flags})),
                    )
                )
        await self._record_conflicts(conn, "checkins", "checkin", dups, work)

    async def _store_activity(
        self, conn: asyncpg.Connection, evs: list[ActivityRecorded], zones: dict[Key, ZoneInfo], work: dict[Key, _Work]
    ) -> None:
        cols: dict[str, list[object]] = defaultdict(list)
        owners: list[ActivityRecorded] = []
        samples: list[ActivitySample] = []
        for ev in evs:
            tz = zones.get(_key(ev))
            for s in ev.samples:
                obs = activity_obs(s, ev.device.id, ev.received_at)
                owners.append(ev)
                samples.append(s)
                cols["tenant"].append(ev.tenant_id)
                cols["event"].append(s.event_id)
                cols["patient"].append(ev.patient_id)
                cols["device"].append(ev.device.id)
                cols["type"].append(s.type.value)
                cols["start"].append(s.start)
                cols["end"].append(s.end)
                cols["value"].append(s.value)
                cols["received"].append(ev.received_at)
                cols["local"].append(daily.activity_day(obs, tz) if tz else None)
                cols["hash"].append(sample_digest(s, ev.patient_id, ev.device.id))
        inserted = await conn.fetch(
            """INSERT INTO scoring.activity (tenant_id, event_id, patient_id, device_id, type, start_at, end_at,
                                             value, received_at, local_date, content_hash)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                    $6::timestamptz[], $7::timestamptz[], $8::float8[], $9::timestamptz[],
                                    $10::date[], $11::bytea[])
               ON CONFLICT (tenant_id, event_id) DO NOTHING
               RETURNING tenant_id, event_id""",
            cols["tenant"],
            cols["event"],
            cols["patient"],
            cols["device"],
            cols["type"],
            cols["start"],
            cols["end"],
            cols["value"],
            cols["received"],
            cols["local"],
            cols["hash"],
        )
        new = {(r["tenant_id"], r["event_id"]) for r in inserted}
        seen: set[tuple[str, uuid.UUID]] = set()
        dups: list[_Version] = []
        for i, ev in enumerate(owners):
            ident = (ev.tenant_id, typing.cast(uuid.UUID, cols["event"][i]))
            local = cols["local"][i]
            if ident in new and ident not in seen:
                seen.add(ident)
                if isinstance(local, date):
                    w = work[_key(ev)]
                    w.dates.add(local)
                    w.offer_time(samples[i].end)
            else:
                s = samples[i]
                dups.append(
                    _Version(
                        tenant_id=ev.tenant_id,
                        event_id=s.event_id,
                        patient_id=ev.patient_id,
                        content_hash=typing.cast(bytes, cols["hash"][i]),
                        data=json.dumps({"device": ev.device.model_dump(mode="json"), **s.model_dump(mode="json")}),
                        recorded_at=s.start,
                        received_at=ev.received_at,
                        local_date=local if isinstance(local, date) else None,
                    )
                )
        await self._record_conflicts(conn, "activity", "activity", dups, work)

    async def _record_conflicts(
        self, conn: asyncpg.Connection, table: str, kind: str, dups: list[_Version], work: dict[Key, _Work]
    ) -> None:
        """Record each version whose hash differs from the stored first version, once per content.

        A newly recorded check-in version carrying red flags, or contradicting a first version that
        carries some, puts its local day up for a rebuild (which adds its red flags to the day) and
        offers it as the trigger of the patient's re-scoring. Redeliveries change nothing."""
        if not dups:
            return
        flags = "s.data->'red_flags'" if table == "checkins" else "'[]'::jsonb"
        rows = await conn.fetch(
            f"""SELECT s.tenant_id, s.event_id, s.content_hash, {flags} AS red_flags FROM scoring.{table} s
                JOIN unnest($1::text[], $2::uuid[]) AS k(t, e) ON s.tenant_id = k.t AND s.event_id = k.e""",
            [d.tenant_id for d in dups],
            [d.event_id for d in dups],
        )
        stored = {(r["tenant_id"], r["event_id"]): (bytes(r["content_hash"]), r["red_flags"]) for r in rows}
        recorded = 0
        for d in dups:
            first = stored.get((d.tenant_id, d.event_id))
            if first is None or first[0] == d.content_hash:
                continue  # an identical redelivery
            first_flagged = bool(_json_list(first[1]))
            new_id = await conn.fetchval(
                """INSERT INTO scoring.event_conflicts
                     (tenant_id, event_id, kind, other_hash, patient_id, first_hash, data, recorded_at, received_at,
                      local_date, red_flags, red_flag)
                   VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9, $10, $11::text[], $12)
                   ON CONFLICT (tenant_id, event_id, other_hash) DO NOTHING
                   RETURNING id""",
                d.tenant_id,
                d.event_id,
                kind,
                d.content_hash,
                d.patient_id,
                first[0],
                d.data,
                d.recorded_at,
                d.received_at,
                d.local_date,
                list(d.red_flags),
                bool(d.red_flags) or first_flagged,
            )
            if new_id is None:
                continue  # this version was recorded before
            recorded += 1
            if d.red_flags and d.local_date is not None:
                w = work[(d.tenant_id, d.patient_id)]
                w.dates.add(d.local_date)
                w.offer_trigger(str(d.event_id), d.recorded_at, d.received_at)
                w.offer_time(d.recorded_at)
        if recorded:
            metrics.EVENT_CONFLICTS.labels(kind).inc(recorded)

    # -- scoring -----------------------------------------------------------------------------

    async def _rescore_all(self, conn: asyncpg.Connection, work: dict[Key, _Work]) -> list[tuple[str, bytes, bytes]]:
        """Re-score every patient the batch touched from its persisted engine state.

        One query per kind for the whole batch: the patients with their stored state, snapshots
        and trajectory; the newest event time of patients without a stored one; the re-aggregated
        days; the stored days that rewinds and re-folds replay. Per patient (`_plan`): new days
        after the state's last day are stepped onto it; a late or changed day rewinds to the
        snapshot before it and replays the stored days from there; a patient without a usable
        state (none yet, another engine or profile version, re-enrolled, or a change older than
        every snapshot) is re-folded from its whole stored series.

        Each changed local day before the final one is then assessed as of its newest observation,
        in event-time order (its state comes from the replay, nothing is re-folded), and the
        patient once more as of its newest event time. The published sequence is independent of
        batching: a red flag in the middle of a backfilled week reaches alerts exactly as it would
        have live. The final trajectory, the new state and its snapshots are written in the
        caller's transaction, one statement per table. Patients not enrolled yet are skipped
        (their events are held).
        """
        keys = [k for k, w in work.items() if w.dates or w.full]
        if not keys:
            return []
        # Serialise re-scoring per patient (a zombie consumer after a rebalance must not overwrite the
        # state another one just advanced): transaction-scoped locks, taken in one order.
        await conn.execute(
            """SELECT count(pg_advisory_xact_lock($3::int, h)) FROM (
                   SELECT DISTINCT hashtext(k.t || '/' || k.pid) AS h FROM unnest($1::text[], $2::text[]) AS k(t, pid)
                   ORDER BY 1) x""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            STATE_LOCK_CLASS,
        )
        rows = await conn.fetch(
            """SELECT p.tenant_id, p.patient_id, p.profile, t.state AS prev, t.data->'days' AS prev_days,
                      s.state AS engine_state, s.snapshots, s.snapshot_dates,
                      s.snapshot_checkins, s.as_of AS stored_as_of, s.last_checkin_at AS state_checkin
               FROM scoring.patients p
               JOIN unnest($1::text[], $2::text[]) AS k(t, pid) ON p.tenant_id = k.t AND p.patient_id = k.pid
               LEFT JOIN scoring.trajectories t ON t.tenant_id = p.tenant_id AND t.patient_id = p.patient_id
               LEFT JOIN scoring.engine_states s ON s.tenant_id = p.tenant_id AND s.patient_id = p.patient_id
               WHERE p.profile IS NOT NULL""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        found: dict[Key, asyncpg.Record] = {(r["tenant_id"], r["patient_id"]): r for r in rows}
        as_of: dict[Key, datetime] = {}
        scan: list[Key] = []
        for k, r in found.items():
            w = work[k]
            if w.full or r["stored_as_of"] is None:
                scan.append(k)
            else:
                as_of[k] = max(r["stored_as_of"], w.newest) if w.newest is not None else r["stored_as_of"]
        if scan:
            as_of.update(await self._newest_event_times(conn, scan))
        full = [k for k in as_of if work[k].full]
        if full:
            for r in await conn.fetch(
                """SELECT DISTINCT x.tenant_id, x.patient_id, x.local_date FROM (
                       SELECT tenant_id, patient_id, local_date FROM scoring.checkins
                       UNION ALL SELECT tenant_id, patient_id, local_date FROM scoring.activity
                       UNION ALL SELECT tenant_id, patient_id, local_date FROM scoring.event_conflicts
                                 WHERE red_flags <> '{}') x
                   JOIN unnest($1::text[], $2::text[]) AS k(t, pid) ON x.tenant_id = k.t AND x.patient_id = k.pid
                   WHERE x.local_date IS NOT NULL""",
                [k[0] for k in full],
                [k[1] for k in full],
            ):
                work[(r["tenant_id"], r["patient_id"])].dates.add(r["local_date"])
        targets = {k: sorted(work[k].dates) for k in as_of if work[k].dates}
        if not targets:
            return []
        rebuilt = await self._rebuild_days(conn, targets)
        # The current clinical-profile overrides of the batch's tenants, one query.
        overrides = await profiles_store.current_overrides(conn, {k[0] for k in targets})
        plans = {k: _plan(found[k], work[k], targets[k], overrides.get(k[0])) for k in targets}
        stored = await self._days_after(conn, {k: p.read_after for k, p in plans.items() if p.read})
        out: list[tuple[str, bytes, bytes]] = []
        trajectories: list[tuple[object, ...]] = []
        states: list[tuple[object, ...]] = []
        for k, plan in plans.items():
            days = {**stored.get(k, {}), **rebuilt[k]}
            replay = [days[d] for d in sorted(days)]
            events, trajectory_row, state_row = self._replay(k, plan, replay, targets[k], as_of[k], work[k])
            out.extend(events)
            trajectories.append(trajectory_row)
            states.append(state_row)
        await conn.executemany(
            """INSERT INTO scoring.trajectories (tenant_id, patient_id, state, as_of, data, signals, last_checkin_at,
                                                 engine_version, profile_version, updated_at)
               VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7, $8, $9, now())
               ON CONFLICT (tenant_id, patient_id) DO UPDATE SET state = EXCLUDED.state, as_of = EXCLUDED.as_of,
                 data = EXCLUDED.data, signals = EXCLUDED.signals, last_checkin_at = EXCLUDED.last_checkin_at,
                 engine_version = EXCLUDED.engine_version, profile_version = EXCLUDED.profile_version,
                 updated_at = now()""",
            trajectories,
        )
        await conn.executemany(
            """INSERT INTO scoring.engine_states (tenant_id, patient_id, engine_version, profile_version, last_date,
                                                  as_of, last_checkin_at, state, snapshots, snapshot_dates,
                                                  snapshot_checkins, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9, $10, $11, now())
               ON CONFLICT (tenant_id, patient_id) DO UPDATE SET engine_version = EXCLUDED.engine_version,
                 profile_version = EXCLUDED.profile_version, last_date = EXCLUDED.last_date,
                 as_of = EXCLUDED.as_of, last_checkin_at = EXCLUDED.last_checkin_at, state = EXCLUDED.state,
                 snapshots = EXCLUDED.snapshots, snapshot_dates = EXCLUDED.snapshot_dates,
                 snapshot_checkins = EXCLUDED.snapshot_checkins, updated_at = now()""",
            states,
        )
        return out

    def _replay(
        self,
        key: Key,
        plan: _Plan,
        replay: list[DayRecord],
        changed: list[date],
        as_of: datetime,
        w: _Work,
    ) -> tuple[list[tuple[str, bytes, bytes]], tuple[object, ...], tuple[object, ...]]:
        """Pure part of re-scoring one patient: fold `replay` (the stored days after the plan's base,
        sorted) onto the base, assess each changed day and the final state. Returns the events to
        publish, the trajectories row and the engine_states row."""
        tenant, pid = key
        eng = plan.engine
        final_day = daily.local_day(as_of, eng.patient.tz)
        folded = eng.fold_states(plan.base, replay)
        metrics.SCORING_RESCORES.labels(plan.path).inc()
        metrics.SCORING_DAYS_FOLDED.labels(plan.path).inc(len(replay))
        by_date: dict[date, tuple[EngineState, DayRecord, datetime | None]] = {}
        checkin = plan.base_checkin
        for s, rec in zip(folded, replay, strict=True):
            if rec.last_recorded_at is not None and (checkin is None or rec.last_recorded_at > checkin):
                checkin = rec.last_recorded_at
            by_date[rec.date] = (s, rec, checkin)
        prev: str | None = plan.prev_state
        out: list[tuple[str, bytes, bytes]] = []
        points = [d for d in changed if d < final_day and d in by_date][-MAX_DAY_EVENTS:]
        for point in points:
            s, rec, point_checkin = by_date[point]
            # A day may hold only a conflicting version's red flags (no stored check-in or sample).
            point_as_of = max(
                t
                for t in (rec.last_recorded_at, rec.last_sample_end, *(o.recorded_at for o in rec.red_flag_obs))
                if t is not None
            )
            a = eng.assess(s, point_as_of)
            out.append(
                self._event(
                    tenant, pid, a, series.to_trajectory(pid, a, []), prev, series.day_trigger(rec), point_checkin
                )
            )
            prev = a.state.value
        final = folded[-1] if folded else plan.base
        assessment = eng.assess(final, as_of)
        trajectory = series.to_trajectory(pid, assessment, [])
        trigger = w.trigger or (series.day_trigger(replay[-1]) if replay else None)
        out.append(self._event(tenant, pid, assessment, trajectory, prev, trigger, checkin))
        data = trajectory.model_dump(mode="json")
        if plan.prev_days is None:
            data["days"] = [d.model_dump(mode="json") for d in series.to_trajectory(pid, assessment, replay).days]
        else:
            data["days"] = series.merge_api_days(plan.prev_days, replay, assessment.day_index)
        trajectory_row = (
            tenant,
            pid,
            assessment.state.value,
            assessment.as_of,
            json.dumps(data),
            json.dumps([sig.model_dump(mode="json") for sig in assessment.signals]),
            checkin,
            assessment.engine_version,
            assessment.profile_version,
        )
        snapshots = _merge_snapshots(plan.snapshots, [(s, c) for s, _, c in by_date.values()])
        state_row = (
            tenant,
            pid,
            final.engine_version,
            final.profile_version,
            final.last_date,
            as_of,
            checkin,
            to_json_text(final),
            [s.dump() for s in snapshots[:-1]],
            [s.last_date for s in snapshots[:-1]],
            [s.checkin for s in snapshots[:-1]],
        )
        return out, trajectory_row, state_row

    async def _newest_event_times(self, conn: asyncpg.Connection, keys: list[Key]) -> dict[Key, datetime]:
        """The newest event time of each patient's stored observations (red-flag conflicting versions
        included), by scanning them: for patients without a stored one, or re-enrolled."""
        rows = await conn.fetch(
            """SELECT k.t AS tenant_id, k.pid AS patient_id,
                      greatest((SELECT max(recorded_at) FROM scoring.checkins c
                                WHERE c.tenant_id = k.t AND c.patient_id = k.pid),
                               (SELECT max(end_at) FROM scoring.activity a
                                WHERE a.tenant_id = k.t AND a.patient_id = k.pid),
                               (SELECT max(recorded_at) FROM scoring.event_conflicts e
                                WHERE e.tenant_id = k.t AND e.patient_id = k.pid
                                  AND e.red_flags <> '{}')) AS as_of
               FROM unnest($1::text[], $2::text[]) AS k(t, pid)""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["tenant_id"], r["patient_id"]): r["as_of"] for r in rows if r["as_of"] is not None}

    async def _days_after(
        self, conn: asyncpg.Connection, after: dict[Key, date | None]
    ) -> dict[Key, dict[date, DayRecord]]:
        """Each patient's stored days after its date (all of them for None), one query."""
        if not after:
            return {}
        keys = list(after)
        rows = await conn.fetch(
            """SELECT d.tenant_id, d.patient_id, d.data FROM scoring.daily d
               JOIN unnest($1::text[], $2::text[], $3::date[]) AS k(t, pid, after)
                 ON d.tenant_id = k.t AND d.patient_id = k.pid
               WHERE k.after IS NULL OR d.day > k.after""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [after[k] for k in keys],
        )
        out: dict[Key, dict[date, DayRecord]] = defaultdict(dict)
        for r in rows:
            rec = day_from_json(_json_value(r["data"]))
            out[(r["tenant_id"], r["patient_id"])][rec.date] = rec
        return out

    async def _rebuild_days(
        self, conn: asyncpg.Connection, targets: dict[Key, list[date]]
    ) -> dict[Key, dict[date, DayRecord]]:
        """Re-aggregate the given local days of each patient from its stored observations, store
        them in scoring.daily and return them.

        Memory is bounded by the days, not by the check-ins they hold: the check-ins (without their
        notes, which scoring never reads) are streamed in `REBUILD_FETCH` rows at a time, ordered by
        day, and each day is aggregated as soon as its last check-in has been read. Must run inside
        the caller's transaction (the cursor needs one)."""
        triples = sorted({(k[0], k[1], d) for k, ds in targets.items() for d in ds})
        cols = ([t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples])
        a_rows = await conn.fetch(
            """SELECT a.tenant_id, a.patient_id, a.local_date, a.event_id, a.type, a.start_at, a.end_at, a.value,
                      a.device_id, a.received_at
               FROM scoring.activity a
               JOIN unnest($1::text[], $2::text[], $3::date[]) AS k(t, pid, d)
                 ON a.tenant_id = k.t AND a.patient_id = k.pid AND a.local_date = k.d""",
            *cols,
        )
        f_rows = await conn.fetch(
            """SELECT e.tenant_id, e.patient_id, e.local_date, e.event_id, e.recorded_at, e.received_at, e.red_flags
               FROM scoring.event_conflicts e
               JOIN unnest($1::text[], $2::text[], $3::date[]) AS k(t, pid, d)
                 ON e.tenant_id = k.t AND e.patient_id = k.pid AND e.local_date = k.d
               WHERE e.red_flags <> '{}'""",
            *cols,
        )
        by_a: dict[tuple[str, str, date], list[ActivityObs]] = defaultdict(list)
        by_f: dict[tuple[str, str, date], list[RedFlagObs]] = defaultdict(list)
        for r in f_rows:
            by_f[(r["tenant_id"], r["patient_id"], r["local_date"])].append(
                RedFlagObs(str(r["event_id"]), r["recorded_at"], r["received_at"], tuple(r["red_flags"]))
            )
        for r in a_rows:
            by_a[(r["tenant_id"], r["patient_id"], r["local_date"])].append(
                ActivityObs(
                    event_id=str(r["event_id"]),
                    type=r["type"],
                    start=r["start_at"],
                    end=r["end_at"],
                    value=r["value"],
                    device_id=r["device_id"],
                    received_at=r["received_at"],
                )
            )
        out: dict[Key, dict[date, DayRecord]] = defaultdict(dict)
        rows: list[tuple[str, str, date, str]] = []

        def aggregate(t: str, p: str, d: date, checkins: list[CheckinObs]) -> None:
            rec = daily.aggregate_day(d, checkins, by_a.pop((t, p, d), []), by_f.pop((t, p, d), []))
            out[(t, p)][d] = rec
            rows.append((t, p, d, json.dumps(day_to_json(rec))))

        current: tuple[str, str, date] | None = None
        checkins: list[CheckinObs] = []
        async for r in conn.cursor(
            """SELECT c.tenant_id, c.patient_id, c.local_date, c.received_at, c.data - 'notes' AS data
               FROM scoring.checkins c
               JOIN unnest($1::text[], $2::text[], $3::date[]) AS k(t, pid, d)
                 ON c.tenant_id = k.t AND c.patient_id = k.pid AND c.local_date = k.d
               ORDER BY c.tenant_id, c.patient_id, c.local_date""",
            *cols,
            prefetch=REBUILD_FETCH,
        ):
            day = (r["tenant_id"], r["patient_id"], r["local_date"])
            if day != current:
                if current is not None:
                    aggregate(*current, checkins)
                current, checkins = day, []
            checkins.append(checkin_obs(_json_value(r["data"]), r["received_at"]))
        if current is not None:
            aggregate(*current, checkins)
        for t, p, d in triples:
            if d not in out[(t, p)]:  # a day without check-ins: samples or conflicting red flags only
                aggregate(t, p, d, [])
        await conn.executemany(
            """INSERT INTO scoring.daily (tenant_id, patient_id, day, data, updated_at)
               VALUES ($1, $2, $3, $4::text::jsonb, now())
               ON CONFLICT (tenant_id, patient_id, day) DO UPDATE SET data = EXCLUDED.data, updated_at = now()""",
            rows,
        )
        return out

    def _event(
        self,
        tenant: str,
        pid: str,
        a: Assessment,
        trajectory: Trajectory,
        prev: str | None,
        trigger: TriggerRef | None,
        last_checkin: datetime | None,
    ) -> tuple[str, bytes, bytes]:
        changed = prev != a.state.value
        if changed:
            metrics.TRAJECTORY_STATES.labels(a.state.value).inc()
        event = TrajectoryUpdated(
            tenant_id=tenant,
            event_id=uuid.uuid4(),
            trajectory=trajectory if not trajectory.days else trajectory.model_copy(update={"days": []}),
            previous_state=TrajectoryState(prev) if prev else None,
            state_changed=changed,
            signals=list(a.signals),
            trigger=trigger,
            last_checkin_at=last_checkin,
            computed_at=self.clock(),
        )
        return Topics.trajectories, event_key(tenant, pid), event.model_dump_json().encode()


@dataclass(slots=True)
class _Snap:
    """One persisted snapshot: the state as stored (JSON text, parsed only when a rewind needs it)
    or as folded in this batch (serialised only if it is kept), with the newest check-in time as of it."""

    last_date: date
    checkin: datetime | None
    text: str | None = None
    state: EngineState | None = None

    def load(self) -> EngineState:
        """The state; raises StateVersionError for one this engine cannot read."""
        if self.state is None:
            try:
                data = json.loads(self.text or "")
            except ValueError as exc:
                raise StateVersionError("engine snapshot is not JSON") from exc
            self.state = from_json(data)
        return self.state

    def dump(self) -> str:
        if self.text is None:
            assert self.state is not None
            self.text = to_json_text(self.state)
        return self.text


@dataclass(slots=True)
class _Plan:
    """How one patient is re-scored: fold the stored days after `base` onto it.

    `read` says whether stored days after `read_after` (all for None) must be read first;
    `prev_days` are the stored trajectory's API days (None: rebuild them from the replay, which
    then covers the whole series).
    """

    engine: engine.Engine
    base: EngineState
    base_checkin: datetime | None
    snapshots: list[_Snap]
    prev_state: str | None
    prev_days: list[dict[str, typing.Any]] | None
    read: bool
    read_after: date | None
    path: str = "refold"  # forward, rewind or refold (the metrics label)


def _plan(row: asyncpg.Record, w: _Work, changed: list[date], override: ProfileOverride | None = None) -> _Plan:
    """Forward step, rewind to a snapshot, or whole re-fold (see `_rescore_all`), under the
    tenant's clinical-profile `override` (a changed override changes the profile version, so a
    stored state of the previous version is re-folded)."""
    patient = Patient.model_validate(_json_value(row["profile"]))
    profile = profile_from_patient(patient)
    eng = engine.Engine.of(profile, profiles_store.effective(profile, override))
    prev_state = row["prev"]
    refold = _Plan(eng, eng.initial(), None, [], prev_state, None, True, None)
    prev_days = _json_value(row["prev_days"])
    if w.full or row["engine_state"] is None or not isinstance(prev_days, list):
        return refold
    try:
        state = from_json(_json_value(row["engine_state"]))
        snaps = [
            _Snap(d, c, t)
            for t, d, c in zip(row["snapshots"], row["snapshot_dates"], row["snapshot_checkins"], strict=True)
        ]
    except (StateVersionError, KeyError, TypeError, ValueError, AttributeError):
        return refold
    if not eng.compatible(state) or state.last_date is None:
        return refold
    snaps.append(_Snap(state.last_date, row["state_checkin"], None, state))
    if changed[0] > state.last_date:
        return _Plan(eng, state, row["state_checkin"], snaps, prev_state, prev_days, False, None, "forward")
    snap = next((s for s in reversed(snaps) if s.last_date < changed[0]), None)
    if snap is None:
        return refold
    try:
        base = snap.load()
    except StateVersionError:
        return refold
    if not eng.compatible(base) or base.last_date != snap.last_date:
        return refold
    return _Plan(eng, base, snap.checkin, snaps, prev_state, prev_days, True, snap.last_date, "rewind")


def _merge_snapshots(old: list[_Snap], new: list[tuple[EngineState, datetime | None]]) -> list[_Snap]:
    """The snapshots after a replay: those before its first day, then its states, within
    SNAPSHOT_DAYS of the newest, thinned to one per SNAPSHOT_EVERY days (newest always kept)."""
    if not new:
        return old
    first = new[0][0].last_date
    assert first is not None
    merged = [s for s in old if s.last_date < first]
    merged.extend(_Snap(s.last_date, c, None, s) for s, c in new if s.last_date is not None)
    horizon = merged[-1].last_date.toordinal() - SNAPSHOT_DAYS
    merged = [s for s in merged if s.last_date.toordinal() > horizon]
    return [merged[i] for i in thin([s.last_date for s in merged], SNAPSHOT_EVERY)]


def _json_value(value: typing.Any) -> typing.Any:
    """A jsonb value as asyncpg returns it (decoded by the pool's codec, or text without one)."""
    return json.loads(value) if isinstance(value, str) else value


def _key(ev: CheckInRecorded | ActivityRecorded) -> Key:
    pid = ev.checkin.patient_id if isinstance(ev, CheckInRecorded) else ev.patient_id
    return ev.tenant_id, pid


def _json_list(value: typing.Any) -> list[typing.Any]:
    """A jsonb array as asyncpg returns it (decoded by the pool's codec, or text without one)."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, list) else []


def _updated_at(profile: dict[str, typing.Any]) -> datetime:
    return datetime.fromisoformat(profile["updated_at"])
