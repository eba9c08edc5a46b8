"""Use cases over the database; what the API and the engine call."""

from __future__ import annotations

import re
import uuid

from scheduler.services.errors import BadRequest

# A resource's name (a job id, a cloud service's or a collection's name): a first letter or
# digit, as `.` and `..` are dot segments, which clients resolve away.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", re.ASCII)


def check_name(name: str, what: str) -> None:
    """Refuse a name that is not 1-100 letters, digits, '-', '_' and '.', starting with a
    letter or digit; `what` says what it names ("job id", "cloud service name")."""
    if not NAME.fullmatch(name):
        raise BadRequest(f"The {what} {name!r} is not valid: use 1-100 letters, digits, "
                         "'-', '_' and '.', starting with a letter or digit.")


def new_etag() -> str:
    """A fresh entity tag."""
    return str(uuid.uuid4())


def new_request_id() -> str:
    """A request id as Azure writes it: 32 hex digits."""
    return uuid.uuid4().hex
