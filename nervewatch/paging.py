"""Keyset paging plumbing shared by the list endpoints: opaque cursors, the `limit` parameter and
the 400 problem of a bad query parameter. Pure: no I/O, no clock, no service imports.

A cursor is the position after which the next page starts: a JSON value (or, for a bare id, the
text itself) in unpadded URL-safe base64. It is opaque to clients and only a position inside the
caller's own listing (every query also filters by tenant), so decoding one reveals nothing and a
forged one reaches nothing. Decoding checks only the encoding; each endpoint checks the shape of
the position it issued and answers anything else with its own problem (`bad_param("cursor")` or
`invalid_cursor()`).

Problems name the parameter and never echo its value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from nervewatch.problems import ProblemError

_DIGITS = re.compile(r"[0-9]+")


class CursorError(ValueError):
    """Not a cursor this service issued (malformed encoding, too long)."""


def bad_param(name: str, why: str = "is not valid") -> ProblemError:
    """The 400 problem of an invalid query parameter: names it, never echoes its value."""
    return ProblemError(400, "Invalid query parameter", f"'{name}' {why}", slug="invalid-parameter")


def invalid_cursor() -> ProblemError:
    """The 400 problem (`.../invalid-cursor`) of a cursor this service did not issue."""
    return ProblemError(400, "Invalid cursor", "pass next_cursor unchanged", slug="invalid-cursor")


def encode_text_cursor(text: str) -> str:
    """A cursor holding `text` itself (a bare id)."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_text_cursor(cursor: str, max_length: int) -> str:
    """The text of `encode_text_cursor`; CursorError when longer than `max_length` or not base64
    of UTF-8."""
    if len(cursor) > max_length:
        raise CursorError("too long")
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raise CursorError("not a cursor") from None


def decode_matching_cursor(cursor: str, pattern: re.Pattern[str], max_length: int) -> str:
    """The text of `encode_text_cursor` when it is at most `max_length` long (as a cursor) and
    wholly matches `pattern` (e.g. the last id of the previous page); `bad_param("cursor")` for
    anything else."""
    try:
        value = decode_text_cursor(cursor, max_length)
    except CursorError:
        raise bad_param("cursor") from None
    if not pattern.fullmatch(value):
        raise bad_param("cursor")
    return value


def encode_cursor(position: Any) -> str:
    """A cursor holding the JSON value `position` (compact)."""
    return encode_text_cursor(json.dumps(position, separators=(",", ":")))


def decode_cursor(cursor: str, max_length: int | None = None) -> Any:
    """The JSON value of `encode_cursor` (any separators); CursorError when longer than
    `max_length` (if given), or not base64 of a JSON document."""
    if max_length is not None and len(cursor) > max_length:
        raise CursorError("too long")
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise CursorError("not a cursor") from None


def limit_of(raw: str | None, default: int, maximum: int, max_digits: int = 4) -> int | None:
    """The page size a `limit` value asks for: `default` when absent, the number when it is 1 to
    `maximum` written with at most `max_digits` ASCII digits, else None (invalid)."""
    if raw is None:
        return default
    if len(raw) > max_digits or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


def parse_limit(raw: str | None, default: int, maximum: int, name: str = "limit") -> int:
    """`limit_of`, with `bad_param(name)` for an invalid value."""
    value = limit_of(raw, default, maximum)
    if value is None:
        raise bad_param(name)
    return value
