"""Problem+json answers for requests that aiohttp's HTTP parser refuses, before any application code.

aiohttp answers a request it cannot parse itself, in `RequestHandler.handle_error`: a `text/plain`
400 whose body is the parser's message (which quotes up to 100 bytes of the offending line: a
path with a patient id, a header with an API key), logged at error level with a traceback that
quotes the same bytes. `ProblemRequestHandler` overrides that one method, and `ProblemAppRunner`
is an `AppRunner` whose connections use it. `nervewatch.http.serve` runs every service with it.

Answers (always `application/problem+json`, `Connection: close`, nothing of the request echoed):
- `414` the request line is over `max_line_size` bytes;
- `431` a header field (name and value) is over `max_field_size` bytes, or there are more than
  `max_headers` header (or trailer) lines;
- `400` any other parse failure (bad method, bad header token, bad framing, bad chunk size...);
- `500` / `504` for the (unreachable through `nervewatch.http.observe`) failures aiohttp routes
  through `handle_error` after the parser, problem+json as well.

The parser's `LineTooLong` names the limit it exceeded, not which part of the request it was
reading, so the two limits must differ (`ProblemAppRunner` refuses equal ones): the limit tells
414 from 431. (aiohttp's pure-Python parser, used only without its C extension, reports a header
line that is still incomplete when the buffer passes `max_line_size` against that limit, so there
such a header is answered 414.)

Logs (logger `nervewatch.http_protocol`), one line per refused request and never the request's
content, its peer address or a traceback: `warning` for 414/431 with the status and the limit
exceeded (the only thing known about the request's size: it was larger); `info` for other 400s
with the parser error's class name (`debug` for `BadHttpMethod`: non-HTTP traffic such as TLS
on the port, internet noise). Each refusal is also counted in `nervewatch_http_requests_total`
(route `unparsed`, method `-`). aiohttp's own `log_exception` calls on this handler (an exception
escaping a request task) keep their message but lose the exception's text: the error class and
the stack frames are logged, never the exception message, which may quote request content.

This relies on aiohttp internals: `AppRunner._make_server`, `Server._loop` and `Server._kwargs`,
`RequestHandler.handle_error(request, status, exc, message)` being the only path of parser errors,
and `LineTooLong.args == (line, limit, size)`. tests/integration/test_http_protocol.py fails if
aiohttp changes any of them.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler

from nervewatch import metrics
from nervewatch.problems import problem_response

log = logging.getLogger(__name__)

UNPARSED_ROUTE = "unparsed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """How to answer a request the parser refused. `limit` is the size limit it exceeded, if any."""

    status: int
    title: str
    detail: str
    slug: str
    limit: int | None = None


def classify(exc: BaseException | None, *, max_line_size: int, max_field_size: int, max_headers: int) -> Refusal:
    """The answer to a parse failure `exc` of a parser with these limits (pure)."""
    if isinstance(exc, LineTooLong):
        limit = _limit_of(exc)
        if limit == max_field_size:
            return Refusal(
                431,
                "Request header fields too large",
                f"a header field (name and value) may be at most {max_field_size} bytes",
                "headers-too-large",
                max_field_size,
            )
        if limit == max_line_size:
            return Refusal(
                414,
                "URI too long",
                f"the request line may be at most {max_line_size} bytes",
                "uri-too-long",
                max_line_size,
            )
    if isinstance(exc, BadHttpMessage) and exc.message.startswith(("Too many headers", "Too many trailers")):
        return Refusal(
            431,
            "Request header fields too large",
            f"a request may carry at most {max_headers} header fields",
            "headers-too-large",
            max_headers,
        )
    return Refusal(400, "Bad request", "the request is not valid HTTP/1.1", "malformed-request")


def _limit_of(exc: LineTooLong) -> int | None:
    try:
        return int(exc.args[1])
    except (IndexError, TypeError, ValueError):
        return None


def _stack(exc: BaseException | None) -> str | None:
    """The frames of `exc`'s traceback without its message (source lines, never runtime values)."""
    if exc is None or exc.__traceback__ is None:
        return None
    return "".join(traceback.format_tb(exc.__traceback__))[-4000:]


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler with problem+json parse-error answers (see the module doc)."""

    __slots__ = ("_service",)

    def __init__(self, manager: web.Server, *, service: str, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._service = service

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request the parser refused (status 400) or whose task failed (500, 504).

        Logs as the module doc says; raises ConnectionError when a response has already begun
        (as aiohttp does: the connection is then broken). The answer closes the connection."""
        del message  # the parser's message quotes the request: never sent, never logged
        if status == 400:
            refusal = classify(
                exc, max_line_size=self.max_line_size, max_field_size=self.max_field_size, max_headers=self.max_headers
            )
            error = type(exc).__name__ if exc is not None else None
            if refusal.limit is not None:
                log.warning(
                    "request refused: over the size limit",
                    extra={"status": refusal.status, "limit_bytes": refusal.limit, "error": error},
                )
            else:
                level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.INFO
                log.log(level, "request refused: not valid HTTP", extra={"status": 400, "error": error})
            answer = problem_response(refusal.status, refusal.title, refusal.detail, slug=refusal.slug)
            status = refusal.status
        else:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            log.error(
                "request failed outside the application",
                extra={"status": status, "error": type(exc).__name__ if exc else None, "stack": _stack(exc)},
            )
            answer = problem_response(status, phrase, "the error was logged", slug="internal")
        metrics.HTTP_REQUESTS.labels(self._service, UNPARSED_ROUTE, "-", str(status)).inc()
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        answer.force_close()
        return answer

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's error log, without the exception's message (it may quote request content)."""
        exc_info = kw.get("exc_info")
        exc = exc_info if isinstance(exc_info, BaseException) else None
        msg = args[0] if args and isinstance(args[0], str) else ""
        self.logger.error(
            msg.split("%", 1)[0].split(", got", 1)[0].strip() or "aiohttp server error",
            extra={"error": type(exc).__name__ if exc else None, "stack": _stack(exc)},
        )


class _ProblemServer(web.Server):
    """An aiohttp `Server` whose connections are `ProblemRequestHandler`s."""

    def __init__(self, *args: Any, service: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._service = service

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, service=self._service, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """`web.AppRunner` serving `app` with `ProblemRequestHandler` connections and explicit parser limits.

    `service` labels the refusal metrics. `max_line_size` and `max_field_size` must differ (the
    limit tells a 414 from a 431). Other keyword arguments are `web.AppRunner`'s."""

    __slots__ = ("_service",)

    def __init__(
        self,
        app: web.Application,
        *,
        service: str,
        max_line_size: int,
        max_field_size: int,
        max_headers: int,
        **kwargs: Any,
    ) -> None:
        if max_line_size == max_field_size:
            raise ValueError("max_line_size and max_field_size must differ (the limit tells 414 from 431)")
        super().__init__(
            app, max_line_size=max_line_size, max_field_size=max_field_size, max_headers=max_headers, **kwargs
        )
        self._service = service

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _ProblemServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            service=self._service,
            **plain._kwargs,
        )
