"""The hazard log (docs/safety.md) names only tests that exist, and every hazard has tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "safety.md"
REF = re.compile(r"`(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`")


def _defined_tests() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names = set(re.findall(r"^(?:async )?def (test_[a-z0-9_]+)\(", path.read_text(), re.MULTILINE))
        out.setdefault(path.name, set()).update(names)
    return out


def test_every_test_the_hazard_log_names_exists() -> None:
    defined = _defined_tests()
    refs = REF.findall(DOC.read_text())
    assert refs, "docs/safety.md names no tests"
    missing = [f"{f}::{t}" for f, t in refs if t not in defined.get(f, set())]
    assert not missing, f"docs/safety.md names tests that do not exist: {missing}"


def test_every_hazard_row_has_a_test() -> None:
    rows = [line for line in DOC.read_text().splitlines() if re.match(r"^\| H\d+ \|", line)]
    assert len(rows) >= 10
    for row in rows:
        assert REF.search(row), f"hazard without a test: {row[:60]}"
