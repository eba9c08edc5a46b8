"""Errors as HTTP answers: each kind's status and Azure's error document, in XML or JSON.

The use cases' errors are `scheduler.services.errors`, which knows no HTTP; the errors only
the API raises (a body it cannot read, a certificate it refuses) are added here. This is the
one module that turns errors into HTTP responses.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

from flask import render_template
from werkzeug.wrappers import Response

from scheduler.db.outage import is_unavailable
from scheduler.services.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    SchedulerError,
    TooManyRequests,
)

# The use cases' errors are the API's too: it raises them where a request breaks a rule.
__all__ = [
    "AZURE_NAMESPACE",
    "FORBIDDEN_MESSAGE",
    "STATUSES",
    "XML_ONLY",
    "XSI_NAMESPACE",
    "AuthenticationFailed",
    "AuthorizationFailed",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "ForeignOrigin",
    "InvalidApiVersion",
    "InvalidHttpVerb",
    "InvalidQueryParameter",
    "InvalidXmlRequest",
    "MissingApiVersion",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "SchedulerError",
    "ServerBusy",
    "TooManyRequests",
    "UnsupportedMediaType",
    "arm_error_response",
    "error_response",
    "is_busy",
    "oauth_error_response",
    "status_of",
    "xml_error_body",
]

AZURE_NAMESPACE = "http://schemas.microsoft.com/windowsazure"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"


class InvalidXmlRequest(BadRequest):
    """The XML body could not be read."""

    code = "InvalidXmlRequest"


class InvalidQueryParameter(BadRequest):
    """A query parameter is missing or wrong."""

    code = "MissingOrInvalidRequiredQueryParameter"


class MissingApiVersion(BadRequest):
    """A Resource Manager request names no api-version."""

    code = "MissingApiVersionParameter"


class InvalidApiVersion(BadRequest):
    """A Resource Manager request names an api-version the service does not speak."""

    code = "InvalidApiVersionParameter"


class AuthenticationFailed(SchedulerError):
    """A Resource Manager request carries neither a registered certificate nor a bearer
    token the service issued and still honours; `token_sent` when it carried a token."""

    code = "AuthenticationFailed"

    def __init__(self, message: str, token_sent: bool = False) -> None:
        super().__init__(message)
        self.token_sent = token_sent


class AuthorizationFailed(SchedulerError):
    """The caller is known, but has no rights on the subscription it names."""

    code = "AuthorizationFailed"


class InvalidHttpVerb(SchedulerError):
    """The method is not allowed on this resource."""

    code = "InvalidHttpVerb"


class Forbidden(SchedulerError):
    """The client certificate is not valid for this subscription."""

    code = "ForbiddenError"


class ForeignOrigin(SchedulerError):
    """The request comes from a page of another origin than the service's own."""

    code = "ForeignOrigin"


class PayloadTooLarge(SchedulerError):
    """The request body is larger than the service accepts."""

    code = "RequestEntityTooLarge"


class UnsupportedMediaType(SchedulerError):
    """The body is not in a format this route reads."""

    code = "UnsupportedMediaType"


class ServerBusy(SchedulerError):
    """The service has no database connection free for the request now; try again."""

    code = "ServerBusy"
    retry_after_seconds = 1


# Each kind of error's HTTP status; a kind not named has its nearest named base's.
STATUSES: dict[type[SchedulerError], int] = {
    SchedulerError: 500, BadRequest: 400, Forbidden: 403, ForeignOrigin: 403, NotFound: 404,
    AuthenticationFailed: 401, AuthorizationFailed: 403,
    InvalidHttpVerb: 405, Conflict: 409, PreconditionFailed: 412, PayloadTooLarge: 413,
    UnsupportedMediaType: 415, TooManyRequests: 429, ServerBusy: 503,
}
# Authentication failures answer in XML on every route, as Azure's front end did.
XML_ONLY = (Forbidden,)


