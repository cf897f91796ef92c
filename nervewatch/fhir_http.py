"""aiohttp plumbing of the FHIR R4 endpoints (`/fhir/r4/...`) shared by the three services.

`fhir_errors` (a middleware, registered by each service's app) answers every error under
`/fhir/` as an `OperationOutcome` with the same status and headers (`Retry-After`, `Allow`,
`WWW-Authenticate`) the JSON API would send as problem+json: auth, rate limits, body limits,
overload, unknown routes and methods, mapping errors. Diagnostics are NerveWatch's own sentences,
never request content. Unexpected exceptions are logged (route and type only) and answered 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import urlencode

from aiohttp import web

from nervewatch import paging
from nervewatch.http import Handler, authenticate, body_limit, read_body
from nervewatch.identity.store import Principal
from nervewatch.problems import ProblemError, parse_json
from schemas.common import PATIENT_ID_PATTERN
from schemas.fhir import codes as c
from schemas.fhir.capability import capability_json
from schemas.fhir.inbound import FhirInputError, Issue
from schemas.fhir.outbound import operation_outcome, searchset, status_outcome

log = logging.getLogger(__name__)

BASE_PATH = "/fhir/r4"
_KEPT_HEADERS = ("Retry-After", "Allow", "WWW-Authenticate")


def fhir_response(
    payload: dict[str, Any] | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type=c.FHIR_JSON, headers=headers)


@web.middleware
async def fhir_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/fhir/"):
        return await handler(request)
    try:
        return await handler(request)
    except FhirInputError as exc:
        return fhir_response(operation_outcome(exc.issues), exc.status)
    except ProblemError as exc:
        return fhir_response(status_outcome(exc.status, exc.detail or exc.title), exc.status, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            detail = f"the body limit is {body_limit(request)} bytes"
        elif exc.status == 404:
            detail = "no such FHIR endpoint (see GET /fhir/r4/metadata)"
        else:
            detail = exc.reason or "error"
        headers = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
        return fhir_response(status_outcome(exc.status, detail), exc.status, headers)
    except Exception:
        log.exception("unhandled error", extra={"route": "fhir", "method": request.method})
        return fhir_response(status_outcome(500, "internal error; it was logged"), 500)


async def read_fhir_json(request: web.Request) -> Any:
    """The request's JSON body (`application/fhir+json` or `application/json`), parsed strictly,
    within the route's body limit (`nervewatch.http.read_body`)."""
    if request.content_type not in (c.FHIR_JSON, "application/json"):
        raise ProblemError(415, "Unsupported media type", "send application/fhir+json", slug="media-type")
    return parse_json(await read_body(request))


def metadata_route(service: str) -> web.RouteDef:
    """`GET /fhir/r4/metadata`: the service's CapabilityStatement (public, like the OpenAPI document)."""
    body = capability_json(service)

    async def metadata(_: web.Request) -> web.Response:
        return fhir_response(body)

    return web.get(f"{BASE_PATH}/metadata", metadata)


def install(app: web.Application, service: str, routes: list[web.RouteDef]) -> None:
    """Register a service's FHIR routes, its metadata endpoint and the OperationOutcome middleware."""
    app.middlewares.append(fhir_errors)
    app.add_routes([*routes, metadata_route(service)])


def base_url(request: web.Request) -> str:
    """`<scheme>://<host>/fhir/r4` as the client addressed this service (for Bundle links)."""
    return f"{request.scheme}://{request.host}{BASE_PATH}"


def mark_patient(request: web.Request, patient_id: str) -> None:
    """Name the patient of a FHIR search for the access audit, which reads `match_info['patient_id']`."""
    request.match_info["patient_id"] = patient_id


# --- search parameters ------------------------------------------------------------------------------

DEFAULT_COUNT = 50
MAX_COUNT = 500
MAX_PARAM = 1024
_ID = re.compile(PATIENT_ID_PATTERN)


def bad_param(name: str, why: str = "has an invalid value") -> FhirInputError:
    return FhirInputError([Issue("invalid", f"search parameter '{name}' {why}", name, 400)])


def check_params(request: web.Request, allowed: frozenset[str]) -> None:
    """Unknown or oversized search parameters are a 400 (strict handling: nothing is silently ignored)."""
    for name, value in request.query.items():
        if name not in allowed:
            raise bad_param(name, "is not supported here (see GET /fhir/r4/metadata)")
        if len(value) > MAX_PARAM:
            raise bad_param(name)


def patient_param(request: web.Request, name: str) -> str:
    """A required patient reference parameter: `Patient/{patient_id}` or the bare patient id."""
    values = request.query.getall(name, [])
    if len(values) != 1:
        raise bad_param(name, "is required once")
    value = values[0].removeprefix("Patient/")
    if not _ID.fullmatch(value):
        raise bad_param(name)
    return value


def count_param(request: web.Request) -> int:
    count = paging.limit_of(request.query.get("_count"), DEFAULT_COUNT, MAX_COUNT, max_digits=MAX_PARAM)
    if count is None:
        raise bad_param("_count", f"must be 1-{MAX_COUNT}")
    return count


def encode_cursor(position: list[Any]) -> str:
    return paging.encode_cursor(position)


def decode_cursor(request: web.Request) -> list[Any] | None:
    """The position of a `_cursor` this service issued (opaque to clients), or None."""
    raw = request.query.get("_cursor")
    if raw is None:
        return None
    try:
        value = paging.decode_cursor(raw)
    except paging.CursorError:
        raise bad_param("_cursor", "is not a cursor this service issued; follow the next link unchanged") from None
    if not isinstance(value, list):
        raise bad_param("_cursor", "is not a cursor this service issued; follow the next link unchanged")
    return value


def page_links(request: web.Request, next_position: list[Any] | None) -> tuple[str, str | None]:
    """(self, next) URLs of a searchset page; next keeps every parameter and sets `_cursor`."""
    self_url = f"{request.scheme}://{request.host}{request.path_qs}"
    if next_position is None:
        return self_url, None
    query = [(k, v) for k, v in request.query.items() if k != "_cursor"]
    query.append(("_cursor", encode_cursor(next_position)))
    return self_url, f"{request.scheme}://{request.host}{request.path}?{urlencode(query)}"


# --- patient searches -------------------------------------------------------------------------------


class PatientSearch(NamedTuple):
    """The common part of a `care` search of one patient's resources; `page_size` is `_count`."""

    principal: Principal
    patient_id: str
    page_size: int


async def patient_search(request: web.Request, allowed: frozenset[str], patient: str) -> PatientSearch:
    """Authenticate with scope `care` (401/403), then `check_params(allowed)`, the required patient
    parameter named `patient` (marked for the access audit, `mark_patient`) and `_count`, in that
    order: the first that fails is the answer."""
    principal = await authenticate(request, "care")
    check_params(request, allowed)
    patient_id = patient_param(request, patient)
    mark_patient(request, patient_id)
    return PatientSearch(principal, patient_id, count_param(request))


def unknown_patient(param: str) -> FhirInputError:
    """The 404 of a patient that is not the caller tenant's (or not known), on parameter `param`."""
    return FhirInputError([Issue("not-found", "no such patient", param, 404)])


def searchset_response(
    request: web.Request, resource_type: str, resources: Sequence[dict[str, Any]], next_position: list[Any] | None
) -> web.Response:
    """The `searchset` Bundle of a page of `resource_type` resources, with its self link and, when
    `next_position` is given, a next link to the page after it (`page_links`)."""
    self_url, next_url = page_links(request, next_position)
    return fhir_response(searchset(base_url(request), resource_type, resources, self_url, next_url))
