"""Exclusion calendars of job collections: stored in the project's own form, read for the
engine and the API, and written as a call asks, each change recorded in the audit."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.orm import Session

from scheduler.db.models import Calendar, Job
from scheduler.db.stored_calendars import readable_calendars, stored_calendar, stored_form
from scheduler.db.stored_jobs import StoredJobError, stored_schedule
from scheduler.domain.calendars import MAX_CALENDARS, ExclusionCalendar, first_excluding
from scheduler.domain.recurrence import Recurrence
from scheduler.services.audit import Target, described, record_change
from scheduler.services.calls import Call
from scheduler.services.collections import collection_id, get_collection
from scheduler.services.errors import Conflict, NotFound

# How a stored job's recurrence that names calendars begins their list: only documents
# with it are read when a calendar is deleted.
EXCLUDED_FIELD = '"exclude_calendars":["'

def _stored(row: Any) -> ExclusionCalendar:
    """A row's calendar; a row that cannot be read is a conflict to report, never a guess."""
    calendar = stored_calendar(row.name, row.document)
    if calendar is None:
        raise Conflict(f"The stored calendar {row.name} cannot be read by this version.")
    return calendar


# --- reading ---------------------------------------------------------------------------------

def read_calendars(session_or_connection: Session | Connection,
                   collection_id: int) -> dict[str, ExclusionCalendar]:
    """Every calendar of a collection, keyed by its name in lower case (what the engine
    reads); one this version cannot read is left out."""
    return readable_calendars(session_or_connection.execute(
        select(Calendar.name, Calendar.document).where(Calendar.collection_id == collection_id)))


def exclusion_of(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
                 recurrence: Recurrence | None) -> Callable[[datetime], str | None] | None:
    """What says which of the recurrence's calendars, if any, excludes an occurrence (for
    previews); None when it names none."""
    if recurrence is None or not recurrence.exclude_calendars:
        return None
    found = collection_id(conn, subscription_id, cloud_service, collection)
    return functools.partial(first_excluding, read_calendars(conn, found),
                             recurrence.exclude_calendars)


def calendar_names(session_or_connection: Session | Connection, collection_id: int) -> set[str]:
    """The names of a collection's calendars, in lower case."""
    return set(session_or_connection.execute(
        select(Calendar.name_key).where(Calendar.collection_id == collection_id)).scalars())


def list_calendars(conn: Connection, subscription_id: str, cloud_service: str,
                   collection: str) -> list[ExclusionCalendar]:
    """A collection's calendars by name; 404 naming what does not exist."""
    found = collection_id(conn, subscription_id, cloud_service, collection)
    rows = conn.execute(select(Calendar.name, Calendar.document)
                        .where(Calendar.collection_id == found).order_by(Calendar.name_key))
    return [_stored(row) for row in rows]


def read_calendar(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
                  name: str) -> ExclusionCalendar:
    """One calendar of a collection, by its name in any case; 404 naming what does not
    exist."""
    found = collection_id(conn, subscription_id, cloud_service, collection)
    row = conn.execute(select(Calendar.name, Calendar.document).where(
        Calendar.collection_id == found, Calendar.name_key == name.lower())).first()
    if row is None:
        raise calendar_missing(name)
    return _stored(row)


def calendar_missing(name: str) -> NotFound:
    """The 404 of a calendar that does not exist."""
    return NotFound(f"The calendar {name} does not exist.")


# --- writing ---------------------------------------------------------------------------------

