"""The OpenAPI description and the routers cannot drift apart: every route a service registers is
described in `schemas/openapi.py` (for that service), and every described route is registered.

FHIR routes (`/fhir/r4...`) are described by each service's CapabilityStatement instead (the
contract's FHIR section): every registered FHIR resource route names a resource type the
statement lists. The three apps are built on a stand-in runtime (nothing connects); only their
routers are read.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web

from nervewatch.identity.store import IdentityStore
from nervewatch.runtime import Runtime
from nervewatch.settings import Settings
from schemas.fhir.capability import capability_statement
from schemas.openapi import ROUTES, openapi_json
from services.alerts.app import build_app as build_alerts
from services.ingest.app import build_app as build_ingest
from services.scoring.app import build_app as build_scoring


@dataclass
class StandInRuntime:
    """What the `build_app` functions touch before start-up; nothing here connects."""

    settings: Settings = field(default_factory=Settings)
    pool: Any = None
    producer: Any = None
    dead_letters: Any = None
    openapi: Any = openapi_json
    identity: IdentityStore = field(init=False)

    def __post_init__(self) -> None:
        self.identity = IdentityStore(cast(Any, None))

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        raise AssertionError("nothing is spawned before start-up")

    create_app = Runtime.create_app

    def observe_pool(self) -> None: ...

    async def db_ready(self) -> bool:
        return True

    async def kafka_ready(self) -> bool:
        return True


def _registered(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):  # aiohttp adds HEAD to every GET
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert path is not None, route
        found.add((route.method, path))
    return found


def _fhir(routes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(m, p) for m, p in routes if p.startswith("/fhir/")}


def _described(service: str) -> set[tuple[str, str]]:
    return {(r.method.upper(), r.path) for r in ROUTES if r.service in (service, "all")}


async def test_every_registered_route_is_described_and_every_described_route_registered() -> None:
    rt = cast(Runtime, StandInRuntime())
    apps = {"ingest": build_ingest(rt), "scoring": await build_scoring(rt), "alerts": await build_alerts(rt)}
    drift = {}
    for service, app in apps.items():
        registered, described = _registered(app), _described(service)
        fhir = _fhir(registered)
        registered -= fhir
        listed = {r["type"] for rest in capability_statement(service)["rest"] for r in rest.get("resource", [])}
        for _, path in fhir:
            resource = path.removeprefix("/fhir/r4").strip("/").split("/")[0]
            assert resource in ("", "metadata") or resource in listed, (service, path)
        if registered != described:
            drift[service] = {
                "registered, not described": sorted(registered - described),
                "described, not registered": sorted(described - registered),
            }
    assert not drift, drift
