"""Tenant administration on the ingest service (scope `admin`): API keys, webhook secret, access audit.

Every operation is confined to the caller's tenant: another tenant's key is a 404, exactly like a
key that does not exist. Raw keys and webhook secrets appear only in the response that creates
them (with `Cache-Control: no-store`); listings never show them or their hashes.

    POST   /v1/admin/keys                    {scopes, expires_in_days?}   -> 201 new key (raw key once)
    GET    /v1/admin/keys                                                 -> 200 {items: [key...]}
    POST   /v1/admin/keys/{key_id}/rotate    {overlap_hours?=24, expires_in_days?} -> 201 successor
    DELETE /v1/admin/keys/{key_id}                                        -> 204 (revoked)
    POST   /v1/admin/webhook-secret/rotate   {overlap_hours?=24}          -> 200 new secret (once)
    GET    /v1/admin/access-log?since=&limit=&cursor=&patient_id=&key_id= -> 200 {items, next_cursor}
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nervewatch.http import authenticate, json_response
from nervewatch.identity.store import IdentityStore, KeyInactive, KeyNotFound
from nervewatch.problems import ProblemError, not_found, read_json, validation_problem
from schemas.common import PATIENT_ID_PATTERN

MAX_OVERLAP_HOURS = 720.0  # 30 days
MAX_EXPIRES_DAYS = 3650
ACCESS_LOG_MAX_LIMIT = 1000
_KEY_ID = re.compile(r"key_[0-9a-f]{16}")
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)
NO_STORE = {"Cache-Control": "no-store"}


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[Literal["ingest", "care", "admin"]] = Field(min_length=1, max_length=3)
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_DAYS)


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_hours: float = Field(default=24.0, ge=0, le=MAX_OVERLAP_HOURS, allow_inf_nan=False)
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_DAYS)


class SecretRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_hours: float = Field(default=24.0, ge=0, le=MAX_OVERLAP_HOURS, allow_inf_nan=False)


async def _body(request: web.Request) -> Any:
    """The JSON body; an absent body counts as `{}` (every field of these requests is optional or checked)."""
    if not request.body_exists:
        return {}
    return await read_json(request)


def _expires(days: int | None) -> datetime | None:
    return None if days is None else datetime.now(UTC) + timedelta(days=days)


def _key_id(request: web.Request) -> str:
    key_id = request.match_info["key_id"]
    if not _KEY_ID.fullmatch(key_id):
        raise not_found("key")
    return key_id


def _bad_param(name: str) -> ProblemError:
    return ProblemError(400, "Invalid query parameter", f"'{name}' has an invalid value", slug="invalid-parameter")


class AdminHandlers:
    def __init__(self, identity: IdentityStore) -> None:
        self.identity = identity

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/admin/keys", self.create_key),
            web.get("/v1/admin/keys", self.list_keys),
            web.post("/v1/admin/keys/{key_id}/rotate", self.rotate_key),
            web.delete("/v1/admin/keys/{key_id}", self.revoke_key),
            web.post("/v1/admin/webhook-secret/rotate", self.rotate_webhook_secret),
            web.get("/v1/admin/access-log", self.access_log),
        ]

    async def create_key(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        try:
            data = KeyCreate.model_validate(await _body(request))
        except ValidationError as exc:
            return validation_problem(exc)
        info, raw = await self.identity.issue_key(
            principal.tenant_id, frozenset(data.scopes), _expires(data.expires_in_days)
        )
        return json_response({**info.to_json(), "key": raw}, status=201, headers=NO_STORE)

    async def list_keys(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        keys = await self.identity.list_keys(principal.tenant_id)
        return json_response({"items": [k.to_json() for k in keys]})

    async def rotate_key(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        key_id = _key_id(request)
        try:
            data = KeyRotate.model_validate(await _body(request))
        except ValidationError as exc:
            return validation_problem(exc)
        try:
            new, raw, old = await self.identity.rotate_key(
                principal.tenant_id, key_id, timedelta(hours=data.overlap_hours), _expires(data.expires_in_days)
            )
        except KeyNotFound:
            raise not_found("key") from None
        except KeyInactive:
            raise ProblemError(
                409, "Conflict", "the key is revoked or expired; create a new one", slug="conflict"
            ) from None
        body = {**new.to_json(), "key": raw, "previous_key": {"key_id": old.key_id, "expires_at": _iso(old.expires_at)}}
        return json_response(body, status=201, headers=NO_STORE)

    async def revoke_key(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        key_id = _key_id(request)
        if not await self.identity.revoke_key(principal.tenant_id, key_id):
            raise not_found("key")
        return web.Response(status=204)

    async def rotate_webhook_secret(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        try:
            data = SecretRotate.model_validate(await _body(request))
        except ValidationError as exc:
            return validation_problem(exc)
        rotated = await self.identity.rotate_webhook_secret(principal.tenant_id, timedelta(hours=data.overlap_hours))
        if rotated is None:
            raise not_found("tenant")
        secret, previous_until = rotated
        body = {"webhook_secret": secret, "previous_secret_expires_at": _iso(previous_until)}
        return json_response(body, headers=NO_STORE)

    async def access_log(self, request: web.Request) -> web.Response:
        """The tenant's care-scope access audit, oldest first; page with `cursor` = `next_cursor`."""
        principal = await authenticate(request, "admin")
        q = request.query
        since: datetime | None = None
        if "since" in q:
            try:
                since = datetime.fromisoformat(q["since"])
            except ValueError:
                raise _bad_param("since") from None
            if since.tzinfo is None:
                raise _bad_param("since")
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise _bad_param("limit") from None
        if not 1 <= limit <= ACCESS_LOG_MAX_LIMIT:
            raise _bad_param("limit")
        after = 0
        if "cursor" in q:
            if not q["cursor"].isdigit() or len(q["cursor"]) > 19:
                raise _bad_param("cursor")
            after = int(q["cursor"])
        patient_id = q.get("patient_id")
        if patient_id is not None and not _PATIENT_ID.fullmatch(patient_id):
            raise _bad_param("patient_id")
        key_id = q.get("key_id")
        if key_id is not None and not _KEY_ID.fullmatch(key_id):
            raise _bad_param("key_id")
        rows = await self.identity.read_access_log(
            principal.tenant_id, since=since, after_id=after, limit=limit + 1, patient_id=patient_id, key_id=key_id
        )
        items = [
            {
                "id": r["id"],
                "at": r["at"].isoformat(),
                "key_id": r["key_id"],
                "method": r["method"],
                "route": r["route"],
                "patient_id": r["patient_id"],
                "alert_id": r["alert_id"],
                "status": r["status"],
            }
            for r in rows[:limit]
        ]
        next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
        return json_response({"items": items, "next_cursor": next_cursor})


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
