"""Exclusion calendars of a job collection: named sets of days on which the jobs that name
them (`recurrence.excludeCalendars`) do not fire."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from scheduler.api.requests import check_api_version, field_error, read_json
from scheduler.api.responses import json_response
from scheduler.api.runtime import call, read_connection, transaction
from scheduler.domain import InvalidField
from scheduler.domain.calendars import (
    DEFAULT_TIME_ZONE,
    ExclusionCalendar,
    check_calendar_name,
    read_dates,
    read_description,
    read_rules,
    read_time_zone,
)
from scheduler.errors import BadRequest
from scheduler.services import calendars as services
from scheduler.services.calls import record_and_wake

bp = Blueprint("calendars", __name__)

CALENDARS = "/<sub>/cloudservices/<cs>/resources/scheduler/~/jobcollections/<jc>/calendars"
# A thousand dates and fifty rules of 500 characters, written out, with room to spare.
MAX_CALENDAR_BYTES = 128 * 1024


@bp.before_request
def _api_version() -> None:
    check_api_version()


# --- the document ----------------------------------------------------------------------------

DOCUMENT_FIELDS = ("name", "timeZone", "description", "dates", "rules")


def parse_calendar(name: str, document: Any) -> ExclusionCalendar:
    """A calendar from its JSON document: `timeZone`, `description`, `dates`, `rules`, and
    `name` if it is the calendar's own (a member given as null is left out);
    InvalidField naming the field that does not hold."""
    check_calendar_name(name)
    if not isinstance(document, dict):
        raise InvalidField("", "the calendar must be a JSON object")
    given = {key: value for key, value in document.items() if value is not None}
    for key in given:
        if key not in DOCUMENT_FIELDS:
            raise InvalidField(key, "is not a field of a calendar")
    if "name" in given and check_calendar_name(given["name"]).lower() != name.lower():
        raise InvalidField("name", f"must be the calendar's name in the path, {name}")
    zone = given.get("timeZone")
    description = given.get("description")
    return ExclusionCalendar(
        name=name,
        time_zone=DEFAULT_TIME_ZONE if zone is None else read_time_zone(zone, "timeZone"),
        description=None if description is None else read_description(description,
                                                                      "description"),
        dates=read_dates(given.get("dates", []), "dates"),
        rules=read_rules(given.get("rules", []), "rules"))


def calendar_document(calendar: ExclusionCalendar) -> dict[str, Any]:
    """A calendar as its JSON document, as GET shows it: dates in order, `description` left
    out when it has none."""
    document: dict[str, Any] = {"name": calendar.name, "timeZone": calendar.time_zone}
    if calendar.description is not None:
        document["description"] = calendar.description
    document["dates"] = [day.isoformat() for day in sorted(calendar.dates)]
    document["rules"] = list(calendar.rules)
    return document


# --- routes ----------------------------------------------------------------------------------


def _read_calendar(name: str) -> ExclusionCalendar:
    """The request's calendar document, read and checked; a field that does not hold is a
    400 naming it."""
    size = len(request.get_data(cache=True))
    if size > MAX_CALENDAR_BYTES:
        raise BadRequest(f"The calendar document is {size} bytes; at most "
                         f"{MAX_CALENDAR_BYTES} bytes are allowed.")
    try:
        return parse_calendar(name, read_json(MAX_CALENDAR_BYTES))
    except InvalidField as exc:
        raise field_error(exc) from None


@bp.get(CALENDARS, strict_slashes=False)
def list_calendars(sub: str, cs: str, jc: str) -> Response:
    """The collection's calendars, by name: `{"value": [...]}`."""
    found = services.list_calendars(read_connection(), g.subscription_id, cs, jc)
    return json_response({"value": [calendar_document(calendar) for calendar in found]})


@bp.get(CALENDARS + "/<calendar_name>", strict_slashes=False)
def get_calendar(sub: str, cs: str, jc: str, calendar_name: str) -> Response:
    """One calendar, by its name in any case."""
    calendar = services.read_calendar(read_connection(), g.subscription_id, cs, jc,
                                      calendar_name)
    return json_response(calendar_document(calendar))


@bp.put(CALENDARS + "/<calendar_name>", strict_slashes=False)
def put_calendar(sub: str, cs: str, jc: str, calendar_name: str) -> Response:
    """Create a calendar (201) or replace it whole (200)."""
    calendar = _read_calendar(calendar_name)
    context = call()
    with transaction() as session:
        stored, created = services.put_calendar(session, context, cs, jc, calendar)
        status = 201 if created else 200
        # The engines are woken: the days a job skips may have changed.
        record_and_wake(session, context, "calendar.put", status)
        return json_response(calendar_document(stored), status)


@bp.delete(CALENDARS + "/<calendar_name>", strict_slashes=False)
def delete_calendar(sub: str, cs: str, jc: str, calendar_name: str) -> Response:
    """Delete a calendar (200)."""
    context = call()
    with transaction() as session:
        services.delete_calendar(session, context, cs, jc, calendar_name)
        record_and_wake(session, context, "calendar.delete", 200)
    return Response(b"", status=200)
