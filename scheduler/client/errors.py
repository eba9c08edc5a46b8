"""What can go wrong in the client: the service refused (exit 1), or the command could not be
made (exit 2)."""

from __future__ import annotations


class ClientError(Exception):
    """The service answered an error, or could not be reached; the message says which."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.message} (HTTP {self.status}, {self.code or 'no code'})"


class InputError(ValueError):
    """A flag, a file or a setting of the command cannot be used; nothing was sent."""
