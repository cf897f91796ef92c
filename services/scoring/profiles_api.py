"""Tenant clinical-profile administration on the scoring service (scope `admin`).

Routes and bodies: `schemas/clinical_profiles.py`. Every operation is confined to the caller's
tenant. An unknown condition or treatment in the path is a 404; an invalid override a 422 problem
naming each bad field (known field names only; never request text). A PUT commits one new
version row before answering 201; scoring picks it up from its next batch.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from nervewatch.http import Handler, authenticate, json_response
from nervewatch.problems import not_found, problem_response, read_json
from schemas.checkins import ItemError
from schemas.clinical_profiles import EffectiveProfile, ProfileVersion, ProfileVersionList
from services.scoring import profiles_store as store
from services.scoring.profile import ENGINE_VERSION, profile_for


def _pair(request: web.Request) -> tuple[str, str]:
    condition, treatment = request.match_info["condition"], request.match_info["treatment"]
    if condition not in store.CONDITIONS:
        raise not_found("condition")
    if treatment not in store.TREATMENTS:
        raise not_found("treatment")
    return condition, treatment


def _out(v: store.StoredVersion) -> ProfileVersion:
    return ProfileVersion(
        condition=v.condition,
        treatment=v.treatment,
        version=v.version,
        override=v.override,
        profile_version=v.profile_version,
        created_at=v.created_at,
        created_by=v.created_by,
    )


class ProfileHandlers:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {
            "listClinicalProfiles": self.list_current,
            "putClinicalProfile": self.put,
            "getClinicalProfile": self.get,
            "listClinicalProfileVersions": self.versions,
        }

    async def put(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        condition, treatment = _pair(request)
        body = await read_json(request)
        try:
            override = store.check_override(condition, treatment, body)
        except store.OverrideRejected as exc:
            errors = [ItemError(loc=list(e.loc), msg=e.msg, type=e.type) for e in exc.errors]
            return problem_response(
                422, "Validation failed", f"{len(errors)} field(s) failed validation", slug="validation", errors=errors
            )
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await store.add_version(
                conn, principal.tenant_id, condition, treatment, override, principal.key_id
            )
        return json_response(_out(stored).model_dump_json(), status=201)

    async def list_current(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        async with self.pool.acquire() as conn:
            rows = await store.current_versions(conn, principal.tenant_id)
        return json_response(ProfileVersionList(items=[_out(v) for v in rows]).model_dump_json())

    async def get(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        condition, treatment = _pair(request)
        async with self.pool.acquire() as conn:
            rows = await store.history(conn, principal.tenant_id, condition, treatment)
        current = rows[0] if rows else None
        override = current.override if current else {}
        profile = profile_for(condition, treatment, store.override_of([(condition, treatment, override)]))
        body = EffectiveProfile(
            condition=condition,
            treatment=treatment,
            version=current.version if current else 0,
            override=override,
            profile_version=profile.version,
            engine_version=ENGINE_VERSION,
            profile=profile.model_dump(mode="json"),
        )
        return json_response(body.model_dump_json())

    async def versions(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        condition, treatment = _pair(request)
        async with self.pool.acquire() as conn:
            rows = await store.history(conn, principal.tenant_id, condition, treatment)
        return json_response(ProfileVersionList(items=[_out(v) for v in rows]).model_dump_json())
