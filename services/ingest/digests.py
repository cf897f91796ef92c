"""The record of accepted events' content digests (`ingest.event_digests`): conflicting reposts are 409.

`DigestStore.claim` takes a request's (event_id, digest) pairs and answers, per pair, whether it is
new (this call recorded it), the same content as recorded before, or a conflict (the event id was
accepted before with other content). Claims are group-committed: a claim made while none is being
written is written at once; the claims that arrive while a write is in flight wait for it and are
then written together, one multi-row `INSERT ... ON CONFLICT DO NOTHING` statement per tenant and
kind (autocommit; no transaction is held while publishing), at most `FLUSH_MAX_PAIRS` pairs per
round. Under concurrent single-event posts this turns one statement and one commit per request into
one per round. Within a round an event id claimed by several requests is recorded for the first of
them; the others are judged against its digest, exactly as if they had come after it. A pair whose
competitor was being recorded by another process at the same moment is looked up again (at most
`CLAIM_ATTEMPTS` rounds). Within one request every occurrence of an event id is judged against the
digest on record, which for an id new to the record is that of its first occurrence. A claim
cancelled while it waits (the request's timeout) may still be recorded by its round, which is what
a cancellation after the statement meant before: an identical retry is `same` and is published.

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

import asyncio
import logging
from collections import defaultdict
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
FLUSH_MAX_PAIRS = 5_000  # per round of group-committed claims (one request's pairs are never split)
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


@dataclass(eq=False)
class _Waiter:
    """One claim waiting for its round: its pairs (first occurrence of each event id) and the
    future that receives (the digest on record per event id, the ids this claim recorded)."""

    tenant_id: str
    kind: str
    pending: dict[UUID, bytes]
    future: asyncio.Future[tuple[dict[UUID, bytes], set[UUID]]]


class DigestStore:
    """Claims of one process, group-committed (see the module doc). One writer task runs while
    claims are queued and ends when the queue is empty; it never outlives the pool's use."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._queue: list[_Waiter] = []
        self._writer: asyncio.Task[None] | None = None

    async def claim(self, tenant_id: str, kind: str, pairs: Sequence[tuple[UUID, bytes]]) -> Claim:
        """Record the new pairs and judge every pair (see the module doc). Raises on database errors
        (nothing is half-recorded: each statement is atomic)."""
        pending: dict[UUID, bytes] = {}
        for event_id, digest in pairs:
            pending.setdefault(event_id, digest)  # the first occurrence in the request is the one recorded
        if not pending:
            return Claim([])
        waiter = _Waiter(tenant_id, kind, pending, asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_rounds(), name="event-digest-writer")
        reference, recorded = await waiter.future
        inserted = [(e, d) for e, d in pending.items() if e in recorded]
        return Claim(judge(pairs, reference, recorded), inserted)

    async def _write_rounds(self) -> None:
        """Write queued claims round after round until the queue is empty; a round's failure goes
        to the claims of its tenant and kind, never to the writer."""
        while self._queue:
            take, size = 0, 0
            while take < len(self._queue) and (take == 0 or size + len(self._queue[take].pending) <= FLUSH_MAX_PAIRS):
                size += len(self._queue[take].pending)
                take += 1
            round_, self._queue = self._queue[:take], self._queue[take:]
            groups: dict[tuple[str, str], list[_Waiter]] = defaultdict(list)
            for w in round_:
                groups[(w.tenant_id, w.kind)].append(w)
            await asyncio.gather(*(self._write_group(t, k, ws) for (t, k), ws in groups.items()))

    async def _write_group(self, tenant_id: str, kind: str, waiters: list[_Waiter]) -> None:
        try:
            result = await self._record(tenant_id, kind, waiters)
        except Exception as exc:  # handed to every claim of the group (each answers 503)
            for w in waiters:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        for w, answer in zip(waiters, result, strict=True):
            if not w.future.done():  # a cancelled claim gets nothing
                w.future.set_result(answer)

    async def _record(
        self, tenant_id: str, kind: str, waiters: list[_Waiter]
    ) -> list[tuple[dict[UUID, bytes], set[UUID]]]:
        """One round of one tenant and kind: record the first claim of each event id, read back
        the digests on record, and answer each claim with its reference and what it recorded."""
        first: dict[UUID, bytes] = {}
        owner: dict[UUID, _Waiter] = {}
        for w in waiters:
            for event_id, digest in w.pending.items():
                if event_id not in first:
                    first[event_id] = digest
                    owner[event_id] = w
        reference: dict[UUID, bytes] = {}
        recorded: set[UUID] = set()
        todo = dict(first)
        for _ in range(CLAIM_ATTEMPTS):
            if not todo:
                break
            rows = await self.pool.fetch(_CLAIM_SQL, tenant_id, list(todo), list(todo.values()), kind)
            for r in rows:
                event_id = r["event_id"]
                if r["inserted"]:
                    reference[event_id] = todo[event_id]
                    recorded.add(event_id)
                elif r["stored"] is not None:
                    reference[event_id] = bytes(r["stored"])
                # else: another process recorded it after this statement's snapshot: ask again
            todo = {e: d for e, d in todo.items() if e not in reference}
        if todo:
            raise RuntimeError(f"{len(todo)} event digest(s) undecided after {CLAIM_ATTEMPTS} attempts")
        return [
            ({e: reference[e] for e in w.pending}, {e for e in w.pending if e in recorded and owner[e] is w})
            for w in waiters
        ]

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
