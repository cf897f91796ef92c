"""Re-aggregating days streams their check-ins: the days are the same whatever the fetch size.

`ScoringProcessor` runs in this process against the session's database (no broker: the outbox is
read back, not published). Days holding many check-ins each, plus one day with only a wearable
sample, are stored with a fetch size of 2 rows (every day spans several fetches, and fetches end
in the middle of days) and again, for another patient, with the default fetch size; the stored
daily rows must be equal, and hold every check-in, the red flag and the day-long maxima.
"""

from __future__ import annotations

import json
import typing
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from nervewatch.db import create_pool
from nervewatch.kafka import Decoded
from nervewatch.outbox import Outbox
from schemas.checkins import CheckIn
from schemas.events import ActivityRecorded, CheckInRecorded, PatientUpserted
from schemas.patients import PatientIn, patient_from_input
from services.scoring import processor as scoring_processor
from services.scoring.processor import ScoringProcessor

pytestmark = pytest.mark.integration

TENANT = "rebuild-clinic"
#: Fields naming the patient's own event ids (they differ between the two patients by construction).
_IDS = ("last_event_id", "red_flag_event_id", "spreading_event_id", "red_flag_obs")
NOW = datetime.now(UTC).replace(microsecond=0)


def _decoded(value: object) -> Decoded[typing.Any]:
    record = ConsumerRecord("t", 0, 0, 0, 0, None, None, None, 0, 0, ())
    return Decoded(record, value)


def _events(pid: str) -> list[object]:
    patient = patient_from_input(
        PatientIn.model_validate(
            {
                "patient_id": pid,
                "condition": "carpal_tunnel",
                "side": "right",
                "treatment": "conservative",
                "timezone": "UTC",
            }
        ),
        NOW,
        NOW,
    )
    out: list[object] = [PatientUpserted(tenant_id=TENANT, patient=patient)]
    for day in range(3):
        base = NOW - timedelta(days=5 - day)
        for k in range(5):
            checkin = CheckIn.model_validate(
                {
                    "event_id": str(uuid.uuid4()),
                    "patient_id": pid,
                    "recorded_at": (base.replace(hour=6) + timedelta(hours=2 * k)).isoformat(),
                    "pain": {"current": (day + k) % 8, "worst_24h": 9},
                    "tingling": k,
                    "numbness": 2,
                    "red_flags": ["saddle_anesthesia"] if (day, k) == (1, 3) else [],
                    "notes": "free text that scoring never reads",
                },
                context={"now": NOW},
            )
            out.append(CheckInRecorded(tenant_id=TENANT, received_at=NOW, checkin=checkin))
    sample_day = (NOW - timedelta(days=1)).replace(hour=10)
    out.append(
        ActivityRecorded.model_validate(
            {
                "tenant_id": TENANT,
                "patient_id": pid,
                "received_at": NOW.isoformat(),
                "device": {"id": "watch-1", "kind": "wrist"},
                "samples": [
                    {
                        "event_id": str(uuid.uuid4()),
                        "type": "steps",
                        "start": sample_day.isoformat(),
                        "end": (sample_day + timedelta(hours=1)).isoformat(),
                        "value": 1200,
                    }
                ],
            }
        )
    )
    return out


class _CountingOutbox:
    def __init__(self) -> None:
        self.records = 0

    async def add(self, conn: asyncpg.Connection, records: typing.Sequence[tuple[str, bytes, bytes]]) -> None:
        self.records += len(records)

    async def drain(self, limit: int = 5000) -> int:
        return 0


async def _days(conn: asyncpg.Connection, pid: str) -> dict[date, dict[str, typing.Any]]:
    rows = await conn.fetch("SELECT day, data FROM scoring.daily WHERE tenant_id = $1 AND patient_id = $2", TENANT, pid)
    out = {}
    for r in rows:
        data = r["data"] if isinstance(r["data"], dict) else json.loads(r["data"])
        out[r["day"]] = {k: v for k, v in data.items() if k not in _IDS}
    return out


async def test_streamed_rebuild_equals_one_read(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        proc = ScoringProcessor(pool, typing.cast(Outbox, _CountingOutbox()))
        small, default = f"small-{uuid.uuid4().hex[:8]}", f"default-{uuid.uuid4().hex[:8]}"
        for pid, fetch in ((small, 2), (default, scoring_processor.REBUILD_FETCH)):
            monkeypatch.setattr(scoring_processor, "REBUILD_FETCH", fetch)
            events = _events(pid)
            await proc.handle([_decoded(events[0])])
            await proc.handle([_decoded(e) for e in events[1:]])
        async with pool.acquire() as conn:
            a, b = await _days(conn, small), await _days(conn, default)
        assert len(a) == 4  # three check-in days and the sample-only day
        assert [d["checkins"] for _, d in sorted(a.items())] == [5, 5, 5, 0]
        assert a == b
        flagged = [d for d in a.values() if d.get("red_flags")]
        assert len(flagged) == 1 and flagged[0]["red_flags"] == ["saddle_anesthesia"]
        assert all(d.get("pain_worst") == 9 for d in a.values() if d["checkins"])
    finally:
        await pool.close()
