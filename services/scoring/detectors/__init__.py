"""The engine's detectors, in stepping order (each may read the states stepped before it that day).

Order matters: symptoms first (every other detector reads the series), activity before flare
(unusually active days are flare triggers), flare before regression (flare cover), regression
before plateau (a regression restarts the plateau clock).
"""

from __future__ import annotations

from typing import Any

from services.scoring.detectors import (
    activity,
    course_phase,
    engagement,
    flare,
    grip,
    plateau,
    red_flag,
    regression,
    spreading,
    symptoms,
)
from services.scoring.detectors.base import Detector

DETECTORS: tuple[Detector[Any], ...] = (
    symptoms.DETECTOR,
    red_flag.DETECTOR,
    spreading.DETECTOR,
    activity.DETECTOR,
    grip.DETECTOR,
    flare.DETECTOR,
    regression.DETECTOR,
    plateau.DETECTOR,
    engagement.DETECTOR,
    course_phase.DETECTOR,
)
