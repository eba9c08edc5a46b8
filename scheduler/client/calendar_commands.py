"""`scheduler calendars put|get|list|delete`: a collection's exclusion calendars, the days
on which the jobs that name them do not fire. Exit codes: see `runner`."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.client import render
from scheduler.client.errors import InputError
from scheduler.client.http import ApiClient
from scheduler.client.profile import Connection
from scheduler.client.runner import Output, Subcommands, leaf, read_document

# The service's rule for calendar names: one URL segment, never a dot segment.
CALENDAR_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


def check_calendar_name(name: str) -> str:
    """`name`, or an InputError naming NAME, before anything is sent."""
    if not CALENDAR_NAME.fullmatch(name):
        raise InputError(f"NAME: the calendar name {name!r} is not valid: use 1-64 letters, "
                         "digits, '-' and '_'; nothing was sent")
    return name


def calendars_table(found: Sequence[Mapping[str, Any]]) -> str:
    """Calendars, one a line: what each holds, in counts."""
    return render.table(
        ["NAME", "TIME ZONE", "DATES", "RULES", "DESCRIPTION"],
        [[item.get("name"), item.get("timeZone"), len(item.get("dates") or []),
          len(item.get("rules") or []), item.get("description")] for item in found])


def calendar_fields(calendar: Mapping[str, Any]) -> str:
    """One calendar, field by field: every date and rule (a rule's lines joined by ` / `)."""
    rules = [" / ".join(str(rule).splitlines()) for rule in calendar.get("rules") or []]
    return render.fields([
        ("name", calendar.get("name")), ("time zone", calendar.get("timeZone")),
        ("description", calendar.get("description")),
        ("dates", calendar.get("dates") or []), ("rules", rules)])


def calendars_put(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`calendars put NAME --file F`: create the calendar, or replace it whole."""
    name = check_calendar_name(args.calendar)
    document = read_document(args.file)
    calendar = api.put_calendar(*connection.need_collection(), name, document)
    return Output(calendar, calendar_fields(calendar))


def calendars_get(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`calendars get NAME`."""
    calendar = api.get_calendar(*connection.need_collection(),
                                check_calendar_name(args.calendar))
    return Output(calendar, calendar_fields(calendar))


def calendars_list(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`calendars list`: the collection's calendars, by name."""
    found = api.list_calendars(*connection.need_collection())
    return Output(found, calendars_table(found))


def calendars_delete(api: ApiClient, connection: Connection,
                     args: argparse.Namespace) -> Output:
    """`calendars delete NAME`."""
    name = check_calendar_name(args.calendar)
    api.delete_calendar(*connection.need_collection(), name)
    return Output(None, f"Deleted calendar {name}.")


def add_calendars_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler calendars put|get|list|delete`."""
    calendars = commands.add_parser(
        "calendars", help="exclusion calendars of a collection: days its jobs skip, through "
        "the HTTPS API")
    group = calendars.add_subparsers(dest="action", required=True)
    put = leaf(group, "put", calendars_put, "create a calendar from a JSON file, or replace "
               "it whole (PUT)", common, job_id=False)
    _name(put)
    put.add_argument("--file", "-f", required=True, help="JSON document; - for stdin")
    _name(leaf(group, "get", calendars_get, "show one calendar", common, job_id=False))
    leaf(group, "list", calendars_list, "list the collection's calendars", common,
         job_id=False)
    _name(leaf(group, "delete", calendars_delete, "delete a calendar", common, job_id=False))


def _name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("calendar", metavar="NAME", help="the calendar's name")
