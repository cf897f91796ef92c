"""Tenant administration on the ingest service (scope `admin`): API keys, webhook secret, access audit.

Every operation is confined to the caller's tenant: another tenant's key is a 404, exactly like a
key that does not exist. Raw keys and webhook secrets appear only in the response that creates
them (with `Cache-Control: no-store`); listings never show them or their hashes. Request and
response bodies are the models of `schemas/admin.py`, which the OpenAPI description uses too.

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
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from nervewatch.http import Handler, authenticate, json_response
from nervewatch.identity.store import IdentityStore, KeyInactive, KeyInfo, KeyNotFound
from nervewatch.problems import ProblemError, not_found, read_json, validation_problem
from schemas.admin import (
    ACCESS_LOG_MAX_LIMIT,
    KEY_ID_PATTERN,
    AccessLogEntry,
    AccessLogPage,
    ApiKey,
    ApiKeyList,
    KeyCreate,
    KeyRotate,
    NewApiKey,
    PreviousKey,
    RotatedApiKey,
    SecretRotate,
    WebhookSecret,
)
from schemas.common import PATIENT_ID_PATTERN

_KEY_ID = re.compile(KEY_ID_PATTERN)
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)
_CURSOR = re.compile(r"[0-9]{1,19}")  # ASCII digits only (str.isdigit() also takes e.g. "²", which int() refuses)
MAX_BIGINT = 2**63 - 1
NO_STORE = {"Cache-Control": "no-store"}


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


def _api_key(info: KeyInfo) -> dict[str, Any]:
    """The fields of `ApiKey` (also the base of `NewApiKey` and `RotatedApiKey`)."""
    return {
        "key_id": info.key_id,
        "prefix": info.prefix,
        "scopes": list(info.scopes),
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "revoked_at": info.revoked_at,
        "last_used_at": info.last_used_at,
        "rotated_from": info.rotated_from,
    }


class AdminHandlers:
    def __init__(self, identity: IdentityStore) -> None:
        self.identity = identity

    def handlers(self) -> dict[str, Handler]:
        """The handlers of this module's routes, by operation id (`schemas.openapi.bind` registers them)."""
        return {
            "createApiKey": self.create_key,
            "listApiKeys": self.list_keys,
            "rotateApiKey": self.rotate_key,
            "revokeApiKey": self.revoke_key,
            "rotateWebhookSecret": self.rotate_webhook_secret,
            "getAccessLog": self.access_log,
        }

    async def create_key(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        try:
            data = KeyCreate.model_validate(await _body(request))
        except ValidationError as exc:
            return validation_problem(exc)
        info, raw = await self.identity.issue_key(
            principal.tenant_id, frozenset(data.scopes), _expires(data.expires_in_days)
        )
        body = NewApiKey(**_api_key(info), key=raw)
        return json_response(body.model_dump_json(), status=201, headers=NO_STORE)

    async def list_keys(self, request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        keys = await self.identity.list_keys(principal.tenant_id)
        return json_response(ApiKeyList(items=[ApiKey(**_api_key(k)) for k in keys]).model_dump_json())

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
        assert old.expires_at is not None  # the rotation always ends the old key (now + overlap at the latest)
        body = RotatedApiKey(
            **_api_key(new), key=raw, previous_key=PreviousKey(key_id=old.key_id, expires_at=old.expires_at)
        )
        return json_response(body.model_dump_json(), status=201, headers=NO_STORE)

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
        body = WebhookSecret(webhook_secret=secret, previous_secret_expires_at=previous_until)
        return json_response(body.model_dump_json(), headers=NO_STORE)

    async def access_log(self, request: web.Request) -> web.Response:
        """The tenant's care-scope access audit, oldest first; page with `cursor` = `next_cursor`."""
        principal = await authenticate(request, "admin")
        q = request.query
        since: datetime | None = None
        if "since" in q:
            try:
                since = datetime.fromisoformat(q["since"])
                if since.tzinfo is None:
                    raise ValueError("no offset")
                since = since.astimezone(UTC)  # OverflowError at the calendar's edges (9999-12-31T23:00-14:00)
            except (ValueError, OverflowError):
                raise _bad_param("since") from None
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise _bad_param("limit") from None
        if not 1 <= limit <= ACCESS_LOG_MAX_LIMIT:
            raise _bad_param("limit")
        after = 0
        if "cursor" in q:
            if not _CURSOR.fullmatch(q["cursor"]):
                raise _bad_param("cursor")
            # Beyond the largest id there is nothing left: an empty page, not an int8 overflow.
            after = min(int(q["cursor"]), MAX_BIGINT)
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
            AccessLogEntry(
                id=r["id"],
                at=r["at"],
                key_id=r["key_id"],
                method=r["method"],
                route=r["route"],
                patient_id=r["patient_id"],
                alert_id=r["alert_id"],
                status=r["status"],
            )
            for r in rows[:limit]
        ]
        next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
        return json_response(AccessLogPage(items=items, next_cursor=next_cursor).model_dump_json())
