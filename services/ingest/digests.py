"""The record of accepted events' content digests (`ingest.event_digests`): conflicting reposts are 409.

`DigestStore.claim` takes a request's (event_id, digest) pairs and answers, per pair, whether it is
new (this call recorded it), the same content as recorded before, or a conflict (the event id was
accepted before with other content). It costs one multi-row `INSERT ... ON CONFLICT DO NOTHING`
statement per request (autocommit; no transaction is held while publishing). A pair whose
competitor was being recorded by a concurrent request at the same moment is looked up again (at
most `CLAIM_ATTEMPTS` rounds). Within one request every occurrence of an event id is judged
against the digest on record, which for an id new to the record is that of its first occurrence.

When publishing then fails the handler calls `release` with what this call inserted, so that a
retry with corrected content is not refused as a conflict.

Bounded: `purge_event_digests` deletes rows whose `first_seen` is older than the retention
(`NERVEWATCH_EVENT_DIGEST_RETENTION_DAYS`), `PURGE_BATCH` rows per short transaction under a
transaction-level advisory lock taken without waiting (several replicas: one purges, the others skip
the round), as the access-log purge does; the ingest app runs it in `nervewatch.retention.retention_loop`
shortly after start and then every `PURGE_INTERVAL_S`. A repost after the retention is accepted here and caught by
scoring (`scoring.event_conflicts`, `GET /v1/conflicts`), which never hides a red flag. Metrics carry no
patient or tenant label; logs name counts and error classes only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from uuid import UUID

import asyncpg

from nervewatch.metrics import DIGESTS_PURGED, DIGESTS_RELEASED
from nervewatch.retention import purge_expired

log = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 3
PURGE_BATCH = 10_000
PURGE_INTERVAL_S = 3600.0
PURGE_FIRST_DELAY_S = 60.0
PURGE_PAUSE_S = 0.1
PURGE_LOCK_KEY = 0x4E57_4544  # "NWED": advisory lock of the digest purge (transaction level)


class Outcome(Enum):
    new = "new"
    same = "same"
    conflict = "conflict"


@dataclass
class Claim:
    """Per input pair its outcome (same order as the input), and the pairs this call recorded."""

    outcomes: list[Outcome]
    inserted: list[tuple[UUID, bytes]] = field(default_factory=list)

    @property
    def conflicts(self) -> list[int]:
        return [i for i, o in enumerate(self.outcomes) if o is Outcome.conflict]


def judge(pairs: Sequence[tuple[UUID, bytes]], reference: dict[UUID, bytes], inserted: set[UUID]) -> list[Outcome]:
    """Pure: the outcome of each pair given, per event id, the digest on record (`reference`) and
    whether this request recorded it (`inserted`, from its first occurrence in the request).

    The first occurrence of an inserted id is `new`; every other pair is `same` when its digest is
    the one on record, else `conflict`."""
    out: list[Outcome] = []
    claimed: set[UUID] = set()
    for event_id, digest in pairs:
        if event_id in inserted and event_id not in claimed:
            claimed.add(event_id)
            out.append(Outcome.new)
        else:
            out.append(Outcome.same if reference[event_id] == digest else Outcome.conflict)
    return out


_CLAIM_SQL = """
WITH input AS (
    SELECT * FROM unnest($2::uuid[], $3::bytea[]) AS i(event_id, digest)
), ins AS (
    INSERT INTO ingest.event_digests (tenant_id, event_id, kind, digest)
    SELECT $1, event_id, $4, digest FROM input
    ON CONFLICT (tenant_id, event_id) DO NOTHING
    RETURNING event_id
)
SELECT i.event_id, ins.event_id IS NOT NULL AS inserted, d.digest AS stored
FROM input i
LEFT JOIN ins ON ins.event_id = i.event_id
LEFT JOIN ingest.event_digests d ON d.tenant_id = $1 AND d.event_id = i.event_id
"""


class DigestStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def claim(self, tenant_id: str, kind: str, pairs: Sequence[tuple[UUID, bytes]]) -> Claim:
        """Record the new pairs and judge every pair (see the module doc). Raises on database errors
        (nothing is half-recorded: the statement is atomic)."""
        pending: dict[UUID, bytes] = {}
        for event_id, digest in pairs:
            pending.setdefault(event_id, digest)  # the first occurrence in the request is the one recorded
        reference: dict[UUID, bytes] = {}
        inserted: list[tuple[UUID, bytes]] = []
        for _ in range(CLAIM_ATTEMPTS):
            if not pending:
                break
            rows = await self.pool.fetch(_CLAIM_SQL, tenant_id, list(pending), list(pending.values()), kind)
            for r in rows:
                event_id = r["event_id"]
                if r["inserted"]:
                    reference[event_id] = pending[event_id]
                    inserted.append((event_id, pending[event_id]))
                elif r["stored"] is not None:
                    reference[event_id] = bytes(r["stored"])
                # else: a concurrent request recorded it after this statement's snapshot: ask again
            pending = {e: d for e, d in pending.items() if e not in reference}
        if pending:
            raise RuntimeError(f"{len(pending)} event digest(s) undecided after {CLAIM_ATTEMPTS} attempts")
        return Claim(judge(pairs, reference, {e for e, _ in inserted}), inserted)

    async def release(self, tenant_id: str, inserted: Sequence[tuple[UUID, bytes]]) -> None:
        """Delete the pairs a claim recorded (publishing failed). Best effort: a failure is logged
        (error class only); the digest then stays until the purge, and a corrected retry within the
        retention is refused as a conflict, never silently accepted."""
        if not inserted:
            return
        try:
            status = await self.pool.execute(
                """DELETE FROM ingest.event_digests d
                   USING unnest($2::uuid[], $3::bytea[]) AS x(event_id, digest)
                   WHERE d.tenant_id = $1 AND d.event_id = x.event_id AND d.digest = x.digest""",
                tenant_id,
                [e for e, _ in inserted],
                [d for _, d in inserted],
            )
        except Exception as exc:
            log.warning("event digest release failed", extra={"error": type(exc).__name__, "count": len(inserted)})
            return
        DIGESTS_RELEASED.inc(int(status.rsplit(" ", 1)[-1]))


async def purge_event_digests(
    pool: asyncpg.Pool, retention: timedelta, *, batch: int = PURGE_BATCH, pause_s: float = PURGE_PAUSE_S
) -> int:
    """Delete digests first seen before now - `retention` (database clock), `batch` rows per
    transaction. Returns how many this call deleted; 0 also when another process holds the lock."""
    return await purge_expired(
        pool,
        lock_key=PURGE_LOCK_KEY,
        delete_sql="""WITH doomed AS (
                   SELECT tenant_id, event_id FROM ingest.event_digests WHERE first_seen < $1
                   ORDER BY first_seen LIMIT $2 FOR UPDATE SKIP LOCKED
               ), gone AS (
                   DELETE FROM ingest.event_digests d USING doomed
                   WHERE d.tenant_id = doomed.tenant_id AND d.event_id = doomed.event_id RETURNING 1
               )
               SELECT count(*) FROM gone""",
        retention=retention,
        batch=batch,
        pause_s=pause_s,
        purged=DIGESTS_PURGED,
    )
