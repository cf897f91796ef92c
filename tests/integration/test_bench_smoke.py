"""`nervewatch bench --smoke` runs end to end on its own embedded stack and writes its report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROWS = (
    "Ceiling: plain producer",
    "Ceiling: plain consumer",
    "Ceiling: PostgreSQL COPY",
    "Event digest check: INSERT ... ON CONFLICT",
    "Ingest single check-in, closed loop",
    "Ingest single check-in, open loop",
    "Ingest batch of",
    "End to end at",
    "Trajectory event to first webhook attempt",
    "Scoring consumer:",
    "Scoring consumer with 3 days of prior history",
    "Scoring consumer with 12 days of prior history",
    "Scoring consumer, late data",
    "Scoring RSS after",
    "Alerts consumer:",
    "Memory: ingest RSS",
    "Memory: scoring RSS",
    "Memory: alerts RSS",
    "Rescore (dry run):",
    "Rescore (real run):",
)


def test_bench_smoke_runs_and_writes_report(tmp_path: Path) -> None:
    report = tmp_path / "perf.md"
    # Its own embedded stack and free ports: nothing from the test session's configuration leaks in.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS") and not k.startswith("NERVEWATCH_")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tooling.cli", "bench", "--smoke", "--write", str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for row in ROWS:
        assert row in proc.stdout, row
    text = report.read_text()
    assert "| Measurement | Result | Ceiling (same run) |" in text
    for row in ROWS:
        assert f"| {row}" in text, row
    assert "| CPU |" in text and "| PostgreSQL |" in text
    assert "Harness errors" not in text
    # every numeric result is present (no phase silently skipped)
    result_lines = [
        line
        for line in text.splitlines()
        if line.startswith(("| Ingest", "| Scoring", "| Alerts", "| Event digest", "| Rescore"))
    ]
    assert all("n/a" not in line.split("|")[2] for line in result_lines), result_lines
