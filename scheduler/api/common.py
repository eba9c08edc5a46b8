"""What every route shares: the runtime, request ids, bodies, paging, errors, path rules."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from sqlalchemy import Connection
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from scheduler.clock import Clock
from scheduler.db.session import Database
from scheduler.domain import InvalidField
from scheduler.errors import (
    BadRequest,
    InvalidHttpVerb,
    InvalidQueryParameter,
    NotFound,
    PayloadTooLarge,
    SchedulerError,
    UnsupportedMediaType,
    error_response,
)
from scheduler.security.secrets import SecretBox
from scheduler.services import new_request_id
from scheduler.services.operations import OperationRunner
from scheduler.settings import Settings

log = logging.getLogger(__name__)

API_VERSIONS = ("2014-04-01",)
MAX_TOP = 1000
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass
class Runtime:
    """What the routes need: configuration, clock, database, secret box, operation runner."""

    settings: Settings
    clock: Clock
    db: Database
    box: SecretBox
    operations: OperationRunner
    node_id: str


def runtime() -> Runtime:
    """The runtime of the current app."""
    value: Runtime = current_app.extensions["scheduler"]
    return value


def read_connection() -> Connection:
    """This request's read-only connection, opened on first use and closed at teardown."""
    if "read_connection" not in g:
        g.read_connection = runtime().db.read_engine.connect()
    conn: Connection = g.read_connection
    return conn


def close_read_connection(_error: BaseException | None = None) -> None:
    """Give the request's read connection back to the pool."""
    conn = g.pop("read_connection", None)
    if conn is not None:
        conn.close()


def request_id() -> str:
    """This request's id, as sent back in `x-ms-request-id`."""
    if "request_id" not in g:
        g.request_id = new_request_id()
    value: str = g.request_id
    return value


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    """A JSON answer; a string is taken as JSON text already written."""
    body = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return Response(body, status=status, headers=headers, content_type=JSON_CONTENT_TYPE)


def xml_response(body: str, status: int = 200, headers: dict[str, str] | None = None
                 ) -> Response:
    """An XML answer."""
    return Response(body, status=status, headers=headers,
                    content_type="application/xml; charset=utf-8")


def accepted(headers: dict[str, str] | None = None) -> Response:
    """202 Accepted for an asynchronous operation, whose id is the request id."""
    return Response(b"", status=202, headers=headers)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def read_json(max_bytes: int) -> Any:
    """The request body as JSON; 400 when it is not, 413-style 400 when it is too large."""
    if request.mimetype and "json" not in request.mimetype and request.mimetype not in (
        "text/plain", "application/octet-stream"
    ):
        raise UnsupportedMediaType(f"Expected a JSON body, got {request.mimetype}.")
    body = request.get_data(cache=True)
    if len(body) > max_bytes:
        raise BadRequest(f"The job document is {len(body)} bytes; at most {max_bytes} "
                         "bytes are allowed.")
    if not body.strip():
        raise BadRequest("The request body is empty; expected a JSON document.")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None


def paging() -> tuple[int | None, int]:
    """`$top` and `$skip`, checked."""
    return _count("$top", MAX_TOP, minimum=1), _count("$skip", 10**9, minimum=0) or 0


def _count(name: str, maximum: int, minimum: int) -> int | None:
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


def wants_json(path: str) -> bool:
    """Job routes answer errors in JSON, the rest of ASM in XML."""
    return "/~/" in path


def register_error_handlers(app: Flask) -> None:
    """Turn every error, expected or not, into Azure's error document."""

    @app.errorhandler(SchedulerError)
    def _scheduler_error(error: SchedulerError) -> WerkzeugResponse:
        return error_response(error, wants_json(request.path))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> WerkzeugResponse:
        mapped: SchedulerError
        if error.code == 404:
            mapped = NotFound(f"No resource matches {request.path}.")
        elif error.code == 405:
            mapped = InvalidHttpVerb(f"The method {request.method} is not allowed on "
                                     f"{request.path}.")
        elif error.code == 413:
            limit = runtime().settings.server.max_body_bytes
            mapped = PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        else:
            mapped = BadRequest(error.description or "The request is not valid.")
            mapped.status = error.code or 400
        return error_response(mapped, wants_json(request.path))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> WerkzeugResponse:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(SchedulerError("The server met an unexpected error."),
                              wants_json(request.path))


# --- WSGI adapters -------------------------------------------------------------------------

_OVERRIDABLE = {"MERGE": "PATCH", "PATCH": "PATCH", "PUT": "PUT", "DELETE": "DELETE"}
_FIXED = {"cloudservices", "operations", "certificates"}
_JOB_CHILDREN = {"history", "occurrences", "executions", "run"}


def canonical_path(path: str) -> str:
    """Lower-case the fixed words of an ASM path, leaving names as the client wrote them."""
    parts = path.split("/")
    if len(parts) > 2 and parts[2].lower() in _FIXED:
        parts[2] = parts[2].lower()
    if len(parts) > 2 and parts[2] == "cloudservices":
        for index, word in ((4, "resources"), (5, "scheduler")):
            if len(parts) > index and parts[index].lower() == word:
                parts[index] = word
        position = 7 if len(parts) > 6 and parts[6] == "~" else 6
        expected = [(position, "jobcollections"), (position + 2, "jobs")]
        for index, word in expected:
            if len(parts) > index and parts[index].lower() == word:
                parts[index] = word
        child_index = position + 4
        if len(parts) > child_index and parts[child_index].lower() in _JOB_CHILDREN:
            parts[child_index] = parts[child_index].lower()
    return "/".join(parts)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AzureRequestAdapter:
    """Applies ASM's request rules before Flask routes: method overrides and path case."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        """Rewrite the method and path, then call the app."""
        method = environ.get("REQUEST_METHOD", "GET").upper()
        override = environ.get("HTTP_X_HTTP_METHOD", "").upper()
        if method == "POST" and override in _OVERRIDABLE:
            method = _OVERRIDABLE[override]
        environ["REQUEST_METHOD"] = _OVERRIDABLE.get(method, method)
        environ["PATH_INFO"] = canonical_path(environ.get("PATH_INFO", "/"))
        return self.app(environ, start_response)
