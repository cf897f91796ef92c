"""Ingest's patient registry (schema `ingest`) with a bounded cache of known patients.

`upsert` publishes the patient event inside the database transaction: the row commits only
after the broker acknowledged the event, so every stored patient is on the log.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from nervewatch.kafka import produce
from schemas.events import PatientUpserted, Topics, event_key
from schemas.patients import Patient, PatientIn

KNOWN_CACHE_MAX = 200_000


class PatientRegistry:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
        self.pool = pool
        self.producer = producer
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()

    def _remember(self, key: tuple[str, str]) -> None:
        self._known[key] = None
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
        self._remember((tenant_id, data.patient_id))
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

    async def known(self, tenant_id: str, patient_ids: Iterable[str]) -> set[str]:
        """The subset of `patient_ids` enrolled by this tenant (cached positives)."""
        wanted = set(patient_ids)
        found = {p for p in wanted if (tenant_id, p) in self._known}
        missing = wanted - found
        if missing:
            rows = await self.pool.fetch(
                "SELECT patient_id FROM ingest.patients WHERE tenant_id = $1 AND patient_id = ANY($2::text[])",
                tenant_id,
                list(missing),
            )
            for r in rows:
                found.add(r["patient_id"])
                self._remember((tenant_id, r["patient_id"]))
        return found
