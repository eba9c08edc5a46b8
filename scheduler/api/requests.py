"""Reading a request: its JSON body, paging, `$filter`, the api-version."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from flask import current_app, request

from scheduler.domain import InvalidField
from scheduler.errors import (
    BadRequest,
    InvalidQueryParameter,
    PayloadTooLarge,
    UnsupportedMediaType,
)

API_VERSIONS = ("2014-04-01",)
MAX_TOP = 1000


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def read_json(max_bytes: int) -> Any:
    """The request body as JSON; 400 when it is not, 413-style 400 when it is too large."""
    # No text/plain: a browser sends it to another site without asking (see api.origin).
    if request.mimetype and "json" not in request.mimetype \
            and request.mimetype != "application/octet-stream":
        raise UnsupportedMediaType(f"Expected a JSON body, got {request.mimetype}.")
    body = request.get_data(cache=True)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    # A chunked body is read up to the server's limit: whether it went on tells if it is over.
    if len(body) >= limit and request.environ["wsgi.input"].read(1):
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    if len(body) > max_bytes:
        raise BadRequest(f"The job document is {len(body)} bytes; at most {max_bytes} "
                         "bytes are allowed.")
    if not body.strip():
        raise BadRequest("The request body is empty; expected a JSON document.")
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
    # Only a \u escape can make a lone surrogate (UTF-8 cannot carry one), and a string with
    # one can be neither stored nor sent.
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(document):
        raise BadRequest("The request body is not valid JSON: a \\u escape is a lone UTF-16 "
                         "surrogate, which is not a character.")
    return document


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string (key or value) in a parsed document holds a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def refuse_nul_characters() -> None:
    """A NUL character is in no name or value: refuse a path or query holding one before
    anything looks it up (PostgreSQL cannot even compare a text with one)."""
    if "\x00" in request.path:
        raise BadRequest("The request path contains a NUL character.")
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            shown = name.replace("\x00", "\\0")
            raise InvalidQueryParameter(f"The query parameter {shown} contains a NUL "
                                        "character.")


def flag_parameter(name: str) -> bool:
    """A query parameter that is `true` or `false` (any case); false when absent."""
    value = request.args.get(name)
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise InvalidQueryParameter(f"The query parameter {name} must be true or false.")
    return value.lower() == "true"


def paging(max_skip: int = 10**9) -> tuple[int | None, int]:
    """`$top` and `$skip`, checked."""
    return count_parameter("$top", MAX_TOP, minimum=1), \
        count_parameter("$skip", max_skip, minimum=0) or 0


def count_parameter(name: str, maximum: int, minimum: int) -> int | None:
    """A whole-number query parameter within its bounds; None when it is not given."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"\d{1,10}", raw.strip()):
        raise InvalidQueryParameter(f"{name} must be a whole number, not {raw!r}.")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InvalidQueryParameter(f"{name} must be between {minimum} and {maximum}.")
    return value


def equality_filter(field: str, allowed: Iterable[str]) -> str | None:
    """Read `$filter=FIELD eq 'VALUE'`; the value is matched case-insensitively."""
    raw = request.args.get("$filter")
    if raw is None:
        return None
    match = re.fullmatch(rf"\s*{field}\s+eq\s+'?([A-Za-z]+)'?\s*", raw, re.IGNORECASE)
    choices = list(allowed)
    if match is None:
        raise InvalidQueryParameter(f"$filter must read \"{field} eq 'VALUE'\", not {raw!r}.")
    value = match.group(1).lower()
    if value not in choices:
        raise InvalidQueryParameter(f"$filter: {field} must be one of {', '.join(choices)}.")
    return value


def check_api_version() -> None:
    """The job routes speak api-version 2014-04-01; a missing version is taken to mean it."""
    version = request.args.get("api-version")
    if version is not None and version not in API_VERSIONS:
        raise InvalidQueryParameter(
            f"api-version {version!r} is not supported; use {API_VERSIONS[0]}.")


def field_error(exc: InvalidField) -> BadRequest:
    """A validation failure as the 400 the client sees."""
    return BadRequest(f"{exc.field}: {exc.message}" if exc.field else exc.message)
