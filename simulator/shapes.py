"""Curve shapes for the simulator: progress functions of simulated time.

A progress function `p(t)` runs from 0 at `t = 0` towards 1 (the whole change done); a symptom
follows `start + (target - start) * p(t)`. Shapes are frozen dataclasses drawn from a
`random.Random` and `describe()` themselves, so the parameters go into the patient's label. Pure:
no clock, no I/O, no global randomness.

Several families, so that no single curve can be fitted: exponential, linear, power (concave or
convex), logistic (slow start, then faster), stepwise (changes in steps with flat stretches
between), each optionally with a pause (the whole course holds still for some days).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

SHAPE_KINDS: tuple[str, ...] = ("exponential", "linear", "power", "logistic", "steps")
_LN10 = math.log(10.0)


class Progress(Protocol):
    """p(t): 0 at t <= 0, non-decreasing, <= 1."""

    def __call__(self, t: float) -> float: ...

    def describe(self) -> dict[str, Any]: ...


def _r(x: float) -> float:
    return round(x, 3)


@dataclass(frozen=True, slots=True)
class Exponential:
    tau: float

    def __call__(self, t: float) -> float:
        return 1.0 - math.exp(-t / self.tau) if t > 0 else 0.0

    def describe(self) -> dict[str, Any]:
        return {"kind": "exponential", "tau_days": _r(self.tau)}


@dataclass(frozen=True, slots=True)
class Linear:
    span: float

    def __call__(self, t: float) -> float:
        return min(1.0, t / self.span) if t > 0 else 0.0

    def describe(self) -> dict[str, Any]:
        return {"kind": "linear", "span_days": _r(self.span)}


@dataclass(frozen=True, slots=True)
class Power:
    """(t / span) ** gamma: gamma < 1 fast then slow, gamma > 1 slow then fast."""

    span: float
    gamma: float

    def __call__(self, t: float) -> float:
        return min(1.0, t / self.span) ** self.gamma if t > 0 else 0.0

    def describe(self) -> dict[str, Any]:
        return {"kind": "power", "span_days": _r(self.span), "gamma": _r(self.gamma)}


@dataclass(frozen=True, slots=True)
class Logistic:
    """A logistic curve re-scaled so that p(0) = 0 and p(inf) = 1."""

    mid: float
    width: float

    def _l(self, t: float) -> float:
        return 1.0 / (1.0 + math.exp(-(t - self.mid) / self.width))

    def __call__(self, t: float) -> float:
        if t <= 0:
            return 0.0
        l0 = self._l(0.0)
        return (self._l(t) - l0) / (1.0 - l0)

    def describe(self) -> dict[str, Any]:
        return {"kind": "logistic", "mid_days": _r(self.mid), "width_days": _r(self.width)}


def _smoothstep(x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True, slots=True)
class Steps:
    """Change in steps: step i starts at `times[i]`, takes `ramp` days and carries `weights[i]`."""

    times: tuple[float, ...]
    weights: tuple[float, ...]
    ramp: float

    def __call__(self, t: float) -> float:
        return sum(w * _smoothstep((t - s) / self.ramp) for s, w in zip(self.times, self.weights, strict=True))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "steps",
            "times_days": [_r(x) for x in self.times],
            "weights": [_r(x) for x in self.weights],
            "ramp_days": _r(self.ramp),
        }


@dataclass(frozen=True, slots=True)
class Paused:
    """`inner` with its clock stopped for `length` days from `at`."""

    inner: Progress
    at: float
    length: float

    def __call__(self, t: float) -> float:
        if t <= self.at:
            return self.inner(t)
        return self.inner(max(self.at, t - self.length))

    def describe(self) -> dict[str, Any]:
        out = dict(self.inner.describe())
        out["pause"] = {"at_days": _r(self.at), "length_days": _r(self.length)}
        return out


@dataclass(frozen=True, slots=True)
class Scaled:
    """`inner` on a clock running `speed` times as fast (per-symptom pace)."""

    inner: Progress
    speed: float

    def __call__(self, t: float) -> float:
        return self.inner(t * self.speed)

    def describe(self) -> dict[str, Any]:
        out = dict(self.inner.describe())
        out["speed"] = _r(self.speed)
        return out


def draw(
    rng: random.Random,
    t90: float,
    *,
    kinds: Sequence[str] = SHAPE_KINDS,
    pause_max: float = 0.0,
    pause_p: float = 0.25,
    step_gap_max: float = 9.0,
) -> Progress:
    """A progress shape of a random family reaching about 0.9 at `t90` days.

    `step_gap_max` bounds the flat stretches between steps, `pause_max` the length of an optional
    pause (drawn with probability `pause_p`), so that a caller can rule out long flat periods.
    """
    kind = rng.choice(list(kinds))
    shape: Progress
    if kind == "exponential":
        shape = Exponential(t90 / _LN10)
    elif kind == "linear":
        shape = Linear(t90 / 0.9)
    elif kind == "power":
        gamma = rng.choice((rng.uniform(0.55, 0.9), rng.uniform(1.1, 1.6)))
        shape = Power(t90 / 0.9 ** (1.0 / gamma), gamma)
    elif kind == "logistic":
        mid = t90 * rng.uniform(0.25, 0.5)
        width = max((t90 - mid) / math.log(9.0), mid / 2.5)
        shape = Logistic(mid, width)
    elif kind == "steps":
        n = max(2, math.ceil(t90 / rng.uniform(4.0, step_gap_max)))
        gap = t90 / n
        times = tuple(max(0.0, i * gap + rng.uniform(-0.3, 0.3) * gap) for i in range(n))
        raw = [rng.uniform(0.5, 1.5) for _ in range(n)]
        total = sum(raw)
        shape = Steps(times, tuple(w / total for w in raw), rng.uniform(0.5, min(3.0, gap * 0.8)))
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    if pause_max > 0 and rng.random() < pause_p:
        shape = Paused(shape, rng.uniform(0.15, 0.7) * t90, rng.uniform(min(3.0, pause_max), pause_max))
    return shape
