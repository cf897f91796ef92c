"""Ingest's patient registry (schema `ingest`) with a bounded cache of what ingest needs per patient.

`upsert` publishes the patient event inside the database transaction: the row commits only
after the broker acknowledged the event, so every stored patient is on the log.

`facts` answers, for a set of patient ids, which are enrolled by the tenant and their onset date
and time zone (the plausibility floor of their event times), with one query for the ids not cached.
Cached entries are positives only (a patient is never deleted) and are refreshed after
`FACTS_TTL_S`, so an onset date changed through another ingest replica applies within that time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from nervewatch.kafka import produce
from schemas.events import PatientUpserted, Topics, event_key
from schemas.patients import Patient, PatientIn

KNOWN_CACHE_MAX = 200_000
FACTS_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What ingest needs to know about an enrolled patient to judge an event."""

    onset_date: date | None
    timezone: str | None


def _facts_of(onset: str | None, tz: str | None) -> PatientFacts:
    """From the stored enrolment's JSON values (validated when stored)."""
    try:
        onset_date = date.fromisoformat(onset) if onset else None
    except ValueError:
        onset_date = None
    return PatientFacts(onset_date, tz)


class PatientRegistry:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
        self.pool = pool
        self.producer = producer
        self._known: OrderedDict[tuple[str, str], tuple[float, PatientFacts]] = OrderedDict()

    def _remember(self, key: tuple[str, str], facts: PatientFacts) -> None:
        self._known[key] = (time.monotonic(), facts)
        self._known.move_to_end(key)
        if len(self._known) > KNOWN_CACHE_MAX:
            self._known.popitem(last=False)

    async def upsert(self, tenant_id: str, data: PatientIn) -> tuple[Patient, bool]:
        """Store and publish the patient; returns (patient, created). Raises if the log refuses it."""
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO ingest.patients (tenant_id, patient_id, data, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $4)
                   ON CONFLICT (tenant_id, patient_id) DO UPDATE SET data = EXCLUDED.data, updated_at = $4
                   RETURNING created_at, updated_at, (xmax = 0) AS created""",
                tenant_id,
                data.patient_id,
                data.model_dump(mode="json"),
                now,
            )
            assert row is not None
            patient = Patient(**data.model_dump(), created_at=row["created_at"], updated_at=row["updated_at"])
            event = PatientUpserted(tenant_id=tenant_id, patient=patient)
            await produce(
                self.producer,
                Topics.patients,
                event_key(tenant_id, data.patient_id),
                event.model_dump_json().encode(),
            )
        self._remember((tenant_id, data.patient_id), PatientFacts(data.onset_date, data.timezone))
        return patient, bool(row["created"])

    async def get(self, tenant_id: str, patient_id: str) -> Patient | None:
        row = await self.pool.fetchrow(
            "SELECT data, created_at, updated_at FROM ingest.patients WHERE tenant_id = $1 AND patient_id = $2",
            tenant_id,
            patient_id,
        )
        if row is None:
            return None
        return Patient(**row["data"], created_at=row["created_at"], updated_at=row["updated_at"])

    async def facts(self, tenant_id: str, patient_ids: Iterable[str]) -> dict[str, PatientFacts]:
        """The patients of `patient_ids` enrolled by this tenant, with their facts; absent ids are
        not enrolled. At most one query (for the ids not cached or cached too long ago)."""
        wanted = set(patient_ids)
        found: dict[str, PatientFacts] = {}
        fresh_after = time.monotonic() - FACTS_TTL_S
        for p in wanted:
            hit = self._known.get((tenant_id, p))
            if hit is not None and hit[0] >= fresh_after:
                found[p] = hit[1]
        missing = wanted - found.keys()
        if missing:
            rows = await self.pool.fetch(
                """SELECT patient_id, data->>'onset_date' AS onset_date, data->>'timezone' AS timezone
                   FROM ingest.patients WHERE tenant_id = $1 AND patient_id = ANY($2::text[])""",
                tenant_id,
                list(missing),
            )
            for r in rows:
                facts = _facts_of(r["onset_date"], r["timezone"])
                found[r["patient_id"]] = facts
                self._remember((tenant_id, r["patient_id"]), facts)
        return found

    async def known(self, tenant_id: str, patient_ids: Iterable[str]) -> set[str]:
        """The subset of `patient_ids` enrolled by this tenant."""
        return set(await self.facts(tenant_id, patient_ids))