def put_calendar(session: Session, call: Call, cloud_service: str, collection: str,
                 calendar: ExclusionCalendar) -> tuple[ExclusionCalendar, bool]:
    """Create a calendar, or replace the one of its name whole (which keeps the name as
    first written); recorded in the audit (`calendar.create`, `calendar.put`). Returns it
    as stored and whether it is new. A collection holds at most MAX_CALENDARS: one more is
    a conflict, as a job over the collection's quota is."""
    # The collection's row is held: writes of its calendars take turns, so that neither the
    # count nor the name can change between the look and the write.
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    target = Target(cloud_service, collection)
    existing = session.scalar(select(Calendar).where(
        Calendar.collection_id == found.id, Calendar.name_key == calendar.name.lower()))
    if existing is None:
        _check_room(session, found.id)
        session.add(Calendar(collection_id=found.id, name=calendar.name,
                             name_key=calendar.name.lower(), document=stored_form(calendar),
                             created_at=call.now, updated_at=call.now))
        session.flush()
        record_change(session, call, "calendar.create", target,
                      detail=f"calendar {calendar.name}: {_summary(calendar)}")
        return calendar, True
    before = _stored(existing)
    stored = dataclasses.replace(calendar, name=existing.name)
    existing.document, existing.updated_at = stored_form(stored), call.now
    record_change(session, call, "calendar.put", target,
                  detail=f"calendar {existing.name}: {_changes(before, stored)}")
    return stored, False


def _check_room(session: Session, collection_pk: int) -> None:
    held = session.scalar(select(func.count()).select_from(Calendar)
                          .where(Calendar.collection_id == collection_pk)) or 0
    if held >= MAX_CALENDARS:
        raise Conflict(f"The calendar breaks a quota: a job collection holds at most "
                       f"{MAX_CALENDARS} calendars, and this one holds {held}.")


def delete_calendar(session: Session, call: Call, cloud_service: str, collection: str,
                    name: str) -> None:
    """Delete a calendar; recorded in the audit (`calendar.delete`). 404 naming what does
    not exist; 409 naming the jobs that still skip its days."""
    found = get_collection(session, call.subscription_id, cloud_service, collection,
                           for_update=True)
    naming = jobs_naming(session, found.id, name)
    if naming:
        shown = ", ".join(naming[:10]) + (f" and {len(naming) - 10} more"
                                            if len(naming) > 10 else "")
        raise Conflict(f"The calendar {name} is named in recurrence.excludeCalendars of the "
                       f"jobs {shown}: change them first.")
    deleted = session.execute(delete(Calendar).where(
        Calendar.collection_id == found.id, Calendar.name_key == name.lower(),
    ).returning(Calendar.name)).scalar()
    if deleted is None:
        raise calendar_missing(name)
    record_change(session, call, "calendar.delete", Target(cloud_service, collection),
                  detail=f"calendar {deleted}")


def jobs_naming(session: Session, collection_pk: int, name: str) -> list[str]:
    """The ids of the collection's jobs whose recurrence skips the days of the calendar
    `name` (in any case)."""
    key = name.lower()
    # Only documents that name some calendar are read.
    rows = session.execute(select(Job.job_id, Job.definition).where(
        Job.collection_id == collection_pk,
        Job.definition.like(f"%{EXCLUDED_FIELD}%")).order_by(Job.job_key))
    found = []
    for job_id, definition in rows:
        try:
            _start, recurrence = stored_schedule(definition)
        except StoredJobError:
            continue
        if recurrence is not None and key in (
                item.lower() for item in recurrence.exclude_calendars):
            found.append(job_id)
    return found


def _summary(calendar: ExclusionCalendar) -> str:
    """What a calendar holds, in words."""
    return (f"time zone {calendar.time_zone}; {_count(len(calendar.dates), 'date')}; "
            f"{_count(len(calendar.rules), 'rule')}")


def _changes(before: ExclusionCalendar, after: ExclusionCalendar) -> str:
    """What a replace changed, in words."""
    parts = [described([("time zone", before.time_zone, after.time_zone)])]
    if before.description != after.description:
        parts.append("description changed")
    pairs: tuple[tuple[str, Collection[object], Collection[object]], ...] = (
        ("dates", before.dates, after.dates), ("rules", before.rules, after.rules))
    for what, old, new in pairs:
        if old != new:
            parts.append(f"{what}: {len(old)} → {len(new)}" if len(old) != len(new)
                         else f"{what} changed")
    return "; ".join(part for part in parts if part) or "no change"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
