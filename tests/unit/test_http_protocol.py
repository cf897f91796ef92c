"""The answer to each parse failure of aiohttp's HTTP parser (`nervewatch.http_protocol.classify`)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, BadStatusLine, InvalidHeader, LineTooLong

from nervewatch.http import MAX_HEADER_FIELD, MAX_HEADERS, MAX_REQUEST_LINE
from nervewatch.http_protocol import ProblemAppRunner, classify

LIMITS = {"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_HEADER_FIELD, "max_headers": MAX_HEADERS}
SECRET = b"/v1/patients/pt-SECRET-42/trajectory"


def test_the_limits_differ() -> None:
    assert MAX_REQUEST_LINE != MAX_HEADER_FIELD  # the limit exceeded tells 414 from 431


def test_request_line_over_its_limit_is_414() -> None:
    refusal = classify(LineTooLong(SECRET, MAX_REQUEST_LINE), **LIMITS)
    assert (refusal.status, refusal.slug, refusal.limit) == (414, "uri-too-long", MAX_REQUEST_LINE)


@pytest.mark.parametrize("limit", [MAX_HEADER_FIELD, str(MAX_HEADER_FIELD)])
def test_header_field_over_its_limit_is_431(limit: int | str) -> None:
    refusal = classify(LineTooLong(b"Bearer nw_SECRET", limit), **LIMITS)
    assert (refusal.status, refusal.slug, refusal.limit) == (431, "headers-too-large", MAX_HEADER_FIELD)


@pytest.mark.parametrize("message", ["Too many headers received", "Too many trailers received"])
def test_too_many_header_lines_is_431(message: str) -> None:
    refusal = classify(BadHttpMessage(message), **LIMITS)
    assert (refusal.status, refusal.limit) == (431, MAX_HEADERS)


@pytest.mark.parametrize(
    "exc",
    [
        LineTooLong(SECRET, 12345),  # a limit this parser does not have
        LineTooLong(SECRET),  # no limit given
        BadHttpMethod("G@T"),
        BadStatusLine("pt-SECRET-42"),
        InvalidHeader(b"pt-SECRET-42"),
        BadHttpMessage("Invalid header token: pt-SECRET-42"),
        ValueError("pt-SECRET-42"),
        None,
    ],
)
def test_other_parse_failures_are_400_and_echo_nothing(exc: BaseException | None) -> None:
    refusal = classify(exc, **LIMITS)
    assert (refusal.status, refusal.slug, refusal.limit) == (400, "malformed-request", None)
    assert "SECRET" not in refusal.title + refusal.detail


def test_no_answer_quotes_the_request() -> None:
    for exc in (LineTooLong(SECRET, MAX_REQUEST_LINE), LineTooLong(SECRET, MAX_HEADER_FIELD)):
        refusal = classify(exc, **LIMITS)
        assert "SECRET" not in refusal.title + refusal.detail


def test_runner_refuses_equal_limits() -> None:
    with pytest.raises(ValueError, match="must differ"):
        ProblemAppRunner(web.Application(), service="t", max_line_size=8190, max_field_size=8190, max_headers=128)


def test_the_openapi_text_names_the_limits() -> None:
    from schemas.openapi import ERROR_TEXT

    assert str(MAX_REQUEST_LINE) in ERROR_TEXT[414]
    assert str(MAX_HEADER_FIELD) in ERROR_TEXT[431] and str(MAX_HEADERS) in ERROR_TEXT[431]
