"""Unit tests of services.scoring.profile: defaults per condition/treatment, versions, tenant overrides."""

from __future__ import annotations

import pytest

from services.scoring.profile import (
    ENGINE_VERSION,
    ClinicalProfile,
    ProfileError,
    knot_value,
    profile_for,
    validate_override,
)


def test_defaults_are_valid_for_every_pair_and_cached() -> None:
    for condition in ("carpal_tunnel", "cubital_tunnel", "peripheral_nerve_injury", "other_entrapment", "unknown"):
        for treatment in ("conservative", "surgical_decompression", "nerve_repair", "injection", "ablation"):
            p = profile_for(condition, treatment)
            assert p is profile_for(condition, treatment)
            assert p.version.startswith("p-") and len(p.version) == 18
    assert ENGINE_VERSION.count(".") == 2


def test_version_is_a_content_hash() -> None:
    a = profile_for("carpal_tunnel", "conservative")
    assert ClinicalProfile.model_validate(a.model_dump()).version == a.version
    assert a.model_copy(update={"plateau_days": 28}).version != a.version
    assert profile_for("carpal_tunnel", "surgical_decompression").version != a.version


def test_expected_course_differs_by_treatment() -> None:
    ctr = profile_for("carpal_tunnel", "surgical_decompression")
    assert knot_value(ctr.postop_pain_allowance, 0) == 2.5 and knot_value(ctr.postop_pain_allowance, 100) == 0.0
    assert knot_value(ctr.grip_floor, 42) == pytest.approx(0.7)
    assert profile_for("carpal_tunnel", "conservative").grip_quiet_days == 0
    assert profile_for("lumbar_radiculopathy", "injection").postop_window_days == 7


def test_override_applies_from_least_to_most_specific() -> None:
    override = validate_override(
        {
            "rules": [
                {"condition": "carpal_tunnel", "treatment": "surgical_decompression", "set": {"plateau_days": 28}},
                {"set": {"plateau_days": 24, "stale_after_days": 14}},
                {"condition": "carpal_tunnel", "set": {"plateau_days": 26}},
            ]
        }
    )
    assert profile_for("carpal_tunnel", "surgical_decompression", override).plateau_days == 28
    assert profile_for("carpal_tunnel", "conservative", override).plateau_days == 26
    assert profile_for("cubital_tunnel", "conservative", override).plateau_days == 24
    assert profile_for("cubital_tunnel", "conservative", override).stale_after_days == 14
    assert (
        profile_for("cubital_tunnel", "conservative", override).version
        != profile_for("cubital_tunnel", "conservative").version
    )
    assert validate_override({"rules": []}).rules == ()


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"set": {"plateau_days": 2}}, "rules[0].set.plateau_days"),
        ({"set": {"weight_pain": -1}}, "rules[0].set.weight_pain"),
        ({"set": {"red_flag_window_hours": "soon"}}, "rules[0].set.red_flag_window_hours"),
        ({"set": {"no_such_threshold": 3}}, "rules[0].set"),
        ({"set": {"grip_floor": [[42, 0.7], [21, 0.6]]}}, "rules[0].set.grip_floor"),
        ({"set": {"function_mcids": {"made_up": 3}}}, "rules[0].set.function_mcids"),
        ({"condition": "knee", "set": {"plateau_days": 21}}, "rules[0].condition"),
        ({"treatment": "magic", "set": {"plateau_days": 21}}, "rules[0].treatment"),
        ({"set": {}}, "rules[0].set"),
        ({"set": {"index_mcid_min": 30, "index_mcid_max": 20}}, "index_mcid_min"),
        ({"set": {"recovered_index": 40}}, "recovered_index"),
    ],
)
def test_nonsense_overrides_are_rejected_naming_the_field(rule: dict[str, object], field: str) -> None:
    with pytest.raises(ProfileError) as err:
        validate_override({"rules": [rule]})
    assert any(field in loc or field in msg for loc, msg in err.value.errors), err.value.errors


def test_unknown_override_keys_and_versions_are_rejected() -> None:
    with pytest.raises(ProfileError, match="schema_version"):
        validate_override({"schema_version": 2, "rules": []})
    with pytest.raises(ProfileError, match="colour"):
        validate_override({"rules": [], "colour": "red"})
