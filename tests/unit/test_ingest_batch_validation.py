"""Ingest validates a batch with one TypeAdapter call per validation context, with the same result
as validating each item alone, and encodes accepted events without validating them again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

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


def _floors(n: int) -> list[datetime | None]:
    # items 4 and 5 belong to a patient with a later floor (another group)
    return [NOW - timedelta(days=365) if i not in (4, 5) else NOW - timedelta(days=30) for i in range(n)]


def test_one_call_per_floor_gives_what_item_by_item_validation_gives() -> None:
    items, floors = _items(), _floors(7)
    contexts = [{NOW_CONTEXT: NOW, FLOOR_CONTEXT: floor} for floor in floors]
    valid, invalid = validate_items(TypeAdapter(list[CheckIn]), items, floors, NOW, ["items"])
    expected_valid, expected_invalid = [], []
    for index, item in enumerate(items):
        try:
            expected_valid.append((index, CheckIn.model_validate(item, context=contexts[index])))
        except ValidationError as exc:
            expected_invalid.append((index, item_errors(exc, ["items", index])))
    assert valid == expected_valid
    assert invalid == expected_invalid
    assert [i for i, _ in invalid] == [1, 2, 4, 5]


def test_a_batch_of_valid_items_with_one_floor_is_one_call() -> None:
    items = [checkin_dict(f"p-{i}", NOW - timedelta(hours=i), seq=i) for i in range(5)]
    calls: list[int] = []

    adapter = TypeAdapter(list[CheckIn])

    class Counting:
        def validate_python(self, obj: Any, /, **kwargs: Any) -> list[CheckIn]:
            calls.append(len(obj))
            return adapter.validate_python(obj, **kwargs)

    counting = cast(TypeAdapter[list[CheckIn]], Counting())
    valid, invalid = validate_items(counting, items, [None] * 5, NOW, ["items"])
    assert calls == [5] and [i for i, _ in valid] == [0, 1, 2, 3, 4] and invalid == []


def test_events_are_encoded_without_validation_to_the_same_bytes() -> None:
    checkin = CheckIn.model_validate(checkin_dict("p-1", NOW, seq=1), context={NOW_CONTEXT: NOW})
    built = CheckInRecorded.model_construct(tenant_id="t", received_at=NOW, checkin=checkin).model_dump_json()
    validated = CheckInRecorded(tenant_id="t", received_at=NOW, checkin=checkin).model_dump_json()
    assert built == validated
    assert json.loads(built)["schema_version"] == 1 and json.loads(built)["type"] == "checkin.recorded"
