"""Scoring workloads of the benchmark: daily check-in series (in order or with late days), enrolments,
and prior history seeded straight through the scoring shell.

`seed_history` runs `ScoringProcessor.handle` in this process against the bench database, with an
outbox that publishes nothing: it only builds the stored state (check-ins, daily series, engine
state and trajectories) that the measured phase then extends through the broker and the running
scoring service. It blocks until every batch is committed.
"""

from __future__ import annotations

import random
import time
import typing
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import ConsumerRecord

from nervewatch.db import create_pool
from nervewatch.kafka import Decoded
from nervewatch.outbox import Outbox
from schemas.checkins import CheckIn
from schemas.events import CheckInRecorded, PatientUpserted, event_key
from schemas.patients import Patient, PatientIn, patient_from_input
from services.scoring.processor import ScoringProcessor
from tooling.bench.load import TENANT, checkin_dict, patient_body


def patient_event(patient_id: str, now: datetime) -> tuple[bytes, bytes]:
    """A PatientUpserted (key, value) for the bench tenant (the ingest enrolment payload)."""
    patient = _patient(patient_id, now)
    event = PatientUpserted(tenant_id=TENANT, patient=patient)
    return event_key(TENANT, patient_id), event.model_dump_json().encode()


def _patient(patient_id: str, now: datetime) -> Patient:
    return patient_from_input(PatientIn.model_validate_json(patient_body(patient_id)), now, now)


def series_events(
    patients: Sequence[str],
    days: int,
    end: datetime,
    *,
    late_fraction: float = 0.0,
    seed: int = 1,
) -> list[CheckInRecorded]:
    """One check-in per patient and day for `days` days ending the day before `end`, day by day
    (every patient's day k before any day k + 1). With `late_fraction`, that share of the events
    arrives 1-14 days late: after the events of a later day (the last day at the latest)."""
    rng = random.Random(seed)
    by_day: list[list[CheckInRecorded]] = [[] for _ in range(days)]
    seq = 0
    for k in range(days):
        for p in patients:
            recorded = end - timedelta(days=days - k, hours=rng.randint(0, 11), minutes=rng.randint(0, 59))
            checkin = CheckIn.model_validate(checkin_dict(p, recorded, seq=seq), context={"now": end})
            seq += 1
            ev = CheckInRecorded(tenant_id=TENANT, received_at=end, checkin=checkin)
            due = k
            if late_fraction and rng.random() < late_fraction:
                due = min(days - 1, k + rng.randint(1, 14))
            by_day[due].append(ev)
    return [ev for day in by_day for ev in day]


def records(events: Sequence[CheckInRecorded | PatientUpserted]) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for ev in events:
        pid = ev.checkin.patient_id if isinstance(ev, CheckInRecorded) else ev.patient.patient_id
        out.append((event_key(ev.tenant_id, pid), ev.model_dump_json().encode()))
    return out


class _NullOutbox:
    """An outbox that queues and publishes nothing (seeding builds state, it publishes no events)."""

    async def add(self, conn: asyncpg.Connection, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        return None

    async def drain(self, limit: int = 5000) -> int:
        return 0


async def seed_history(
    dsn: str, patients: Sequence[str], days: int, end: datetime, batch_size: int = 2000, *, enrol: bool = True
) -> tuple[int, float]:
    """Enrol `patients` and store `days` days of check-ins each (the series ends the day before
    `end`) through the scoring shell in this process, `batch_size` events per transaction.
    With `enrol` False the patients must be stored already. Returns (events, seconds)."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        proc = ScoringProcessor(pool, typing.cast(Outbox, _NullOutbox()))
        now = datetime.now(UTC)
        started = time.perf_counter()
        if enrol:
            await proc.handle([_decoded(PatientUpserted(tenant_id=TENANT, patient=_patient(p, now))) for p in patients])
        events = series_events(patients, days, end, seed=len(patients) * 1000 + days)
        for i in range(0, len(events), batch_size):
            await proc.handle([_decoded(e) for e in events[i : i + batch_size]])
        return len(events), time.perf_counter() - started
    finally:
        await pool.close()


def _decoded(ev: CheckInRecorded | PatientUpserted) -> Decoded[typing.Any]:
    record = ConsumerRecord(
        topic="seed",
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=None,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )
    return Decoded(record, ev)


def patient_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]