def is_busy(error: BaseException) -> bool:
    """Whether an error means the database cannot be used now (answered 503 ServerBusy,
    with Retry-After), not that the request was wrong."""
    return is_unavailable(error)


def status_of(error: SchedulerError) -> int:
    """The HTTP status that answers an error."""
    for kind in type(error).__mro__:
        if kind in STATUSES:
            return STATUSES[kind]
    return 500


FORBIDDEN_MESSAGE = (
    "The server failed to authenticate the request. Verify that the certificate is valid "
    "and is associated with this subscription."
)


def xml_error_body(code: str, message: str) -> str:
    """Azure's XML error document."""
    return (
        f'<Error xmlns="{AZURE_NAMESPACE}" xmlns:i="{XSI_NAMESPACE}">'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )


def error_response(error: SchedulerError, as_json: bool, status: int | None = None
                   ) -> Response:
    """The HTTP response for an error, as JSON for the job routes and XML elsewhere, with
    the error's status unless `status` is given; a limit reached says when to try again
    (`Retry-After`, in seconds)."""
    status = status or status_of(error)
    if as_json and not isinstance(error, XML_ONLY):
        body = json.dumps({"error": {"code": error.code, "message": error.message}})
        response = Response(body, status=status,
                            content_type="application/json; charset=utf-8")
    else:
        response = Response(
            xml_error_body(error.code, error.message),
            status=status,
            content_type="application/xml; charset=utf-8",
        )
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


# The headings of the dashboard's error pages.
PAGE_TITLES = {400: "That did not work", 403: "Not allowed", 404: "Not found",
               409: "That cannot be done now", 412: "Changed meanwhile"}


def page_error_response(error: SchedulerError, status: int | None = None) -> Response:
    """An error on one of the dashboard's pages: an HTML page saying what went wrong."""
    status = status or status_of(error)
    title = PAGE_TITLES.get(status, "Something went wrong")
    return Response(render_template("error.html", status=status, title=title,
                                     message=error.message),
                    status=status, content_type="text/html; charset=utf-8")


# Resource Manager's error codes where they are not the ASM API's.
ARM_CODES: dict[type[SchedulerError], str] = {
    Conflict: "Conflict", InvalidQueryParameter: "BadRequest", InvalidXmlRequest: "BadRequest",
    InvalidHttpVerb: "MethodNotAllowed", Forbidden: "AuthorizationFailed",
}


def arm_code(error: SchedulerError) -> str:
    """The code Resource Manager gives an error: the kind that set its code may be spelled
    otherwise there."""
    for kind in type(error).__mro__:
        if "code" in vars(kind):
            return ARM_CODES.get(kind, error.code)
    return error.code


def arm_error_response(error: SchedulerError, status: int | None = None,
                       authorization_uri: str | None = None) -> Response:
    """Resource Manager's error answer, `{"error": {"code", "message"}}` as JSON, with
    the error's status unless `status` is given. A 401 names how to get a token
    (`WWW-Authenticate: Bearer`); a limit reached, or a busy database, when to try again."""
    status = status or status_of(error)
    body = json.dumps({"error": {"code": arm_code(error), "message": error.message}})
    response = Response(body, status=status, content_type="application/json; charset=utf-8")
    if isinstance(error, AuthenticationFailed):
        # RFC 6750: a request that sent no token is told only how to get one.
        parts = ['error="invalid_token"'] if error.token_sent else []
        if authorization_uri:
            parts.append(f'authorization_uri="{authorization_uri}"')
        response.headers["WWW-Authenticate"] = " ".join(["Bearer", ", ".join(parts)]).strip()
    if isinstance(error, TooManyRequests | ServerBusy):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


def oauth_error_response(error: str, description: str, status: int) -> Response:
    """An OAuth 2.0 error (RFC 6749, section 5.2), as the token endpoint answers it: JSON
    `{"error", "error_description"}`, never stored by a cache."""
    body = json.dumps({"error": error, "error_description": description})
    response = Response(body, status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
