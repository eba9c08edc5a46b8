"""One exception tree: each error knows its HTTP status and Azure error code.

This is also the one module that turns errors into HTTP responses.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

from werkzeug.wrappers import Response

AZURE_NAMESPACE = "http://schemas.microsoft.com/windowsazure"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"


class SchedulerError(Exception):
    """Base of every error the service reports to a client."""

    status = 500
    code = "InternalError"
    # Authentication failures answer in XML on every route, as Azure's front end did.
    xml_only = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SchedulerError):
    """The request is malformed or breaks a rule; nothing was changed."""

    status = 400
    code = "BadRequest"


class InvalidXmlRequest(BadRequest):
    """The XML body could not be read."""

    code = "InvalidXmlRequest"


class InvalidQueryParameter(BadRequest):
    """A query parameter is missing or wrong."""

    code = "MissingOrInvalidRequiredQueryParameter"


class InvalidHttpVerb(SchedulerError):
    """The method is not allowed on this resource."""

    status = 405
    code = "InvalidHttpVerb"


class Forbidden(SchedulerError):
    """The client certificate is not valid for this subscription."""

    status = 403
    code = "ForbiddenError"
    xml_only = True


class ForeignOrigin(SchedulerError):
    """The request comes from a page of another origin than the service's own."""

    status = 403
    code = "ForeignOrigin"


class NotFound(SchedulerError):
    """The resource does not exist (or belongs to someone else)."""

    status = 404
    code = "ResourceNotFound"


class Conflict(SchedulerError):
    """The request conflicts with the current state: it exists already, or a quota is full."""

    status = 409
    code = "ConflictError"


class PreconditionFailed(SchedulerError):
    """The `If-Match` or `If-None-Match` condition does not hold."""

    status = 412
    code = "PreconditionFailed"


class PayloadTooLarge(SchedulerError):
    """The request body is larger than the service accepts."""

    status = 413
    code = "RequestEntityTooLarge"


class UnsupportedMediaType(SchedulerError):
    """The body is not in a format this route reads."""

    status = 415
    code = "UnsupportedMediaType"


class TooManyRequests(SchedulerError):
    """A limit on how often something may be done was reached; it may be done again after
    `retry_after_seconds`."""

    status = 429
    code = "TooManyRequests"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ServerBusy(SchedulerError):
    """The service has no database connection free for the request now; try again."""

    status = 503
    code = "ServerBusy"
    retry_after_seconds = 1


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


def error_response(error: SchedulerError, as_json: bool) -> Response:
    """The HTTP response for an error, as JSON for the job routes and XML elsewhere; a limit
    reached says when to try again (`Retry-After`, in seconds)."""
    if as_json and not error.xml_only:
        body = json.dumps({"error": {"code": error.code, "message": error.message}})
        response = Response(body, status=error.status,
                            content_type="application/json; charset=utf-8")
    else:
        response = Response(
            xml_error_body(error.code, error.message),
            status=error.status,
            content_type="application/xml; charset=utf-8",
        )
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response
