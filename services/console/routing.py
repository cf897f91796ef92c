"""Which service owns a /v1 path (pure): the same split a production ingress makes by path.

Each service serves what it owns (shared/CONTRACT.md, "Care read API"): alerts the alert routes,
snoozes and the patient alert audit; scoring trajectories, check-in history, conflicts and billing;
ingest everything else under /v1 (patients, check-ins, activity, admin keys).
"""

from __future__ import annotations

import re
from typing import Literal

Upstream = Literal["ingest", "scoring", "alerts"]

_PATIENT_SUB = re.compile(r"^/v1/patients/[^/]+/(?P<sub>[^/]+)(?:/.*)?$")
_SCORING_PATIENT_SUBS = frozenset({"checkins", "trajectory", "time-entries", "billing"})
_ALERTS_PATIENT_SUBS = frozenset({"snoozes", "audit"})


def upstream_for(path: str) -> Upstream | None:
    """The service for `path` (already percent-decoded by the server), or None when no service
    serves it (not under /v1/). Never raises."""
    if path != "/v1" and not path.startswith("/v1/"):
        return None
    if path == "/v1/alerts" or path.startswith("/v1/alerts/") or path == "/v1/admin/alert-policy":
        return "alerts"
    if path in ("/v1/trajectories", "/v1/conflicts", "/v1/admin/billing-settings") or path.startswith("/v1/billing/"):
        return "scoring"
    if path == "/v1/billing":
        return "scoring"
    match = _PATIENT_SUB.match(path)
    if match is not None:
        sub = match.group("sub")
        if sub in _SCORING_PATIENT_SUBS:
            return "scoring"
        if sub in _ALERTS_PATIENT_SUBS:
            return "alerts"
    return "ingest"
