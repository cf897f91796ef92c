"""The clinical profile: every threshold, window and expected-course parameter of the scoring engine.

Pure data and validation; no I/O. `profile_for(condition, treatment)` gives the default profile for a
patient's condition and treatment; `validate_override(data)` checks a tenant's partial override (per
condition and/or treatment) and `profile_for(..., override=...)` applies it. Every resolved profile
has a stable `version` (a content hash), which assessments carry next to `ENGINE_VERSION`.

Units: windows in local calendar days unless the name says hours; index values on the 0-100
symptom-index scale; item values on the 0-10 scales. Curves (`Knots`) are piecewise linear in days
since the course anchor (procedure, else first check-in), flat beyond their ends. Sources and
reasoning for every default: docs/clinical-logic.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Version of the engine's logic; bump on any change of behaviour (with the profile version it names
#: the code and the thresholds that produced an assessment).
ENGINE_VERSION = "2.1.0"

Knots = tuple[tuple[int, float], ...]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Days = Annotated[int, Field(ge=1, le=730)]
SmallCount = Annotated[int, Field(ge=1, le=60)]

SURGICAL_DECOMPRESSION = frozenset({"surgical_decompression", "neurolysis"})
PROCEDURAL = frozenset({"surgical_decompression", "neurolysis", "nerve_repair", "injection", "ablation"})


def knot_value(knots: Knots, day: float) -> float:
    """The piecewise-linear value of `knots` at `day` (flat before the first and after the last)."""
    if not knots:
        return 0.0
    if day <= knots[0][0]:
        return knots[0][1]
    for (d0, v0), (d1, v1) in itertools.pairwise(knots):
        if day <= d1:
            return v0 + (v1 - v0) * (day - d0) / (d1 - d0)
    return knots[-1][1]


def _check_knots(value: Knots, lo: float, hi: float) -> Knots:
    days = [d for d, _ in value]
    if any(b <= a for a, b in itertools.pairwise(days)):
        raise ValueError("knot days must be strictly increasing")
    if any(d < 0 or d > 730 for d in days):
        raise ValueError("knot days must be between 0 and 730")
    if any(not lo <= v <= hi for _, v in value):
        raise ValueError(f"knot values must be between {lo:g} and {hi:g}")
    return value


class ClinicalProfile(BaseModel):
    """Thresholds, windows and the expected course for one condition/treatment. Immutable.

    Build variants with `model_copy(update=...)` only in tests; tenants go through
    `validate_override` so that every value is checked.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # ---- symptom index (weights renormalised over the items present on a day) -----------------
    weight_pain: NonNeg = 0.35
    weight_tingling: NonNeg = 0.20
    weight_numbness: NonNeg = 0.25
    weight_weakness: NonNeg = 0.20

    # ---- MCIDs --------------------------------------------------------------------------------
    item_mcid: PosFloat = 2.0
    item_mcid_pct: Annotated[float, Field(ge=0, le=100)] = 30.0
    index_mcid_pct: Annotated[float, Field(ge=0, le=100)] = 30.0
    index_mcid_min: Annotated[float, Field(gt=0, le=100)] = 12.0
    index_mcid_max: Annotated[float, Field(gt=0, le=100)] = 20.0
    deterioration_ratio: Annotated[float, Field(gt=0, le=1)] = 0.4
    deterioration_min: Annotated[float, Field(gt=0, le=50)] = 7.0
    grip_mcid_kg: Annotated[float, Field(gt=0, le=30)] = 5.0
    function_mcids: dict[str, PosFloat] = Field(
        default_factory=lambda: {
            "quickdash": 14.0,
            "bctq_sss": 1.0,
            "bctq_fss": 1.1,
            "lefs": 9.0,
            "odi": 10.0,
            "psfs": 2.0,
            "promis_pi": 5.0,
        }
    )
    function_pass: dict[str, PosFloat] = Field(default_factory=lambda: {"bctq_sss": 1.8, "bctq_fss": 1.5})

    # ---- data sufficiency, smoothing, trend ---------------------------------------------------
    baseline_days: SmallCount = 7
    min_scored_days: SmallCount = 5
    stale_after_days: Days = 10
    ewma_alpha: Annotated[float, Field(gt=0, le=1)] = 0.4
    level_window_days: Annotated[int, Field(ge=3, le=14)] = 7
    level_min_days: Annotated[int, Field(ge=1, le=14)] = 3
    slope_short_days: Annotated[int, Field(ge=7, le=28)] = 14
    slope_long_days: Annotated[int, Field(ge=14, le=28)] = 28
    slope_min_points: Annotated[int, Field(ge=3, le=28)] = 5

    # ---- red flags and spreading numbness -----------------------------------------------------
    red_flag_window_hours: Annotated[float, Field(gt=0, le=168)] = 72.0
    spreading_clear_days: SmallCount = 3

    # ---- sustained deterioration (regression) -------------------------------------------------
    worsening_window_days: Annotated[int, Field(ge=3, le=14)] = 7
    worsening_min_days: Annotated[int, Field(ge=2, le=7)] = 3
    worsening_last_days: Annotated[int, Field(ge=2, le=7)] = 4
    worsening_consecutive_days: Annotated[int, Field(ge=1, le=7)] = 2
    worsening_back_days: Annotated[int, Field(ge=3, le=14)] = 5
    worsening_noise_z: Annotated[float, Field(ge=0, le=5)] = 2.0
    noise_window_days: Annotated[int, Field(ge=7, le=28)] = 28
    noise_min_pairs: Annotated[int, Field(ge=2, le=27)] = 6
    # Below this index a deterioration must also show in one symptom rising by its own MCID.
    worsening_mild_index: Annotated[float, Field(ge=0, le=100)] = 25.0
    reference_weeks: Annotated[int, Field(ge=1, le=4)] = 4
    reference_gap_days: Annotated[int, Field(ge=1, le=7)] = 4

    # ---- grip strength ------------------------------------------------------------------------
    grip_readings: Annotated[int, Field(ge=1, le=7)] = 3
    grip_min_readings: Annotated[int, Field(ge=1, le=7)] = 2

    # ---- flares -------------------------------------------------------------------------------
    flare_trigger_days: Annotated[int, Field(ge=1, le=4)] = 2
    active_day_ratio: Annotated[float, Field(gt=1, le=5)] = 1.5
    activity_reference_days: Annotated[int, Field(ge=7, le=14)] = 14
    active_day_min_days: Annotated[int, Field(ge=2, le=14)] = 4
    flare_judge_hours: Annotated[float, Field(ge=24, le=168)] = 72.0
    flare_window_days: Annotated[int, Field(ge=3, le=14)] = 7
    flare_cover_days: Annotated[int, Field(ge=3, le=28)] = 14
    flare_grace_days: Annotated[int, Field(ge=0, le=7)] = 3
    flare_weakness_rise: Annotated[float, Field(gt=0, le=10)] = 3.0
    # A flare is "still there" after flare_judge_hours while each of the last two scored days is at
    # least max(flare_persist_det x deterioration MCID, flare_persist_noise_z x patient noise SD)
    # above the pre-trigger level.
    flare_persist_det: Annotated[float, Field(gt=0, le=2)] = 0.75
    flare_persist_noise_z: Annotated[float, Field(ge=0, le=5)] = 1.0
    # ...or pain this many points above the pre-trigger pain with the index >= det / 2 above.
    flare_persist_pain: Annotated[float, Field(gt=0, le=10)] = 1.5
    # Onset needs the rise to be >= max(deterioration MCID, this many patient noise SDs).
    flare_onset_noise_z: Annotated[float, Field(ge=0, le=5)] = 2.0

    # ---- plateau and recovery -----------------------------------------------------------------
    plateau_days: Annotated[int, Field(ge=7, le=90)] = 21
    plateau_confirm_days: Annotated[int, Field(ge=1, le=7)] = 3
    # A plateau due again this many days after its episode ended on improvement is the same one.
    plateau_reopen_days: Annotated[int, Field(ge=0, le=28)] = 7
    # The plateau alert needs moderate symptoms: 7-day level >= plateau_min_index, or the 7-day
    # median pain >= plateau_min_pain with the level >= plateau_min_index_with_pain.
    plateau_min_index: Annotated[float, Field(ge=0, le=100)] = 25.0
    plateau_min_pain: Annotated[float, Field(ge=0, le=10)] = 3.0
    plateau_min_index_with_pain: Annotated[float, Field(ge=0, le=100)] = 20.0
    # Slow but steady improvement (no plateau): a symptom whose Mann-Kendall trend over the last
    # trend_item_days is significantly downwards (z <= -trend_item_z) with a least-squares slope of
    # at least trend_item_min_rate points a week.
    trend_item_days: Annotated[int, Field(ge=14, le=42)] = 28
    trend_item_min_points: Annotated[int, Field(ge=5, le=42)] = 10
    # For a noisy reporter (index noise SD above trend_noisy_sigma) the trend is judged over
    # trend_item_days_noisy: a slow trend needs longer to show through +-2 points a day.
    trend_noisy_sigma: Annotated[float, Field(gt=0, le=50)] = 4.5
    trend_item_days_noisy: Annotated[int, Field(ge=14, le=35)] = 35
    trend_item_z: Annotated[float, Field(ge=0, le=5)] = 2.0
    trend_item_min_rate: Annotated[float, Field(ge=0, le=5)] = 0.15
    # The symptoms together (summed Kendall S) with the index improving >= this many points a week.
    trend_index_min_rate: Annotated[float, Field(ge=0, le=50)] = 1.0
    # A slower trend over trend_long_days (at most the 35 days the symptom state keeps): the symptoms
    # together significantly improving with the index >= trend_long_min_rate points a week, and the
    # last plateau_days still improving at >= trend_consistency x that pace.
    trend_long_days: Annotated[int, Field(ge=14, le=35)] = 35
    trend_long_min_rate: Annotated[float, Field(ge=0, le=50)] = 0.7
    trend_consistency: Annotated[float, Field(ge=0, le=1)] = 0.5
    trend_consistency_se: Annotated[float, Field(ge=0, le=5)] = 1.0
    # Before the review point a plateau is flagged only for a patient whose best 7-day level has
    # improved on baseline by this many index MCIDs (a patient who got better and then stalled);
    # half an MCID is within the reach of a slow steady improver in 3 weeks.
    plateau_improved_mcids: Annotated[float, Field(ge=0, le=3)] = 0.75
    recovered_index: Annotated[float, Field(ge=0, le=100)] = 15.0
    recovered_days: Days = 14
    function_recent_days: Days = 28

    # ---- activity -----------------------------------------------------------------------------
    activity_decline_pct: Annotated[float, Field(gt=0, lt=100)] = 30.0
    activity_recent_days: Annotated[int, Field(ge=3, le=14)] = 7
    activity_min_days: Annotated[int, Field(ge=1, le=14)] = 4
    activity_sustain_days: SmallCount = 3
    activity_baseline_days: Annotated[int, Field(ge=7, le=28)] = 14
    activity_baseline_min_days: Annotated[int, Field(ge=1, le=28)] = 5

    # ---- expected course ----------------------------------------------------------------------
    # Days since the anchor (procedure, else first check-in) before a patient who has not improved
    # by half an MCID is flagged as a plateau.
    review_after_days: Days = 42
    # Expected dip after a procedure: extra index tolerance for incision/pillar pain (pain points)
    # and for swelling and immobilisation (tingling, numbness, weakness points), by day since it.
    postop_pain_allowance: Knots = ()
    postop_neuro_allowance: Knots = ()
    # Before this many days after a procedure, "back to the pre-procedure level" is not a regression.
    return_to_baseline_after_days: Annotated[int, Field(ge=0, le=180)] = 0
    # Grip after a decompression: no grip-drop assessment before grip_quiet_days; until the curve
    # reaches 1.0 a drop also needs grip below this fraction of the pre-operative grip (when known).
    grip_quiet_days: Annotated[int, Field(ge=0, le=180)] = 0
    grip_floor: Knots = ()
    # Days after a procedure during which the state without a signal says postop_recovery_window and
    # activity decline is not assessed.
    postop_window_days: Annotated[int, Field(ge=0, le=180)] = 0
    # Expected fraction of the baseline index remaining, by day since the anchor, and the band above
    # it that is still on course (reported as a reason; see docs).
    expected_remaining: Knots = ()
    expected_tolerance: Fraction = 0.15
    # Nerve repair: regrowth at regen_rate_mm_per_day after regen_delay_days over the distance from
    # the repair to the target (enrolment repair_distance_mm, else regen_default_distance_mm), plus
    # regen_margin_days: until then no plateau, and tingling is a sign of regeneration.
    regen_default_distance_mm: Annotated[float, Field(ge=0, le=1500)] = 0.0
    regen_rate_mm_per_day: Annotated[float, Field(gt=0, le=5)] = 1.0
    regen_delay_days: Annotated[int, Field(ge=0, le=120)] = 28
    regen_margin_days: Annotated[int, Field(ge=0, le=180)] = 14
    # While regrowth is on its way, dense numbness and weakness fluctuate: a deterioration must be
    # this many improvement MCIDs (instead of the deterioration MCID).
    regen_deterioration_mcids: Annotated[float, Field(ge=0, le=3)] = 0.75

    @field_validator("postop_pain_allowance", "postop_neuro_allowance")
    @classmethod
    def _allowance(cls, v: Knots) -> Knots:
        return _check_knots(v, 0.0, 10.0)

    @field_validator("grip_floor", "expected_remaining")
    @classmethod
    def _fraction_curve(cls, v: Knots) -> Knots:
        return _check_knots(v, 0.0, 1.5)

    @field_validator("function_mcids", "function_pass")
    @classmethod
    def _instruments(cls, v: dict[str, float]) -> dict[str, float]:
        known = {"quickdash", "bctq_sss", "bctq_fss", "lefs", "odi", "psfs", "promis_pi"}
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown instrument(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ClinicalProfile:
        if self.weight_pain + self.weight_numbness + self.weight_weakness + self.weight_tingling <= 0:
            raise ValueError("weight_*: at least one symptom weight must be positive")
        if self.index_mcid_min > self.index_mcid_max:
            raise ValueError("index_mcid_min must not exceed index_mcid_max")
        if self.level_min_days > self.level_window_days:
            raise ValueError("level_min_days must not exceed level_window_days")
        if self.worsening_min_days > self.worsening_last_days:
            raise ValueError("worsening_min_days must not exceed worsening_last_days")
        if self.grip_min_readings > self.grip_readings:
            raise ValueError("grip_min_readings must not exceed grip_readings")
        if self.activity_min_days > self.activity_recent_days:
            raise ValueError("activity_min_days must not exceed activity_recent_days")
        if self.slope_short_days > self.slope_long_days:
            raise ValueError("slope_short_days must not exceed slope_long_days")
        if self.recovered_index >= self.plateau_min_index:
            raise ValueError("recovered_index must be below plateau_min_index")
        return self

    # ---- derived values -----------------------------------------------------------------------
    @property
    def version(self) -> str:
        """Content hash of the profile: equal profiles have equal versions, whatever their origin."""
        return _version(self)

    def index_mcid(self, baseline_index: float | None) -> float:
        """Improvement MCID on the 0-100 index for a patient with this baseline index."""
        if baseline_index is None:
            return self.index_mcid_max
        raw = baseline_index * self.index_mcid_pct / 100.0
        return min(self.index_mcid_max, max(self.index_mcid_min, raw))

    def deterioration_mcid(self, index_mcid: float) -> float:
        """Deterioration MCID on the 0-100 index, given the improvement MCID."""
        return max(self.deterioration_min, self.deterioration_ratio * index_mcid)

    def function_mcid(self, instrument: str | None) -> float | None:
        return self.function_mcids.get(instrument) if instrument is not None else None

    def function_pass_threshold(self, instrument: str | None) -> float | None:
        return self.function_pass.get(instrument) if instrument is not None else None

    def weights(self) -> tuple[float, float, float, float]:
        """(pain, tingling, numbness, weakness) weights."""
        return (self.weight_pain, self.weight_tingling, self.weight_numbness, self.weight_weakness)


def _canonical(p: BaseModel) -> str:
    return json.dumps(p.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


_VERSIONS: dict[int, tuple[ClinicalProfile, str]] = {}


def _version(p: ClinicalProfile) -> str:
    hit = _VERSIONS.get(id(p))
    if hit is not None and hit[0] is p:
        return hit[1]
    v = "p-" + hashlib.sha256(_canonical(p).encode()).hexdigest()[:16]
    if len(_VERSIONS) > 4096:
        _VERSIONS.clear()
    _VERSIONS[id(p)] = (p, v)
    return v


# -------------------------------------------------------------------------------------------------
# Defaults per condition and treatment (data). Later entries override earlier ones:
# base -> condition -> treatment -> (condition, treatment).

_DECOMPRESSION_COURSE: dict[str, Any] = {
    "postop_pain_allowance": ((0, 2.5), (14, 1.5), (42, 1.5), (84, 0.0)),
    "postop_neuro_allowance": ((0, 1.5), (14, 0.0)),
    "return_to_baseline_after_days": 14,
    "grip_quiet_days": 21,
    "grip_floor": ((0, 0.55), (42, 0.7), (84, 0.85), (120, 1.0)),
    "postop_window_days": 42,
}

_CONDITION_DEFAULTS: dict[str, dict[str, Any]] = {
    "carpal_tunnel": {"review_after_days": 28},
    "cubital_tunnel": {"review_after_days": 84},
    "lumbar_radiculopathy": {"review_after_days": 84},
    "cervical_radiculopathy": {"review_after_days": 84},
    "peripheral_nerve_injury": {"review_after_days": 91, "regen_default_distance_mm": 150.0},
}

_TREATMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "surgical_decompression": {
        **_DECOMPRESSION_COURSE,
        "review_after_days": 42,
        "expected_remaining": ((0, 1.0), (14, 0.7), (42, 0.5), (84, 0.4), (180, 0.3)),
    },
    "neurolysis": {
        **_DECOMPRESSION_COURSE,
        "review_after_days": 42,
        "expected_remaining": ((0, 1.0), (14, 0.75), (42, 0.55), (84, 0.45), (180, 0.35)),
    },
    "nerve_repair": {
        **_DECOMPRESSION_COURSE,
        # Tingling rises as regenerating axons advance (Tinel sign): it is not scored as a symptom.
        "weight_tingling": 0.0,
        "grip_quiet_days": 0,
        "grip_floor": (),
        "return_to_baseline_after_days": 42,
        "review_after_days": 42,
    },
    "injection": {
        "postop_pain_allowance": ((0, 1.5), (3, 1.5), (7, 0.0)),
        "return_to_baseline_after_days": 7,
        "postop_window_days": 7,
        "review_after_days": 28,
    },
    "ablation": {
        "postop_pain_allowance": ((0, 2.0), (14, 0.0)),
        "return_to_baseline_after_days": 14,
        "postop_window_days": 14,
        "review_after_days": 28,
    },
}

_PAIR_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("carpal_tunnel", "surgical_decompression"): {
        "review_after_days": 28,
        "function_mcids": {
            "quickdash": 18.7,
            "bctq_sss": 1.45,
            "bctq_fss": 1.6,
            "lefs": 9.0,
            "odi": 10.0,
            "psfs": 2.0,
            "promis_pi": 5.0,
        },
        "expected_remaining": ((0, 1.0), (14, 0.55), (42, 0.4), (84, 0.3), (180, 0.25)),
    },
    ("carpal_tunnel", "conservative"): {"review_after_days": 28},
    ("peripheral_nerve_injury", "nerve_repair"): {"regen_default_distance_mm": 150.0},
}


