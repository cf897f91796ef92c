"""Supply-code shares of the simulated cohort (simulator/billing.py, `simulator.offline --billing`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.scoring.billing.model import Code
from simulator import offline
from simulator.archetypes import ALL_ARCHETYPES, SimPatient, generate_cohort
from simulator.billing import STYLE_WEIGHTS, checkin_days, draw_adherence, render_markdown, reported_days, supply_shares
from simulator.offline import DEFAULT_END

ARCHETYPES = ["steady_recovery", "plateau", "disengagement"]


@pytest.fixture(scope="module")
def cohort() -> list[SimPatient]:
    return generate_cohort(6, 3, DEFAULT_END, ARCHETYPES)


def test_every_archetype_has_adherence_weights() -> None:
    assert set(STYLE_WEIGHTS) == set(ALL_ARCHETYPES)
    assert all(len(w) == 5 and abs(sum(w) - 1) < 1e-9 for w in STYLE_WEIGHTS.values())


def test_shares_are_deterministic_sum_to_one_and_count_closed_periods_only(cohort: list[SimPatient]) -> None:
    first = supply_shares(cohort, DEFAULT_END, 3)
    assert first == supply_shares(cohort, DEFAULT_END, 3)
    assert [s.archetype for s in first] == ARCHETYPES
    for s in first:
        assert s.patients == 6
        # 56-100 days of history: 1-3 closed 30-day periods per patient.
        assert 6 <= s.periods <= 18
        assert sum(s.by_code.values()) == s.periods
        assert abs(sum(s.share(c) for c in (Code.supply_16_30, Code.supply_2_15, None)) - 1) < 1e-9
        assert sum(s.styles.values()) == 6


def test_adherence_only_removes_days_and_leaves_the_cohort_alone(cohort: list[SimPatient]) -> None:
    before = [list(p.posts) for p in cohort]
    for p in cohort:
        kept = reported_days(p, 3)
        assert set(kept) <= set(checkin_days(p))
        assert reported_days(p, 3, adherence=False) == checkin_days(p)
        if draw_adherence(p.label.archetype, 3, p.patient_id).style == "steady":
            assert kept == checkin_days(p)
    assert [list(p.posts) for p in cohort] == before


def test_the_billing_run_replaces_only_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "billing.md"
    doc.write_text(f"# Billing\n\nbefore\n\n{offline.BILLING_BEGIN}\nold\n{offline.BILLING_END}\n\nafter\n")
    args = ["--billing", "--per-archetype", "2", "--archetypes", "steady_recovery", "--report", str(doc)]
    assert offline.main(args) == 0
    text = doc.read_text()
    assert "before" in text and "after" in text and "old" not in text
    assert "| steady_recovery | 2 |" in text and "98977 (16-30 days)" in text
    cohort = generate_cohort(2, 1, DEFAULT_END, ["steady_recovery"])
    assert render_markdown(cohort, DEFAULT_END, 1).splitlines()[0] in text


def test_a_document_without_markers_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "other.md"
    doc.write_text("# nothing to replace\n")
    assert offline.main(["--billing", "--per-archetype", "1", "--archetypes", "plateau", "--report", str(doc)]) == 2
    assert doc.read_text() == "# nothing to replace\n"
