"""RFC 9457 problem details, the body of every error response."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.checkins import ItemError, RejectedItem


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[ItemError] | None = None
    rejected: list[RejectedItem] | None = Field(
        default=None, description="Batch endpoints: the rejected items by index, when none was accepted."
    )
