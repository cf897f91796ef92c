"""Synthetic cohort simulator and detection-quality evaluation (`nervewatch simulate`).

`archetypes` generates labelled synthetic patients (pure, seeded); `client` replays them through the
public HTTP API; `evaluate` matches the alerts the pipeline raised against the ground truth.
"""

from simulator.archetypes import (
    ALL_ARCHETYPES,
    NORMAL_ARCHETYPES,
    Label,
    ScheduledPost,
    SimPatient,
    generate_cohort,
)

__all__ = [
    "ALL_ARCHETYPES",
    "NORMAL_ARCHETYPES",
    "Label",
    "ScheduledPost",
    "SimPatient",
    "generate_cohort",
]
