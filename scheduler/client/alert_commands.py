"""`scheduler alerts list|rules|set-rules|delete-rules`: the alerts made of a collection's
jobs' events (of one job's), with their delivery, and the collection's default alert rules.
Exit codes: see `runner`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.client import render
from scheduler.client.channel_commands import check_channel_name
from scheduler.client.errors import InputError
from scheduler.client.http import ApiClient
from scheduler.client.profile import Connection
from scheduler.client.runner import Output, Subcommands, leaf

EVENTS = ("failed", "faulted", "missed", "late", "recovered", "durationOver")
MAX_TOP = 1000


def alerts_table(found: Sequence[Mapping[str, Any]]) -> str:
    """Alerts, newest first, one a line: when, which job, what, and where it went."""
    return render.table(["CREATED", "JOB", "EVENT", "STATUS", "CHANNELS", "TEXT"], [
        [item.get("createdAt"), item.get("jobId"), item.get("event"), item.get("status"),
         _deliveries(item), item.get("text")] for item in found])


def _deliveries(alert: Mapping[str, Any]) -> str:
    """Each channel and whether it took the alert: `ops`, or `ops (not delivered)`."""
    deliveries = alert.get("deliveries") or {}
    return ", ".join(name if (deliveries.get(name) or {}).get("delivered")
                     else f"{name} (not delivered)" for name in alert.get("channels") or [])


def rules_fields(rules: Mapping[str, Any]) -> str:
    """Alert rules, field by field."""
    return render.fields([("on", ", ".join(rules.get("on") or []) or "nothing (alerts off)"),
                          ("channels", ", ".join(rules.get("channels") or [])),
                          ("afterConsecutive", rules.get("afterConsecutive", 1)),
                          ("lateBy", rules.get("lateBy")),
                          ("durationOver", rules.get("durationOver")),
                          ("realert", rules.get("realert"))])


def rules_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The alert rules the flags describe; an InputError before anything is sent when some
    event alerts and no channel hears of it."""
    events: list[str] = list(args.on or [])
    channels = [check_channel_name(name) for name in args.channel or []]
    if events and not channels:
        raise InputError("name the channels that hear of the alerts with --channel NAME; "
                         "nothing was sent")
    rules: dict[str, Any] = {"on": events, "channels": channels}
    for key, value in (("afterConsecutive", args.after_consecutive), ("lateBy", args.late_by),
                       ("durationOver", args.duration_over), ("realert", args.realert)):
        if value is not None:
            rules[key] = value
    return rules


def alerts_list(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`alerts list [--job ID] [--top N]`: the alerts made, newest first."""
    if args.top is not None and not 1 <= args.top <= MAX_TOP:
        raise InputError(f"--top must be from 1 to {MAX_TOP}; nothing was sent")
    found = api.list_alerts(*connection.need_collection(), args.job, args.top)
    return Output(found, alerts_table(found))


def alerts_rules(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`alerts rules`: the collection's default alert rules."""
    rules = api.get_default_alerts(*connection.need_collection())
    return Output(rules, rules_fields(rules))


def alerts_set_rules(api: ApiClient, connection: Connection,
                     args: argparse.Namespace) -> Output:
    """`alerts set-rules --on EVENT --channel NAME ...`: set the default alert rules."""
    rules = api.put_default_alerts(*connection.need_collection(), rules_from_flags(args))
    return Output(rules, rules_fields(rules))


def alerts_delete_rules(api: ApiClient, connection: Connection,
                        args: argparse.Namespace) -> Output:
    """`alerts delete-rules`: take the default alert rules away."""
    api.delete_default_alerts(*connection.need_collection())
    return Output(None, "Deleted the collection's default alert rules.")


def add_alerts_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler alerts list|rules|set-rules|delete-rules`."""
    alerts = commands.add_parser(
        "alerts", help="alerts made of jobs' events, and a collection's default alert rules, "
        "through the HTTPS API")
    group = alerts.add_subparsers(dest="action", required=True)
    listing = leaf(group, "list", alerts_list, "list the alerts made, newest first", common,
                   job_id=False)
    listing.add_argument("--job", metavar="ID", help="only the alerts of this job")
    listing.add_argument("--top", type=int, metavar="N", help="at most N (default 100)")
    leaf(group, "rules", alerts_rules, "show the collection's default alert rules", common,
         job_id=False)
    setting = leaf(group, "set-rules", alerts_set_rules,
                   "set the collection's default alert rules, for its jobs without their own",
                   common, job_id=False)
    setting.add_argument("--on", action="append", choices=EVENTS, metavar="EVENT",
                         help=f"an event that alerts, once per event: {', '.join(EVENTS)}; "
                         "none turns alerts off")
    setting.add_argument("--channel", action="append", metavar="NAME",
                         help="a channel that hears of the alerts; once per channel")
    setting.add_argument("--after-consecutive", type=int, metavar="N",
                         help="failed: alert at the Nth failure in a row (default 1)")
    setting.add_argument("--late-by", metavar="DURATION",
                         help="late: how long after its time an execution may go "
                         "unstarted, such as PT5M")
    setting.add_argument("--duration-over", metavar="DURATION",
                         help="durationOver: how long an attempt may take, such as PT1H")
    setting.add_argument("--realert", metavar="DURATION",
                         help="failed: alert again this often while failing, such as PT1H")
    leaf(group, "delete-rules", alerts_delete_rules,
         "take the collection's default alert rules away", common, job_id=False)
