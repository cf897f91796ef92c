"""The expected course of one patient: what is normal for this condition and treatment, by day.

Pure: derived from the enrolment profile and the clinical profile only (no series data). The
detectors ask it how much post-procedure worsening to tolerate, when grip loss is expected, when a
"return to the pre-procedure level" starts to count, and, after a nerve repair, when regrowing axons
are expected to reach their target (until then a flat course is expected). Model and sources:
docs/clinical-logic.md, "Expected course".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from services.scoring.model import PatientProfile
from services.scoring.profile import PROCEDURAL, ClinicalProfile, knot_value


@dataclass(frozen=True, slots=True)
class Course:
    """Expected-course facts of one patient; ordinals are proleptic Gregorian day numbers."""

    clinical: ClinicalProfile
    procedure: int | None  # ordinal of the procedure (procedural treatments with a date only)
    regen_distance_mm: float | None  # nerve repair: distance from the repair to the target
    regen_end: int | None  # nerve repair: ordinal by which regrowth should have reached the target

    @staticmethod
    def of(profile: PatientProfile, clinical: ClinicalProfile) -> Course:
        proc = profile.procedure_date if profile.treatment in PROCEDURAL else None
        proc_ord = proc.toordinal() if proc is not None else None
        distance: float | None = None
        end: int | None = None
        if profile.treatment == "nerve_repair":
            distance = profile.repair_distance_mm or clinical.regen_default_distance_mm or None
            anchor: date | None = proc or profile.onset_date
            if distance and anchor is not None:
                days = clinical.regen_delay_days + math.ceil(distance / clinical.regen_rate_mm_per_day)
                end = anchor.toordinal() + days + clinical.regen_margin_days
        return Course(clinical, proc_ord, distance, end)

    def since_procedure(self, o: int) -> int | None:
        """Days from the procedure to ordinal `o` (None without a procedure, or before it)."""
        if self.procedure is None or o < self.procedure:
            return None
        return o - self.procedure

    def pain_allowance(self, o: int) -> float:
        """Extra pain (0-10 points) expected on day `o` after the procedure (incision, pillar pain)."""
        t = self.since_procedure(o)
        return knot_value(self.clinical.postop_pain_allowance, t) if t is not None else 0.0

    def neuro_allowance(self, o: int) -> float:
        """Extra tingling/numbness (points) expected on day `o` after the procedure (swelling)."""
        t = self.since_procedure(o)
        return knot_value(self.clinical.postop_neuro_allowance, t) if t is not None else 0.0

    def return_to_baseline_counts(self, o: int) -> bool:
        """Whether being back at the pre-procedure level on day `o` is a regression (not too early)."""
        t = self.since_procedure(o)
        return t is None or t >= self.clinical.return_to_baseline_after_days

    def grip_quiet(self, o: int) -> bool:
        """Whether grip loss on day `o` is part of the expected post-operative dip (not assessed)."""
        t = self.since_procedure(o)
        return t is not None and t < self.clinical.grip_quiet_days

    def grip_floor(self, o: int) -> float | None:
        """Fraction of the pre-operative grip expected at least on day `o`; None when no dip applies."""
        t = self.since_procedure(o)
        if t is None or not self.clinical.grip_floor:
            return None
        f = knot_value(self.clinical.grip_floor, t)
        return f if f < 1.0 else None

    def in_postop_window(self, o: int) -> bool:
        t = self.since_procedure(o)
        return t is not None and t < self.clinical.postop_window_days

    def regenerating(self, o: int) -> bool:
        """Nerve repair: whether regrowth is still expected to be on its way to the target on day `o`."""
        return self.regen_end is not None and o < self.regen_end

    def expected_remaining(self, o: int, anchor: int) -> float | None:
        """Expected fraction of the baseline index remaining on day `o` (None: no curve)."""
        if not self.clinical.expected_remaining:
            return None
        start = self.procedure if self.procedure is not None else anchor
        if o < start:
            return None
        return knot_value(self.clinical.expected_remaining, o - start)
