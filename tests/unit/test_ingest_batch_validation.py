"""Ingest validates a batch with one TypeAdapter call per validation context, with the same result
as validating each item alone, and encodes accepted events without validating them again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from nervewatch.problems import item_errors
from schemas.checkins import CheckIn
from schemas.common import FLOOR_CONTEXT, NOW_CONTEXT
from schemas.events import CheckInRecorded
from services.ingest.handlers import validate_items
from tooling.bench.load import checkin_dict

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _items() -> list[Any]:
    good = [checkin_dict(f"p-{i}", NOW - timedelta(hours=i), seq=i) for i in range(6)]
    bad_pain = {**good[1], "pain": {"score": 11}}
    too_early = checkin_dict("p-9", NOW - timedelta(days=400), seq=9)
    return [good[0], bad_pain, "not an object", good[2], too_early, {}, good[3]]


def _contexts(n: int) -> list[dict[str, Any]]:
    floor = NOW - timedelta(days=365)
    # items 4 and 5 belong to a patient with a later floor (another group)
    return [{NOW_CONTEXT: NOW, FLOOR_CONTEXT: floor if i not in (4, 5) else NOW - timedelta(days=30)} for i in range(n)]


def test_one_call_per_context_gives_what_item_by_item_validation_gives() -> None:
    items, contexts = _items(), _contexts(7)
    valid, invalid = validate_items(TypeAdapter(list[CheckIn]), items, contexts, ["items"])
    expected_valid, expected_invalid = [], []
    for index, item in enumerate(items):
        try:
            expected_valid.append((index, CheckIn.model_validate(item, context=contexts[index])))
        except ValidationError as exc:
            expected_invalid.append((index, item_errors(exc, ["items", index])))
    assert valid == expected_valid
    assert invalid == expected_invalid
    assert [i for i, _ in invalid] == [1, 2, 4, 5]


def test_events_are_encoded_without_validation_to_the_same_bytes() -> None:
    checkin = CheckIn.model_validate(checkin_dict("p-1", NOW, seq=1), context={NOW_CONTEXT: NOW})
    built = CheckInRecorded.model_construct(tenant_id="t", received_at=NOW, checkin=checkin).model_dump_json()
    validated = CheckInRecorded(tenant_id="t", received_at=NOW, checkin=checkin).model_dump_json()
    assert built == validated
    assert json.loads(built)["schema_version"] == 1 and json.loads(built)["type"] == "checkin.recorded"
