"""From detector findings to the trajectory state, its reasons and the signals: tables, not branches.

- PRECEDENCE: finding code -> trajectory state, highest first. The first code with a finding
  decides the state; the state's reasons are those of every finding in the winner's group
  (GROUPS; a code not in a group is a group of its own), in table order.
- MERGE: signals of one code raised by several detectors become one signal: since, event time and
  event id of the earliest raised, reasons of all in the listed order.
- SUPPORTS: a signal that adds its reasons to another (supporting evidence, never a trigger).
- SUPPRESSED_BY: a signal not reported while any of the listed signals is.
- Notes (code NOTE) add their reasons after the state's, on every assessment.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.common import Reason
from schemas.trajectory import Signal, SignalCode, TrajectoryState
from services.scoring.detectors.base import NOTE, Finding

PRECEDENCE: tuple[tuple[str, TrajectoryState], ...] = (
    ("red_flag", TrajectoryState.red_flag),
    ("spreading_numbness", TrajectoryState.worsening),
    ("grip_drop", TrajectoryState.worsening),
    ("regression", TrajectoryState.worsening),
    ("persistent_flare", TrajectoryState.worsening),
    ("flare_weakness_rise", TrajectoryState.worsening),
    ("flare", TrajectoryState.flare),
    ("too_few_days", TrajectoryState.insufficient_data),
    ("no_recent_checkins", TrajectoryState.insufficient_data),
    ("recovered", TrajectoryState.recovered),
    ("plateau", TrajectoryState.plateau),
    ("improving", TrajectoryState.improving),
    ("postop_recovery_window", TrajectoryState.insufficient_data),
    ("regeneration_latent_phase", TrajectoryState.insufficient_data),
    ("trend_not_established", TrajectoryState.insufficient_data),
)

GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"spreading_numbness", "grip_drop", "regression", "persistent_flare", "flare_weakness_rise"}),
)

MERGE: dict[SignalCode, tuple[str, ...]] = {SignalCode.regression: ("regression", "grip_drop")}

SUPPORTS: dict[SignalCode, tuple[SignalCode, ...]] = {SignalCode.regression: (SignalCode.activity_decline,)}

SUPPRESSED_BY: dict[SignalCode, frozenset[SignalCode]] = {
    SignalCode.plateau: frozenset({SignalCode.regression, SignalCode.spreading_symptoms}),
    SignalCode.flare_window: frozenset({SignalCode.regression, SignalCode.spreading_symptoms}),
}

_RANK = {code: i for i, (code, _) in enumerate(PRECEDENCE)}
_GROUP_OF = {code: g for g in GROUPS for code in g}


def decide(findings: Sequence[Finding]) -> tuple[TrajectoryState, tuple[Reason, ...]]:
    """The trajectory state and its reasons (state reasons first, then notes)."""
    present = {f.code for f in findings}
    winner, state = next(((c, s) for c, s in PRECEDENCE if c in present), PRECEDENCE[-1])
    group = _GROUP_OF.get(winner, frozenset({winner}))
    chosen = sorted((f for f in findings if f.code in group), key=lambda f: _RANK[f.code])
    reasons: list[Reason] = []
    seen: set[tuple[str, str]] = set()
    for f in (*chosen, *(f for f in findings if f.code == NOTE)):
        for r in f.reasons:
            if (r.code, r.detail) not in seen:
                seen.add((r.code, r.detail))
                reasons.append(r)
    return state, tuple(reasons)


def signals(findings: Sequence[Finding]) -> tuple[Signal, ...]:
    """The signals of the findings after MERGE, SUPPORTS and SUPPRESSED_BY, sorted by code (red
    flags, one per observation, in day order)."""
    by_code: dict[SignalCode, list[Finding]] = {}
    for f in findings:
        if f.signal is not None:
            by_code.setdefault(f.signal.code, []).append(f)
    out: dict[SignalCode, list[Signal]] = {}
    for code, group in by_code.items():
        order = MERGE.get(code)
        if order is None or len(group) == 1:
            out[code] = [f.signal for f in group if f.signal is not None]
            continue
        group = sorted(group, key=lambda f: order.index(f.code) if f.code in order else len(order))
        first = min(group, key=lambda f: f.raised if f.raised is not None else 1 << 30)
        assert first.signal is not None
        merged = [r for f in group if f.signal is not None for r in f.signal.reasons]
        out[code] = [first.signal.model_copy(update={"reasons": merged})]
    for code, helpers in SUPPORTS.items():
        if code not in out:
            continue
        extra = [r for h in helpers for s in out.get(h, []) for r in s.reasons]
        if extra:
            out[code] = [s.model_copy(update={"reasons": [*s.reasons, *extra]}) for s in out[code]]
    for code, blockers in SUPPRESSED_BY.items():
        if code in out and any(b in out for b in blockers):
            del out[code]
    return tuple(s for code in sorted(out, key=lambda c: c.value) for s in out[code])
