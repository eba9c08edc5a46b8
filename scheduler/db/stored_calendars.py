"""The stored form of an exclusion calendar: the project's own JSON (`"v": 1`, snake_case,
dates in order), its name kept apart in its own column. Only this module reads or writes
it."""

from __future__ import annotations

import functools
import json
from datetime import date
from typing import Any

from scheduler.domain.calendars import ExclusionCalendar

# The stored form's version: a later form can tell the rows written before it.
STORED_VERSION = 1
# Stored calendars read and kept by the process, by their name and stored text.
CALENDARS_KEPT = 1024


def stored_form(calendar: ExclusionCalendar) -> str:
    """A calendar as it is stored (its name apart): JSON in snake_case, dates in order."""
    return json.dumps({"v": STORED_VERSION, "time_zone": calendar.time_zone,
                       "description": calendar.description,
                       "dates": [day.isoformat() for day in sorted(calendar.dates)],
                       "rules": list(calendar.rules)}, separators=(",", ":"))


@functools.lru_cache(maxsize=CALENDARS_KEPT)
def stored_calendar(name: str, stored: str) -> ExclusionCalendar | None:
    """A stored calendar read back; None for one this version cannot read. Kept by its
    text, so that the days its rules yield are worked out once per process."""
    try:
        form: dict[str, Any] = json.loads(stored)
        return ExclusionCalendar(
            name=name, time_zone=form["time_zone"], description=form["description"],
            dates=frozenset(date.fromisoformat(day) for day in form["dates"]),
            rules=tuple(form["rules"]))
    except (ValueError, KeyError, TypeError):
        return None


def readable_calendars(rows: Any) -> dict[str, ExclusionCalendar]:
    """The calendars of (name, stored text) rows, keyed by lower-case name; one this
    version cannot read is left out."""
    found = {}
    for name, stored in rows:
        calendar = stored_calendar(name, stored)
        if calendar is not None:
            found[name.lower()] = calendar
    return found
