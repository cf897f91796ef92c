"""`nervewatch.paging`: cursors round-trip and refuse what was not issued; `limit` values; the
bad-parameter problem names the parameter without echoing it."""

from __future__ import annotations

import base64
import json
import re

import pytest

from nervewatch import paging
from nervewatch.problems import ProblemError


@pytest.mark.parametrize("position", [["2026-12-03T10:00:00+00:00", "8f0e"], {"o": "x", "i": 7}, 42, "pt-1"])
def test_json_cursors_round_trip_unpadded_and_url_safe(position: object) -> None:
    cursor = paging.encode_cursor(position)
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
    assert paging.decode_cursor(cursor) == position


def test_json_cursors_issued_with_other_separators_still_decode() -> None:
    old = base64.urlsafe_b64encode(json.dumps({"o": "a", "i": "b"}).encode()).decode().rstrip("=")
    assert paging.decode_cursor(old) == {"o": "a", "i": "b"}


def test_text_cursors_round_trip() -> None:
    for text in ("pt-0042", "a", "x" * 64, "pt_ü"):
        assert paging.decode_text_cursor(paging.encode_text_cursor(text), 100) == text


@pytest.mark.parametrize("cursor", ["%%%", "A", "JSUl", "////", "@@", "A" * 3, "W1tbW1tbW1tbW1tbW1tb"])
def test_malformed_json_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(paging.CursorError):
        paging.decode_cursor(cursor)


def test_length_limits() -> None:
    long = paging.encode_cursor("x" * 300)
    with pytest.raises(paging.CursorError):
        paging.decode_cursor(long, 200)
    with pytest.raises(paging.CursorError):
        paging.decode_text_cursor(paging.encode_text_cursor("x" * 90), 100)
    with pytest.raises(paging.CursorError):
        paging.decode_text_cursor("_w", 100)  # not UTF-8


def test_deep_nesting_is_a_cursor_error_not_a_crash() -> None:
    deep = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    with pytest.raises(paging.CursorError):
        paging.decode_cursor(deep)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 100),
        ("1", 1),
        ("500", 500),
        ("0500", 500),
        ("0", None),
        ("501", None),
        ("-1", None),
        ("+5", None),
        (" 5", None),
        ("5_0", None),
        ("", None),
        ("abc", None),
        ("\u00b2", None),  # superscript two: str.isdigit() says yes, int() says no
        ("\u0665", None),  # Arabic-Indic five
        ("99999999999999999999", None),
        ("00005", None),  # more than 4 digits
    ],
)
def test_limit_values(raw: str | None, expected: int | None) -> None:
    assert paging.limit_of(raw, 100, 500) == expected


def test_parse_limit_raises_a_problem_naming_the_parameter() -> None:
    assert paging.parse_limit("7", 100, 500) == 7
    with pytest.raises(ProblemError) as err:
        paging.parse_limit("SECRET", 100, 500, name="_count")
    assert err.value.status == 400 and "'_count'" in str(err.value.detail) and "SECRET" not in str(err.value.detail)


def test_problems() -> None:
    p = paging.bad_param("cursor")
    assert p.status == 400 and p.detail == "'cursor' is not valid"
    assert paging.bad_param("limit", "has an invalid value").detail == "'limit' has an invalid value"
    c = paging.invalid_cursor()
    assert c.status == 400 and c.response().status == 400


def test_matching_text_cursors_refuse_what_does_not_match_without_echoing() -> None:
    pattern = re.compile(r"[a-z0-9-]{1,64}")
    assert paging.decode_matching_cursor(paging.encode_text_cursor("pt-0042"), pattern, 100) == "pt-0042"
    for cursor in (paging.encode_text_cursor("SECRET"), paging.encode_text_cursor("x" * 90), "_w", "%%%"):
        with pytest.raises(ProblemError) as err:
            paging.decode_matching_cursor(cursor, pattern, 100)
        assert err.value.status == 400 and err.value.detail == "'cursor' is not valid"
