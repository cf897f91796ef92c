"""Benchmark harness (being written)."""

from __future__ import annotations

from pathlib import Path

from nervewatch.settings import Settings


def run_bench(settings: Settings, *, smoke: bool, write: Path | None) -> int:
    raise NotImplementedError