class ProfileRule(BaseModel):
    """One tenant override: `set` applies to patients matching `condition` and `treatment` (None = any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    condition: str | None = Field(default=None, max_length=64)
    treatment: str | None = Field(default=None, max_length=64)
    set: dict[str, Any] = Field(min_length=1)

    @field_validator("set")
    @classmethod
    def _known_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(ClinicalProfile.model_fields))
        if unknown:
            raise ValueError(f"unknown profile field(s): {', '.join(unknown)}")
        return v

    def matches(self, condition: str, treatment: str) -> bool:
        return (self.condition is None or self.condition == condition) and (
            self.treatment is None or self.treatment == treatment
        )

    @property
    def specificity(self) -> int:
        return (self.condition is not None) + 2 * (self.treatment is not None)


class ProfileOverride(BaseModel):
    """A tenant's override of the default profiles: rules applied from least to most specific
    (any -> condition -> treatment -> both), in the given order within one level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    rules: tuple[ProfileRule, ...] = Field(default=(), max_length=200)

    @property
    def version(self) -> str:
        return "o-" + hashlib.sha256(_canonical(self).encode()).hexdigest()[:16]


class ProfileError(ValueError):
    """A rejected override; `errors` are (field path, message) pairs naming every bad field."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{loc}: {msg}" for loc, msg in errors))


_CONDITIONS = (
    "carpal_tunnel",
    "cubital_tunnel",
    "radial_tunnel",
    "tarsal_tunnel",
    "peroneal_entrapment",
    "lumbar_radiculopathy",
    "cervical_radiculopathy",
    "peripheral_nerve_injury",
    "other_entrapment",
)
_TREATMENTS = ("conservative", "surgical_decompression", "neurolysis", "nerve_repair", "injection", "ablation")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_override(data: Mapping[str, Any]) -> ProfileOverride:
    """Check a tenant override and return it; raise ProfileError naming every bad field.

    Shape: `{"schema_version": 1, "rules": [{"condition": ..., "treatment": ..., "set": {field:
    value}}]}`. Each rule's values are validated field by field, and the profile that results for
    every condition/treatment pair the rule touches is validated as a whole, so cross-field nonsense
    (e.g. index_mcid_min above index_mcid_max) is rejected with the field named.
    """
    try:
        override = ProfileOverride.model_validate(data)
    except ValidationError as exc:
        raise ProfileError([(_loc(tuple(e["loc"])), e["msg"]) for e in exc.errors()]) from exc
    errors: list[tuple[str, str]] = []
    for i, rule in enumerate(override.rules):
        if rule.condition is not None and rule.condition not in _CONDITIONS:
            errors.append((f"rules[{i}].condition", f"unknown condition; known: {', '.join(_CONDITIONS)}"))
        if rule.treatment is not None and rule.treatment not in _TREATMENTS:
            errors.append((f"rules[{i}].treatment", f"unknown treatment; known: {', '.join(_TREATMENTS)}"))
        try:
            ClinicalProfile.model_validate({**_defaults("carpal_tunnel", "conservative"), **rule.set})
        except ValidationError as exc:
            errors.extend((f"rules[{i}].set.{_loc(tuple(e['loc']))}".rstrip("."), e["msg"]) for e in exc.errors())
    if errors:
        raise ProfileError(errors)
    for condition in _CONDITIONS:
        for treatment in _TREATMENTS:
            try:
                _resolve(condition, treatment, override)
            except ValidationError as exc:
                raise ProfileError(
                    [(f"{condition}/{treatment}.{_loc(tuple(e['loc']))}".rstrip("."), e["msg"]) for e in exc.errors()]
                ) from exc
    return override


def _defaults(condition: str, treatment: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    values.update(_CONDITION_DEFAULTS.get(condition, {}))
    values.update(_TREATMENT_DEFAULTS.get(treatment, {}))
    if condition in _CONDITION_DEFAULTS and "review_after_days" in _CONDITION_DEFAULTS[condition]:
        # A procedure never shortens the condition's review point for a patient not yet improved,
        # except where a (condition, treatment) pair says so below.
        values["review_after_days"] = max(
            _CONDITION_DEFAULTS[condition]["review_after_days"], values.get("review_after_days", 0)
        )
    values.update(_PAIR_DEFAULTS.get((condition, treatment), {}))
    return values


def _resolve(condition: str, treatment: str, override: ProfileOverride | None) -> ClinicalProfile:
    values = _defaults(condition, treatment)
    if override is not None:
        for rule in sorted((r for r in override.rules if r.matches(condition, treatment)), key=lambda r: r.specificity):
            values.update(rule.set)
    return ClinicalProfile.model_validate(values)


@lru_cache(maxsize=256)
def _default_profile(condition: str, treatment: str) -> ClinicalProfile:
    return _resolve(condition, treatment, None)


_OVERRIDDEN: dict[tuple[str, str, str], ClinicalProfile] = {}


def profile_for(condition: str, treatment: str, override: ProfileOverride | None = None) -> ClinicalProfile:
    """The profile for a condition/treatment pair (unknown values get the base defaults), with a
    validated tenant override applied. Cached: equal arguments return the same object."""
    if override is None or not override.rules:
        return _default_profile(condition, treatment)
    key = (condition, treatment, override.version)
    hit = _OVERRIDDEN.get(key)
    if hit is None:
        if len(_OVERRIDDEN) > 4096:
            _OVERRIDDEN.clear()
        hit = _OVERRIDDEN[key] = _resolve(condition, treatment, override)
    return hit
