"""Tenant clinical-profile administration (scoring service, scope `admin`).

    PUT /v1/admin/clinical-profiles/{condition}/{treatment}           body: {field: value}  -> 201 version
    GET /v1/admin/clinical-profiles                                    -> 200 current versions
    GET /v1/admin/clinical-profiles/{condition}/{treatment}           -> 200 effective profile
    GET /v1/admin/clinical-profiles/{condition}/{treatment}/versions  -> 200 history, newest first

The PUT body holds only the fields the tenant overrides (any field of the effective profile shown
by GET; `{}` returns the pair to the defaults as a new version). `profile_version` is the content
hash of the effective profile, the value trajectories record next to `engine_version`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import UtcDatetime


class ProfileVersion(BaseModel):
    """One stored version of a tenant's override of one (condition, treatment) pair."""

    condition: str
    treatment: str
    version: int = Field(ge=1)
    override: dict[str, Any]
    profile_version: str
    created_at: UtcDatetime
    created_by: str = Field(description="id of the API key that stored the version")


class ProfileVersionList(BaseModel):
    items: list[ProfileVersion]


class EffectiveProfile(BaseModel):
    """The profile scoring uses for a pair: defaults plus the tenant's current override."""

    condition: str
    treatment: str
    version: int = Field(ge=0, description="the tenant's current version; 0 = defaults, never overridden")
    override: dict[str, Any]
    profile_version: str
    engine_version: str
    profile: dict[str, Any]


class ProfileOverrideBody(BaseModel):
    """The PUT body: `ClinicalProfile` fields to override, each a number, integer or list of
    `[day, value]` knots as shown by the effective profile (checked strictly by the service)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})
