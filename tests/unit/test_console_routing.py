"""The console proxy's path split (pure): each /v1 path goes to the service that serves it."""

from __future__ import annotations

import pytest

from services.console.routing import upstream_for


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/v1/alerts", "alerts"),
        ("/v1/alerts/counts", "alerts"),
        ("/v1/alerts/stream", "alerts"),
        ("/v1/alerts/stream-tickets", "alerts"),
        ("/v1/alerts/al_1/audit", "alerts"),
        ("/v1/alerts/al_1/acknowledge", "alerts"),
        ("/v1/patients/pt-1/snoozes", "alerts"),
        ("/v1/patients/pt-1/snoozes/sn_1", "alerts"),
        ("/v1/patients/pt-1/audit", "alerts"),
        ("/v1/admin/alert-policy", "alerts"),
        ("/v1/trajectories", "scoring"),
        ("/v1/patients/pt-1/trajectory", "scoring"),
        ("/v1/patients/pt-1/checkins", "scoring"),
        ("/v1/patients/pt-1/billing", "scoring"),
        ("/v1/patients/pt-1/time-entries", "scoring"),
        ("/v1/patients/pt-1/time-entries/te_1/audit", "scoring"),
        ("/v1/billing/report", "scoring"),
        ("/v1/conflicts", "scoring"),
        ("/v1/admin/billing-settings", "scoring"),
        ("/v1/patients", "ingest"),
        ("/v1/patients/pt-1", "ingest"),
        ("/v1/checkins", "ingest"),
        ("/v1/checkins/batch", "ingest"),
        ("/v1/activity", "ingest"),
        ("/v1/admin/keys", "ingest"),
        ("/v1/admin/keys/key_1", "ingest"),
        ("/v1/unknown", "ingest"),
    ],
)
def test_each_path_goes_to_its_owner(path: str, service: str) -> None:
    assert upstream_for(path) == service


@pytest.mark.parametrize("path", ["/", "/console/", "/v2/alerts", "/v1x", "/healthz"])
def test_paths_outside_v1_have_no_upstream(path: str) -> None:
    assert upstream_for(path) is None
