"""Outbound delivery: signed webhooks (with SSRF protection) and SMTP email.

Webhooks: `NerveWatch-Signature: t=<unix>,v1=<hex HMAC-SHA256("<t>.<body>", tenant secret)>` and
`NerveWatch-Delivery: <delivery id>` (the same on every retry). Redirects are not followed (a
3xx is a failure), so a redirect to a private address cannot be used to reach one. Unless the
tenant allows private targets, host names are resolved through a resolver that refuses
private, loopback, link-local, multicast and reserved addresses, so DNS rebinding cannot
bypass the check either.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
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


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300, now: int | None = None) -> bool:
    """Receiver-side check of a signature header (used by tests and documented for partners)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((int(time.time()) if now is None else now) - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


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

    async def webhook(self, url: str, body: bytes, secret: str, delivery_id: str, allow_private: bool) -> None:
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
