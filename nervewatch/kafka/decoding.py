"""Decoding one record into a typed event, or a dead-letter reason.

The envelope contract plumbing relies on: a record's value is a JSON object whose integer
`schema_version` names its envelope version. The event models themselves come from the caller
(a pydantic TypeAdapter); plumbing knows no event type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiokafka import ConsumerRecord
from pydantic import TypeAdapter, ValidationError

from nervewatch.problems import sanitized

T = TypeVar("T")

# The envelope version this code understands; `schemas.events.SCHEMA_VERSION` must equal it
# (tests/unit/test_kafka_package.py checks).
ENVELOPE_VERSION = 1


class DecodeError(ValueError):
    """A record that can never be processed; `reason` is a short machine code (its dead-letter reason)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    """A record and the event decoded from it."""

    record: ConsumerRecord
    value: T


def decode_event(record: ConsumerRecord, adapter: TypeAdapter[T], *, schema_version: int = ENVELOPE_VERSION) -> T:
    """Decode a versioned JSON event with `adapter`; raises DecodeError with a dead-letter reason.

    Reasons: `empty_value`, `invalid_json`, `invalid_envelope`, `unsupported_schema_version`,
    `schema_violation` (its message lists field locations and error types, never values).
    """
    if record.value is None:
        raise DecodeError("empty_value", "record has no value")
    try:
        head = json.loads(record.value)
    except ValueError:
        raise DecodeError("invalid_json", "value is not JSON") from None
    if not isinstance(head, dict):
        raise DecodeError("invalid_envelope", "value is not a JSON object")
    if head.get("schema_version") != schema_version:
        raise DecodeError("unsupported_schema_version", f"schema_version {head.get('schema_version')!r:.20}")
    try:
        return adapter.validate_python(head)
    except ValidationError as exc:
        raise DecodeError("schema_violation", sanitized(exc)) from None
