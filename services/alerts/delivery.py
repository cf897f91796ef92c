"""Outbound delivery: signed webhooks (with SSRF protection) and SMTP email.

Webhooks: `NerveWatch-Signature: t=<unix>,v1=<hex HMAC-SHA256("<t>.<body>", tenant secret)>` and
`NerveWatch-Delivery: <delivery id>` (the same on every retry). While a rotated webhook secret's
overlap lasts, the header carries one `v1=` per valid secret, the new one first
(`t=<unix>,v1=<new>,v1=<old>`); a receiver accepts the webhook if any `v1` matches a secret it holds.
Redirects are not followed (a 3xx is a failure), so a redirect to a private address cannot be
used to reach one. Unless the tenant allows private targets, host names are resolved through a resolver that refuses
private, loopback, link-local, multicast and reserved addresses, so DNS rebinding cannot
bypass the check either.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from nervewatch.settings import Settings


class DeliveryError(Exception):
    """A delivery attempt failed; `code` is a short, log-safe reason."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


MAX_SIGNATURES = 8  # v1 values a verifier looks at; more is not a header we sent


def _secrets(secret: str | Sequence[str]) -> list[str]:
    return [secret] if isinstance(secret, str) else list(secret)


def _mac(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | Sequence[str], body: bytes, timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<mac>` with one `v1` per secret, in the order given (current secret first)."""
    t = int(time.time()) if timestamp is None else timestamp
    keys = _secrets(secret)
    if not keys:
        raise ValueError("no signing secret")
    return ",".join([f"t={t}", *(f"v1={_mac(k, t, body)}" for k in keys)])


def verify(
    secret: str | Sequence[str], header: str, body: bytes, tolerance_s: int = 300, now: int | None = None
) -> bool:
    """Receiver-side check of a signature header (used by tests and documented for partners).

    True if the timestamp is within `tolerance_s` and any `v1` signature in the header matches any
    of the given secrets (a receiver mid-rotation may pass both its old and new secret)."""
    t_values: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            t_values.append(value)
        elif name == "v1" and len(signatures) < MAX_SIGNATURES:
            signatures.append(value)
    if len(t_values) != 1 or not signatures:
        return False
    try:
        t = int(t_values[0])
    except ValueError:
        return False
    if abs((int(time.time()) if now is None else now) - t) > tolerance_s:
        return False
    matched = False
    for key in _secrets(secret):
        expected = _mac(key, t, body)
        for candidate in signatures:
            # Compare every pair (no early exit) so timing does not reveal which one matched.
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched


def is_public_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the default resolver, but refuses non-public addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if is_public_address(r["host"])]
        if not allowed:
            raise OSError(f"refusing non-public address for {host}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def check_url(url: str, allow_private: bool) -> None:
    """Reject non-http(s) URLs and literal non-public IPs (names are checked at resolution)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("invalid_url")
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname in ("localhost",) or parts.hostname.endswith(".localhost"):
            raise DeliveryError("blocked_target") from None
        return
    if not is_public_address(str(literal)):
        raise DeliveryError("blocked_target")


class Deliverer:
    """Owns two HTTP sessions (public-only and unrestricted) and the SMTP settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        timeout = aiohttp.ClientTimeout(
            total=settings.webhook_connect_timeout_s + settings.webhook_read_timeout_s,
            connect=settings.webhook_connect_timeout_s,
            sock_read=settings.webhook_read_timeout_s,
        )
        self._public = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(resolver=PublicOnlyResolver(), limit=100)
        )
        self._open = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=100))

    async def close(self) -> None:
        await self._public.close()
        await self._open.close()

    async def webhook(
        self, url: str, body: bytes, secret: str | Sequence[str], delivery_id: str, allow_private: bool
    ) -> None:
        """POST a signed webhook; `secret` may be several secrets (current first) during a rotation."""
        check_url(url, allow_private)
        session = self._open if allow_private else self._public
        headers = {
            "Content-Type": "application/json",
            "NerveWatch-Signature": sign(secret, body),
            "NerveWatch-Delivery": delivery_id,
            "User-Agent": "NerveWatch-Webhooks/1",
        }
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                if not 200 <= resp.status < 300:
                    raise DeliveryError(f"http_{resp.status}")
        except DeliveryError:
            raise
        except TimeoutError:
            raise DeliveryError("timeout") from None
        except (aiohttp.ClientError, OSError):
            raise DeliveryError("connection_failed") from None

    async def email(self, to: str, alert: dict[str, Any], delivery_id: str) -> None:
        """Send a short notice. It names the patient id and the alert, never reasons or notes."""
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = to
        msg["Subject"] = f"[NerveWatch] {alert['severity'].upper()} {alert['kind']} alert"
        msg["X-NerveWatch-Delivery"] = delivery_id
        msg["Message-ID"] = f"<{delivery_id}@nervewatch>"
        msg.set_content(
            f"{alert['summary']}\n\nPatient: {alert['patient_id']}\nAlert: {alert['id']}\n"
            f"Severity: {alert['severity']}\nStatus: {alert['status']}\n\n"
            "Open the care console to review and acknowledge.\n"
        )
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                username=self.settings.smtp_username,
                password=self.settings.smtp_password,
                start_tls=self.settings.smtp_use_tls,
                timeout=self.settings.webhook_read_timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            raise DeliveryError("smtp_failed") from None
