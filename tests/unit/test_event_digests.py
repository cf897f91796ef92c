"""Content digests (schemas/digests.py) and the pure parts of ingest's conflict check (services/ingest/digests.py).

- Encodings of one observation digest alike (offsets, 17 vs 17.0, absent vs null vs default, the
  order of set-valued lists); any other difference, free text included, digests differently.
- `judge`: every occurrence of an event id in a request is judged against the digest on record.
- A failed publish releases the digests the request recorded (the 503 is not followed by a false 409).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nervewatch.problems import ProblemError
from nervewatch.settings import Settings
from schemas.activity import ActivitySample
from schemas.checkins import CheckIn
from schemas.common import RedFlag
from schemas.digests import checkin_digest, sample_digest
from services.ingest.digests import Claim, DigestStore, Outcome, judge
from services.ingest.handlers import IngestHandlers
from services.ingest.patients import PatientRegistry

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
CTX = {"now": NOW}
FAST = settings(max_examples=50, derandomize=True, deadline=None, database=None)
BASE: dict[str, Any] = {
    "event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e90",
    "patient_id": "pt-0042",
    "recorded_at": "2026-11-20T08:30:00-05:00",
    "pain": {"current": 4, "quality": ["burning", "tingling"]},
    "grip_strength_kg": 17,
    "red_flags": ["fever", "foot_drop"],
    "notes": "slept badly",
}
SAMPLE: dict[str, Any] = {
    "event_id": "9c7a6a0e-0000-4000-8000-000000000001",
    "type": "steps",
    "start": "2026-11-19T00:00:00-05:00",
    "end": "2026-11-20T00:00:00-05:00",
    "value": 6240,
}


def digest(data: dict[str, Any]) -> bytes:
    return checkin_digest(CheckIn.model_validate(data, context=CTX))


def sdigest(data: dict[str, Any], patient: str = "p1", device: str = "w1") -> bytes:
    return sample_digest(ActivitySample.model_validate(data, context=CTX), patient, device)


@pytest.mark.parametrize(
    "patch",
    [
        {"recorded_at": "2026-11-20T13:30:00Z"},
        {"recorded_at": "2026-11-20T19:00:00+05:30"},
        {"grip_strength_kg": 17.0},
        {"red_flags": ["foot_drop", "fever"]},
        {"red_flags": ["foot_drop", "fever", "fever"]},
        {"pain": {"current": 4, "quality": ["tingling", "burning"], "worst_24h": None}},
        {"tingling": None},
        {"pt_session": None},
        {"event_id": "2F1D6C3E-8A51-4C1B-9B0E-5F3A2D1C7E90"},
    ],
)
def test_encodings_of_one_observation_digest_alike(patch: dict[str, Any]) -> None:
    assert digest({**BASE, **patch}) == digest(BASE)


def test_an_explicit_default_equals_an_absent_field() -> None:
    pt = {"ended_at": "2026-11-19T16:00:00Z"}
    assert digest({**BASE, "pt_session": pt}) == digest({**BASE, "pt_session": {**pt, "intensity": "moderate"}})


@pytest.mark.parametrize(
    "patch",
    [
        {"notes": "slept badly."},
        {"notes": None},
        {"pain": {"current": 5, "quality": ["burning", "tingling"]}},
        {"red_flags": ["fever"]},
        {"red_flags": ["fever", "foot_drop", "saddle_anesthesia"]},
        {"recorded_at": "2026-11-20T08:30:01-05:00"},
        {"patient_id": "pt-0043"},
        {"event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e91"},
        {"grip_strength_kg": 17.000001},
        {"tingling": 0},
        {"numbness_spreading": False},
    ],
)
def test_any_other_difference_is_other_content(patch: dict[str, Any]) -> None:
    assert digest({**BASE, **patch}) != digest(BASE)


@FAST
@given(st.permutations(list(RedFlag)), st.integers(1, len(RedFlag)))
def test_red_flag_order_never_matters(flags: list[RedFlag], n: int) -> None:
    chosen = [f.value for f in flags[:n]]
    assert digest({**BASE, "red_flags": chosen}) == digest({**BASE, "red_flags": sorted(chosen)})


def test_sample_digests_cover_patient_device_and_every_field() -> None:
    base = sdigest(SAMPLE)
    assert sdigest({**SAMPLE, "value": 6240.0, "start": "2026-11-19T05:00:00Z"}) == base
    for other in (
        sdigest(SAMPLE, device="w2"),
        sdigest(SAMPLE, patient="p2"),
        sdigest({**SAMPLE, "value": 6241}),
        sdigest({**SAMPLE, "type": "active_minutes", "value": 60}),
        sdigest({**SAMPLE, "end": "2026-11-20T00:00:01-05:00"}),
    ):
        assert other != base


def test_digests_are_32_bytes_and_check_ins_never_equal_samples() -> None:
    assert len(digest(BASE)) == 32 and len(sdigest(SAMPLE)) == 32
    assert digest(BASE) != sdigest({**SAMPLE, "event_id": BASE["event_id"]})


# -- judging a request's pairs ------------------------------------------------------------------------

A, B, C = UUID(int=1), UUID(int=2), UUID(int=3)
X, Y = b"x" * 32, b"y" * 32


def test_judge_new_same_and_conflict() -> None:
    pairs = [(A, X), (B, X), (C, X)]
    reference = {A: X, B: X, C: Y}
    assert judge(pairs, reference, {A}) == [Outcome.new, Outcome.same, Outcome.conflict]


def test_judge_repeats_within_a_request_against_the_record() -> None:
    # A is new: its first occurrence is recorded; a repeat with its digest is same, another conflict.
    assert judge([(A, X), (A, X), (A, Y)], {A: X}, {A}) == [Outcome.new, Outcome.same, Outcome.conflict]
    # B was on record as Y: the conflicting first occurrence does not spoil a later identical one.
    assert judge([(B, X), (B, Y)], {B: Y}, set()) == [Outcome.conflict, Outcome.same]


@FAST
@given(st.lists(st.tuples(st.sampled_from([A, B, C]), st.sampled_from([X, Y])), min_size=1, max_size=12), st.data())
def test_judge_at_most_one_new_per_event_id_and_conflict_iff_digest_differs(
    pairs: list[tuple[UUID, bytes]], data: st.DataObject
) -> None:
    first: dict[UUID, bytes] = {}
    for e, d in pairs:
        first.setdefault(e, d)
    inserted = {e for e in first if data.draw(st.booleans())}
    reference = {e: (first[e] if e in inserted else data.draw(st.sampled_from([X, Y]))) for e in first}
    out = judge(pairs, reference, inserted)
    for e in first:
        assert sum(1 for (pe, _), o in zip(pairs, out, strict=True) if pe == e and o is Outcome.new) == (e in inserted)
    for (e, d), o in zip(pairs, out, strict=True):
        assert (o is Outcome.conflict) == (d != reference[e])


# -- a failed publish releases what the request recorded ----------------------------------------------


class FailingProducer:
    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("broker gone")

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("broker gone")


class RecordingStore:
    def __init__(self) -> None:
        self.released: list[tuple[str, list[tuple[UUID, bytes]]]] = []

    async def release(self, tenant_id: str, inserted: list[tuple[UUID, bytes]]) -> None:
        self.released.append((tenant_id, list(inserted)))


async def test_a_failed_publish_releases_the_recorded_digests_and_answers_503() -> None:
    store = RecordingStore()
    handlers = IngestHandlers(
        Settings(ingest_produce_timeout_s=1.0),
        cast(PatientRegistry, None),
        cast(Any, FailingProducer()),
        cast(DigestStore, store),
    )
    e1, e2 = uuid4(), uuid4()
    claim = Claim([Outcome.new, Outcome.same], inserted=[(e1, X)])
    with pytest.raises(ProblemError) as info:
        await handlers._publish_claimed("checkin", [("topic", b"k", json.dumps({}).encode())], "t1", claim)
    assert info.value.status == 503 and info.value.headers and "Retry-After" in info.value.headers
    assert store.released == [("t1", [(e1, X)])]
    assert e2 not in {e for _, pairs in store.released for e, _ in pairs}
