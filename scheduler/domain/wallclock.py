"""Wall-clock times in a time zone as instants, by the service's two DST rules."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time: gaps shift forward, ambiguous times take the first."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
