"""Stream tickets: single-use credentials that open the alert stream without an Authorization
header (a browser's `EventSource` cannot send one).

A ticket is 256 random bits, valid for `TICKET_TTL` (60 s) and bound to the API key (and so the
tenant) that asked for it. The table `alerts.stream_tickets` holds only its SHA-256, so a leaked
table row cannot be redeemed, and any alerts process can redeem a ticket issued by another.
Redeeming deletes the row in one statement, so of two concurrent redemptions at most one wins.
A ticket is a credential: it is never logged and never recorded in the access log (which records
the route, not the query string).

Blocking: `issue` and `redeem` each run two short statements (issue also deletes expired rows, so
the table holds at most the tickets of the last minute).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

TICKET_TTL = timedelta(seconds=60)
TICKET_PREFIX = "st_"
MAX_TICKET_LENGTH = 128  # every issued ticket is 46 characters; longer input is refused unhashed


@dataclass(frozen=True, slots=True)
class Redeemed:
    """What a redeemed ticket was bound to."""

    tenant_id: str
    key_id: str


def new_ticket() -> str:
    return TICKET_PREFIX + secrets.token_urlsafe(32)


def ticket_hash(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).digest()


def still_valid(expires_at: datetime, now: datetime) -> bool:
    """Whether a ticket expiring at `expires_at` may be redeemed at `now` (expiry is exclusive)."""
    return now < expires_at


async def issue(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, key_id: str, now: datetime
) -> tuple[str, datetime]:
    """Store a new ticket for the key; returns (ticket, expires_at). The raw ticket is returned
    once and never stored."""
    ticket = new_ticket()
    expires_at = now + TICKET_TTL
    await conn.execute("DELETE FROM alerts.stream_tickets WHERE expires_at <= $1", now)
    await conn.execute(
        """INSERT INTO alerts.stream_tickets (ticket_hash, tenant_id, key_id, created_at, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        ticket_hash(ticket),
        tenant_id,
        key_id,
        now,
        expires_at,
    )
    return ticket, expires_at


async def redeem(conn: asyncpg.Connection | asyncpg.Pool, ticket: str, now: datetime) -> Redeemed | None:
    """Use up a ticket: what it is bound to, or None when it is unknown, already used or expired.
    An expired ticket is deleted as well."""
    if not ticket.startswith(TICKET_PREFIX) or len(ticket) > MAX_TICKET_LENGTH:
        return None
    row = await conn.fetchrow(
        "DELETE FROM alerts.stream_tickets WHERE ticket_hash = $1 RETURNING tenant_id, key_id, expires_at",
        ticket_hash(ticket),
    )
    if row is None or not still_valid(row["expires_at"], now):
        return None
    return Redeemed(tenant_id=row["tenant_id"], key_id=row["key_id"])
