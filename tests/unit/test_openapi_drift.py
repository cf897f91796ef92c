"""The OpenAPI description and the routers cannot drift apart: every route a service registers is
described in `schemas/openapi.py` (for that service), and every described route is registered.
The `/v1` routes hold by construction (`schemas.openapi.bind` registers them from the table and
refuses a missing or an unknown handler); the `"all"` routes are the plumbing's (`create_app`).

FHIR routes (`/fhir/r4...`) are described by each service's CapabilityStatement instead (the
contract's FHIR section): every registered FHIR resource route names a resource type the
statement lists. The three apps are built on a stand-in runtime (nothing connects); only their
routers are read.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiohttp import web

from nervewatch.http import Handler
from nervewatch.identity.store import IdentityStore
from nervewatch.runtime import Runtime
from nervewatch.settings import Settings
from schemas.fhir.capability import capability_statement
from schemas.openapi import ROUTES, Route, bind, openapi_json
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


async def _handler(_: web.Request) -> web.Response:
    return web.Response()


def _full(service: str) -> dict[str, Handler]:
    return {r.operation_id: _handler for r in ROUTES if r.service == service}


def test_bind_registers_the_services_routes_in_table_order_with_head_for_get() -> None:
    app = web.Application()
    bind(app.router, "alerts", _full("alerts"))
    expected = []
    for r in ROUTES:
        if r.service == "alerts":
            expected += [("HEAD", r.path)] if r.method == "get" else []
            expected.append((r.method.upper(), r.path))
    registered = [(route.method, route.resource.canonical) for route in app.router.routes() if route.resource]
    assert registered == expected


def test_bind_refuses_a_missing_handler() -> None:
    handlers = _full("scoring")
    del handlers["getTrajectory"]
    app = web.Application()
    with pytest.raises(ValueError, match="missing \\['getTrajectory'\\]"):
        bind(app.router, "scoring", handlers)
    assert not list(app.router.routes())  # nothing registered


def test_bind_refuses_a_handler_the_table_does_not_describe() -> None:
    app = web.Application()
    with pytest.raises(ValueError, match="not described \\['getAlert', 'undocumented'\\]"):
        bind(app.router, "ingest", _full("ingest"), {"undocumented": _handler, "getAlert": _handler})
    assert not list(app.router.routes())


def test_bind_refuses_an_operation_given_twice() -> None:
    with pytest.raises(ValueError, match="given twice \\['postActivity'\\]"):
        bind(web.Application().router, "ingest", _full("ingest"), {"postActivity": _handler})


def test_bind_does_not_register_the_routes_every_service_has() -> None:
    with pytest.raises(ValueError, match="not described \\['healthz'\\]"):
        bind(web.Application().router, "ingest", _full("ingest"), {"healthz": _handler})


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.operation_id)
def test_path_parameters_are_the_declared_path_params(route: Route) -> None:
    in_path = re.findall(r"\{([^}:]+)\}", route.path)
    declared = [p.name for p in route.params if p.where == "path"]
    assert sorted(in_path) == sorted(declared)
    assert len(set(in_path)) == len(in_path)


def test_operation_ids_are_unique() -> None:
    ids = [r.operation_id for r in ROUTES]
    assert len(set(ids)) == len(ids)


def test_no_route_is_shadowed_by_an_earlier_template_of_its_service() -> None:
    """`bind` registers in table order and aiohttp matches in registration order, so a literal
    path (`/v1/alerts/counts`) must come before a template that matches it (`/v1/alerts/{alert_id}`)."""
    for i, later in enumerate(ROUTES):
        for earlier in ROUTES[:i]:
            if earlier.service != later.service or earlier.method != later.method or "{" not in earlier.path:
                continue
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(earlier.path))
            assert not re.fullmatch(pattern, later.path), (earlier.path, later.path)
