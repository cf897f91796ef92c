"""RFC 9457 problem+json responses. Details never echo request content (it may be health data)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.checkins import ItemError, RejectedItem
from schemas.problems import Problem

PROBLEM_TYPE = "application/problem+json"
BASE = "https://nervewatch.dev/problems/"


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    slug: str | None = None,
    errors: Sequence[ItemError] | None = None,
    rejected: Sequence[RejectedItem] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = Problem(
        type=BASE + slug if slug else "about:blank",
        title=title,
        status=status,
        detail=detail,
        errors=list(errors) if errors is not None else None,
        rejected=list(rejected) if rejected is not None else None,
    )
    return web.Response(
        status=status,
        body=body.model_dump_json(exclude_none=True).encode(),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def item_errors(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[ItemError]:
    """Validation errors as loc/msg/type, without the offending input values."""
    return [item_error(e, prefix) for e in exc.errors(include_input=False, include_url=False)]


def item_error(e: ErrorDetails, prefix: Sequence[str | int] = ()) -> ItemError:
    """One validation error (from `errors(include_input=False)`) as loc/msg/type, `loc` after `prefix`."""
    msg = e["msg"]
    if e["type"] in ("value_error", "assertion_error"):
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return ItemError(loc=[*prefix, *e["loc"]], msg=msg, type=e["type"])


def validation_problem(exc: ValidationError, prefix: Sequence[str | int] = ()) -> web.Response:
    errors = item_errors(exc, prefix)
    return problem_response(
        422,
        "Validation failed",
        f"{len(errors)} field(s) failed validation",
        slug="validation",
        errors=errors,
    )


def sanitized(exc: ValidationError) -> str:
    """A log- and dead-letter-safe summary: locations and error types only."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}:{e['type']}" for e in exc.errors(include_input=False)]
    return "; ".join(parts)[:500]


MAX_JSON_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: Any, limit: int) -> bool:
    """Whether `value` nests arrays/objects more than `limit` levels deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def parse_json(raw: bytes) -> Any:
    """Parse a request body strictly, or raise a 400 problem.

    Beyond `json.loads`: the body must be UTF-8 (a leading BOM is ignored); `NaN`/`Infinity` are
    refused (not JSON); arrays and objects may nest at most `MAX_JSON_DEPTH` levels (checked without
    recursion, so even 1 MiB of `[` is a 400, not a RecursionError); strings may not hold unpaired
    surrogates (`\\ud800`: not re-encodable) or NUL characters (PostgreSQL text and jsonb cannot
    hold them). The checks beyond parsing only run when a scan of the text says they could apply.
    """
    try:
        text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        raise ProblemError(400, "Malformed JSON", "the body is not UTF-8", slug="malformed-json") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _too_deep_problem() from None
    except ValueError:
        raise ProblemError(400, "Malformed JSON", "the body is not valid JSON", slug="malformed-json") from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _too_deep(value, MAX_JSON_DEPTH):
        raise _too_deep_problem()
    if "\\u" in text:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ProblemError(
                400, "Malformed JSON", "the body contains an unpaired surrogate escape", slug="malformed-json"
            ) from None
        if "\\u0000" in text and _has_nul(value):
            raise ProblemError(
                400, "Malformed JSON", "NUL characters (\\u0000) are not accepted", slug="malformed-json"
            )
    return value


def _too_deep_problem() -> ProblemError:
    return ProblemError(
        400, "JSON nested too deeply", f"arrays and objects may nest at most {MAX_JSON_DEPTH} levels", slug="too-deep"
    )


async def read_json(request: web.Request) -> Any:
    """The request's JSON body. Raises a 415 or 400 problem for the wrong type or bad JSON (see `parse_json`)."""
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ProblemError(415, "Unsupported media type", "send application/json", slug="media-type")
    return parse_json(await request.read())


class ProblemError(Exception):
    """Raise from a handler to answer with a problem+json response."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        errors: Sequence[ItemError] | None = None,
        rejected: Sequence[RejectedItem] | None = None,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.headers = headers
        self.errors = errors
        self.rejected = rejected

    def response(self) -> web.Response:
        return problem_response(
            self.status,
            self.title,
            self.detail,
            slug=self.slug,
            headers=self.headers,
            errors=self.errors,
            rejected=self.rejected,
        )


def not_found(what: str = "resource") -> ProblemError:
    return ProblemError(404, "Not found", f"no such {what}", slug="not-found")
