"""What the service's use cases refuse, and why: one exception per kind of refusal, each
naming Azure's error code for it as data. No word of HTTP here; `scheduler.errors` answers
each kind with its status and error document."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the service reports to a client; `code` is Azure's error code."""

    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SchedulerError):
    """The request is malformed or breaks a rule; nothing was changed."""

    code = "BadRequest"


class NotFound(SchedulerError):
    """The resource does not exist (or belongs to someone else)."""

    code = "ResourceNotFound"


class Conflict(SchedulerError):
    """The request conflicts with the current state: it exists already, or a quota is full."""

    code = "ConflictError"


class PreconditionFailed(SchedulerError):
    """The `If-Match` or `If-None-Match` condition does not hold."""

    code = "PreconditionFailed"


class TooManyRequests(SchedulerError):
    """A limit on how often something may be done was reached; it may be done again after
    `retry_after_seconds`."""

    code = "TooManyRequests"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
