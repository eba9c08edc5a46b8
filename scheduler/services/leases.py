"""Leases and engine nodes' heartbeats as the services use them (see `scheduler.db.leases`),
and what the live nodes' heartbeats say together."""

from __future__ import annotations

import json
from collections.abc import Iterable

from scheduler.db.leases import Heartbeats, Leases, Moment, Owner

__all__ = ["Heartbeats", "Leases", "Moment", "Owner", "unrunnable_total"]


def unrunnable_total(figures: Iterable[str | None]) -> dict[str, int]:
    """The sum, by reason, of what several nodes' heartbeats said of the attempts they could
    not make."""
    total: dict[str, int] = {}
    for text in figures:
        for reason, count in (json.loads(text) if text else {}).items():
            total[reason] = total.get(reason, 0) + int(count)
    return dict(sorted(total.items()))
