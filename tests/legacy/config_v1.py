"""Scoring configuration: every threshold, window and MCID the engine uses, per condition and treatment.

Pure data. Sources and reasoning for each value are in docs/clinical-logic.md. All windows are in
local calendar days unless the name says hours. Index values are on the 0-100 symptom-index scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

# Improvement MCIDs of the function instruments in their native units (direction-free magnitudes).
_FUNCTION_MCID_DEFAULT: tuple[tuple[str, float], ...] = (
    ("quickdash", 14.0),
    ("bctq_sss", 1.0),
    ("bctq_fss", 1.1),
    ("lefs", 9.0),
    ("odi", 10.0),
    ("psfs", 2.0),
    ("promis_pi", 5.0),
)
# After carpal tunnel release the thresholds patients need to feel better are larger.
_FUNCTION_MCID_CTR: tuple[tuple[str, float], ...] = (
    ("quickdash", 18.7),
    ("bctq_sss", 1.45),
    ("bctq_fss", 1.6),
    ("lefs", 9.0),
    ("odi", 10.0),
    ("psfs", 2.0),
    ("promis_pi", 5.0),
)
# Patient acceptable symptom state: a score strictly below this (higher-worse scales) is acceptable.
_FUNCTION_PASS: tuple[tuple[str, float], ...] = (("bctq_sss", 1.8), ("bctq_fss", 1.5))

_SURGICAL = frozenset({"surgical_decompression", "neurolysis", "nerve_repair"})


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """Thresholds, windows and MCIDs of the scoring engine. Immutable; build variants with `replace`."""

    # Symptom index: weights of the 0-10 items (renormalised over the items present on a day).
    weight_pain: float = 0.35
    weight_tingling: float = 0.20
    weight_numbness: float = 0.25
    weight_weakness: float = 0.20

    # MCIDs. Item MCID applies to pain, tingling, numbness and weakness (0-10 NRS).
    item_mcid: float = 2.0
    item_mcid_pct: float = 30.0
    # Index MCID = clamp(index_mcid_pct % of the baseline index, index_mcid_min, index_mcid_max).
    index_mcid_pct: float = 30.0
    index_mcid_min: float = 12.0
    index_mcid_max: float = 20.0
    # Deterioration MCID = max(deterioration_ratio * index MCID, deterioration_min).
    deterioration_ratio: float = 0.4
    deterioration_min: float = 7.0
    grip_mcid_kg: float = 5.0
    function_mcids: tuple[tuple[str, float], ...] = _FUNCTION_MCID_DEFAULT
    function_pass: tuple[tuple[str, float], ...] = _FUNCTION_PASS

    # Baseline and data sufficiency.
    baseline_days: int = 7
    min_scored_days: int = 5
    stale_after_days: int = 10

    # Smoothing and trend.
    ewma_alpha: float = 0.4
    level_window_days: int = 7
    level_min_days: int = 3
    slope_short_days: int = 14
    slope_long_days: int = 28
    slope_min_points: int = 5

    # Red flags and spreading numbness.
    red_flag_window_hours: float = 72.0
    spreading_clear_days: int = 3

    # Worsening (sustained deterioration vs the best recent level).
    worsening_window_days: int = 7
    worsening_min_days: int = 3
    worsening_last_days: int = 4
    # Quick rule: this many consecutive elevated scored days, for patients whose day-to-day noise
    # (robust SD of the index over the last `noise_window_days`) is at most det / worsening_noise_ratio.
    worsening_consecutive_days: int = 2
    worsening_noise_z: float = 2.0
    noise_window_days: int = 28
    noise_min_pairs: int = 6
    reference_weeks: int = 4
    reference_gap_days: int = 4

    # Grip strength drop.
    grip_readings: int = 3
    grip_min_readings: int = 2

    # Flare model.
    flare_trigger_days: int = 2
    active_day_ratio: float = 1.5
    activity_reference_days: int = 14
    flare_judge_after_days: int = 3
    flare_cover_days: int = 14
    flare_grace_days: int = 3
    flare_window_days: int = 7
    flare_weakness_rise: float = 3.0

    # Plateau and review windows.
    plateau_days: int = 21
    # ...and the 28-day Theil-Sen trend projects less than this fraction of an MCID of improvement.
    plateau_max_trend: float = 0.25
    review_after_days: int = 28
    # The plateau signal (alert) needs the current 7-day level at or above this (mean item 2.5/10):
    # stalling with mild residual symptoms is reported as the plateau state only.
    plateau_min_index: float = 25.0

    # Recovered.
    recovered_index: float = 15.0
    recovered_days: int = 14

    # Post-procedure expected dip (0 = none).
    postop_dip_days: int = 0

    # Activity.
    activity_decline_pct: float = 30.0
    activity_recent_days: int = 7
    activity_min_days: int = 4
    activity_sustain_days: int = 3

    def function_mcid(self, instrument: str | None) -> float | None:
        """Improvement MCID of `instrument` in its own units, None if unknown."""
        return next((v for k, v in self.function_mcids if k == instrument), None)

    def function_pass_threshold(self, instrument: str | None) -> float | None:
        """Acceptable-symptom-state cut-off of `instrument` (score must be below it), None if none."""
        return next((v for k, v in self.function_pass if k == instrument), None)

    def index_mcid(self, baseline_index: float | None) -> float:
        """Improvement MCID on the 0-100 index for a patient with this baseline index."""
        if baseline_index is None:
            return self.index_mcid_max
        raw = baseline_index * self.index_mcid_pct / 100.0
        return min(self.index_mcid_max, max(self.index_mcid_min, raw))

    def deterioration_mcid(self, index_mcid: float) -> float:
        """Deterioration MCID on the 0-100 index, given the improvement MCID."""
        return max(self.deterioration_min, self.deterioration_ratio * index_mcid)


@lru_cache(maxsize=256)
def config_for(condition: str, treatment: str) -> ScoringConfig:
    """The configuration for a condition/treatment pair; unknown values get the defaults."""
    cfg = ScoringConfig()
    if condition == "carpal_tunnel":
        cfg = replace(cfg, review_after_days=28)
        if treatment in _SURGICAL:
            cfg = replace(cfg, function_mcids=_FUNCTION_MCID_CTR, review_after_days=42)
    elif condition in ("cubital_tunnel", "lumbar_radiculopathy", "cervical_radiculopathy"):
        cfg = replace(cfg, review_after_days=84)
    elif condition == "peripheral_nerve_injury":
        cfg = replace(cfg, review_after_days=91)
    else:
        cfg = replace(cfg, review_after_days=42)
    if treatment in _SURGICAL:
        cfg = replace(cfg, postop_dip_days=42, review_after_days=max(cfg.review_after_days, 42))
    elif treatment == "ablation":
        cfg = replace(cfg, postop_dip_days=14)
    elif treatment == "injection":
        cfg = replace(cfg, postop_dip_days=7)
    return cfg
