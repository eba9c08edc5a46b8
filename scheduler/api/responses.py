"""Answers: JSON and XML documents, 202 Accepted, and every error as Azure's document."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response as WerkzeugResponse

from scheduler.api.arm.paths import is_arm_path, is_token_path, subscription_of_arm_path
from scheduler.api.arm.requests import base_url
from scheduler.api.dashboard_paths import is_dashboard_path
from scheduler.api.runtime import runtime
from scheduler.domain.callbacks import is_callback_path
from scheduler.errors import (
    BadRequest,
    InvalidHttpVerb,
    NotFound,
    PayloadTooLarge,
    SchedulerError,
    ServerBusy,
    arm_error_response,
    error_response,
    is_busy,
    oauth_error_response,
    page_error_response,
    status_of,
)

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
# OAuth's error codes (RFC 6749, section 5.2, and its errata) for what the token endpoint
# refuses before its route reads the request: the rest are `invalid_request`.
OAUTH_ERRORS = {403: "access_denied", 500: "server_error", 503: "temporarily_unavailable"}


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


def wants_json(path: str) -> bool:
    """Job routes and callback URLs answer errors in JSON, the rest of ASM in XML."""
    return "/~/" in path or is_callback_path(path)


def answer_error(error: SchedulerError, status: int | None = None) -> WerkzeugResponse:
    """An error as this request's API writes it: Resource Manager's JSON on its routes,
    OAuth's on the token endpoint's, Azure's JSON on the job routes, XML on the rest of
    ASM."""
    if is_token_path(request.path):
        status = status or status_of(error)
        return oauth_error_response(OAUTH_ERRORS.get(status, "invalid_request"),
                                    error.message, status)
    if is_dashboard_path(request.path):
        return page_error_response(error, status)
    if is_arm_path(request.path):
        tenant = subscription_of_arm_path(request.path) or "common"
        return arm_error_response(error, status,
                                  f"{base_url()}/{tenant}/oauth2/v2.0/authorize")
    return error_response(error, wants_json(request.path), status)


def busy(cause: BaseException) -> WerkzeugResponse:
    """503 ServerBusy with Retry-After: the database could not be used in time (every
    connection taken, the server away or refusing connections, its write lock held)."""
    log.warning("the database could not serve %s %s: %s", request.method, request.path,
                type(cause).__name__)
    error = ServerBusy("The service is busy; try again in a moment.")
    response = answer_error(error)
    response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


def register_error_handlers(app: Flask) -> None:
    """Turn every error, expected or not, into Azure's error document."""

    @app.errorhandler(SchedulerError)
    def _scheduler_error(error: SchedulerError) -> WerkzeugResponse:
        return answer_error(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> WerkzeugResponse:
        mapped: SchedulerError
        status = None
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
            status = error.code or 400
        response = answer_error(mapped, status)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> WerkzeugResponse:
        if is_busy(error):
            return busy(error)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return answer_error(SchedulerError("The server met an unexpected error."))
