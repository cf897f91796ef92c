"""The access-audit retention setting: six years by default, read from the environment, at least a day."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nervewatch.settings import Settings


def test_default_is_six_years(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NERVEWATCH_ACCESS_LOG_RETENTION_DAYS", raising=False)
    assert Settings().access_log_retention_days == 2190 == 6 * 365


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVEWATCH_ACCESS_LOG_RETENTION_DAYS", "30")
    assert Settings().access_log_retention_days == 30


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "forever", "36501"])
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NERVEWATCH_ACCESS_LOG_RETENTION_DAYS", value)
    with pytest.raises(ValidationError):
        Settings()
