from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from nervewatch.problems import ProblemError
from services.alerts.api import decode_cursor, encode_cursor
from services.alerts.delivery import DeliveryError, check_url, is_public_address, sign, verify
from services.alerts.dispatcher import BACKOFF_CAP_S, backoff


def test_signature_round_trip_and_tamper_detection() -> None:
    body = b'{"id":"al_1"}'
    header = sign("s3cret", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify("s3cret", header, body, now=1_700_000_010)
    assert not verify("s3cret", header, body + b" ", now=1_700_000_010)
    assert not verify("other", header, body, now=1_700_000_010)
    assert not verify("s3cret", header, body, now=1_700_000_000 + 301)
    assert not verify("s3cret", "garbage", body)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "http://localhost:8080/",
        "http://0.0.0.0/",
    ],
)
def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(DeliveryError) as info:
        check_url(url, allow_private=False)
    assert info.value.code == "blocked_target"
    check_url(url, allow_private=True)


def test_non_http_urls_are_refused() -> None:
    for url in ("ftp://example.org/x", "file:///etc/passwd", "http:///nohost"):
        with pytest.raises(DeliveryError):
            check_url(url, allow_private=True)
    check_url("https://care.example.org/hook", allow_private=False)


def test_public_address_classification() -> None:
    assert is_public_address("93.184.216.34")
    assert not is_public_address("172.16.5.4")
    assert not is_public_address("fe80::1")


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(1).random
    assert timedelta(seconds=2.5) <= backoff(1, rng) <= timedelta(seconds=7.5)
    assert backoff(3, lambda: 0.5) == timedelta(seconds=20)
    assert backoff(40, lambda: 0.999) < timedelta(seconds=BACKOFF_CAP_S * 1.5)


def test_cursor_round_trip_and_garbage() -> None:
    at = datetime(2026, 11, 20, 13, 30, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, "al_1")) == (at, "al_1")
    with pytest.raises(ProblemError):
        decode_cursor("!!!not-a-cursor")
