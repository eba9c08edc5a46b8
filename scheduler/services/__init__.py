"""Use cases over the database; what the API and the engine call."""

from __future__ import annotations

import uuid


def new_etag() -> str:
    """A fresh entity tag."""
    return str(uuid.uuid4())


def new_request_id() -> str:
    """A request id as Azure writes it: 32 hex digits."""
    return uuid.uuid4().hex
