"""Ingest's record of accepted events' digests against the real PostgreSQL (services/ingest/digests.py).

Claims decide new / same / conflict per tenant; concurrent claims of one new event id record it
once; a release forgets only what the claim recorded; the retention purge deletes old rows in
batches and leaves the rest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import cast

import asyncpg
import pytest

from nervewatch.db import create_pool
from services.ingest.digests import DigestStore, Outcome, purge_event_digests

pytestmark = pytest.mark.integration

X, Y = b"x" * 32, b"y" * 32


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, min_size=1, max_size=8)
    try:
        yield p
    finally:
        await p.close()


def tenant() -> str:
    return f"dg-{uuid.uuid4().hex[:8]}"


async def test_claims_decide_new_same_and_conflict_per_tenant(pool: asyncpg.Pool) -> None:
    store, t, other = DigestStore(pool), tenant(), tenant()
    a, b = uuid.uuid4(), uuid.uuid4()
    first = await store.claim(t, "checkin", [(a, X), (b, X), (a, X)])
    assert first.outcomes == [Outcome.new, Outcome.new, Outcome.same]
    assert sorted(first.inserted) == sorted([(a, X), (b, X)])
    again = await store.claim(t, "checkin", [(a, X), (b, Y), (b, X)])
    assert again.outcomes == [Outcome.same, Outcome.conflict, Outcome.same] and again.inserted == []
    # Another tenant's event ids are its own.
    assert (await store.claim(other, "checkin", [(b, Y)])).outcomes == [Outcome.new]


async def test_concurrent_claims_of_one_new_event_id_record_it_once(pool: asyncpg.Pool) -> None:
    store, t = DigestStore(pool), tenant()
    for _ in range(5):
        e = uuid.uuid4()
        claims = await asyncio.gather(*(store.claim(t, "sample", [(e, d)]) for d in (X, Y, X, Y, X, Y)))
        outcomes = [c.outcomes[0] for c in claims]
        assert outcomes.count(Outcome.new) == 1
        winner = (X, Y, X, Y, X, Y)[outcomes.index(Outcome.new)]
        losers = [(d, o) for d, o in zip((X, Y, X, Y, X, Y), outcomes, strict=True) if o is not Outcome.new]
        assert all(o is (Outcome.same if d == winner else Outcome.conflict) for d, o in losers)


async def test_release_forgets_only_what_the_claim_recorded(pool: asyncpg.Pool) -> None:
    store, t = DigestStore(pool), tenant()
    kept, fresh = uuid.uuid4(), uuid.uuid4()
    await store.claim(t, "checkin", [(kept, X)])
    claim = await store.claim(t, "checkin", [(kept, X), (fresh, X)])
    assert claim.inserted == [(fresh, X)]
    await store.release(t, claim.inserted)
    # The corrected retry of the released event is new, not a conflict; the earlier one stays.
    retry = await store.claim(t, "checkin", [(fresh, Y), (kept, Y)])
    assert retry.outcomes == [Outcome.new, Outcome.conflict]


async def test_purge_deletes_digests_older_than_the_retention_in_batches(pool: asyncpg.Pool) -> None:
    store, t = DigestStore(pool), tenant()
    old = [(uuid.uuid4(), X) for _ in range(25)]
    recent = [(uuid.uuid4(), X) for _ in range(5)]
    await store.claim(t, "checkin", old + recent)
    await pool.execute(
        "UPDATE ingest.event_digests SET first_seen = now() - interval '40 days' "
        "WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])",
        t,
        [e for e, _ in old],
    )
    deleted = await purge_event_digests(pool, timedelta(days=35), batch=10, pause_s=0)
    assert deleted >= 25  # other tests' rows are recent: only these are old
    left = await pool.fetch("SELECT event_id FROM ingest.event_digests WHERE tenant_id = $1", t)
    assert {r["event_id"] for r in left} == {e for e, _ in recent}
    # After the purge an old event id is new again (scoring catches a conflict from then on).
    assert (await store.claim(t, "checkin", [(old[0][0], Y)])).outcomes == [Outcome.new]


async def test_one_round_judges_claims_of_several_tenants_and_kinds_apart(pool: asyncpg.Pool) -> None:
    store, t, other = DigestStore(pool), tenant(), tenant()
    e, sample = uuid.uuid4(), uuid.uuid4()
    # Gathered, these are written in one round: one statement per tenant and kind.
    claims = await asyncio.gather(
        store.claim(t, "checkin", [(e, X)]),
        store.claim(t, "sample", [(sample, Y)]),
        store.claim(other, "checkin", [(e, Y)]),
        store.claim(t, "checkin", [(e, Y)]),
        store.claim(t, "checkin", [(e, X), (e, Y)]),
    )
    assert [c.outcomes for c in claims] == [
        [Outcome.new],
        [Outcome.new],
        [Outcome.new],
        [Outcome.conflict],
        [Outcome.same, Outcome.conflict],
    ]
    assert [c.inserted for c in claims] == [[(e, X)], [(sample, Y)], [(e, Y)], [], []]
    # Event ids are the tenant's, whatever the kind: the same id as a check-in and a sample in one
    # round is recorded once (the two statements race in PostgreSQL and the loser reads it back).
    shared = uuid.uuid4()
    both = await asyncio.gather(store.claim(t, "checkin", [(shared, X)]), store.claim(t, "sample", [(shared, Y)]))
    assert sorted(c.outcomes[0].value for c in both) == ["conflict", "new"]


async def test_two_processes_racing_on_new_event_ids_record_each_once(pool: asyncpg.Pool) -> None:
    # Two stores are two ingest replicas: their rounds race in PostgreSQL, not in Python.
    a, b, t = DigestStore(pool), DigestStore(pool), tenant()
    ids = [uuid.uuid4() for _ in range(50)]
    claims = await asyncio.gather(
        *(store.claim(t, "checkin", [(e, X if store is a else Y)]) for e in ids for store in (a, b))
    )
    for i in range(len(ids)):
        first, second = claims[2 * i].outcomes[0], claims[2 * i + 1].outcomes[0]
        assert sorted((first.value, second.value)) == ["conflict", "new"], (first, second)


async def test_a_failed_round_fails_its_claims_and_the_next_round_works(pool: asyncpg.Pool) -> None:
    store, t = DigestStore(pool), tenant()
    good = uuid.uuid4()
    with pytest.raises(asyncpg.NotNullViolationError):  # the round's statement fails (kind is NOT NULL)
        await store.claim(t, cast(str, None), [(good, X)])
    assert (await store.claim(t, "checkin", [(good, X)])).outcomes == [Outcome.new]
