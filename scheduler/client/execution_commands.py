"""`scheduler executions list|show|cancel|resume`: the runs of a collection's jobs and its
inline runs. Exit codes: see `runner`."""

from __future__ import annotations

import argparse

from scheduler.client import render
from scheduler.client.http import ApiClient
from scheduler.client.profile import Connection
from scheduler.client.runner import Output, Subcommands, leaf, positive, run_failure

# The statuses an execution can have (openapi.yaml, Execution.status).
EXECUTION_STATUSES = ("pending", "running", "paused", "waiting", "completed", "failed",
                      "canceled", "missed", "skipped")


def executions_list(api: ApiClient, connection: Connection,
                    args: argparse.Namespace) -> Output:
    """`executions list`: the collection's executions, or one job's with --job."""
    found = api.list_executions(*connection.need_collection(), job_id=args.job,
                                status=args.status, top=args.top)
    return Output(found, render.executions_table(found))


def executions_show(api: ApiClient, connection: Connection,
                    args: argparse.Namespace) -> Output:
    """`executions show EXECUTION_ID`."""
    execution = api.get_execution(*connection.need_collection(), args.job, args.execution_id)
    return Output(execution, render.execution_details(execution))


def executions_cancel(api: ApiClient, connection: Connection,
                      args: argparse.Namespace) -> Output:
    """`executions cancel EXECUTION_ID`: the execution as the cancel left it. One that has
    finished already is the service's to refuse (exit 1, its message shown)."""
    cloud_service, collection = connection.need_collection()
    api.cancel_execution(cloud_service, collection, args.job, args.execution_id)
    execution = api.get_execution(cloud_service, collection, args.job, args.execution_id)
    return Output(execution, render.execution_details(execution))


def executions_resume(api: ApiClient, connection: Connection,
                      args: argparse.Namespace) -> Output:
    """`executions resume EXECUTION_ID`: a paused sequence goes on (its failed step is tried
    again, or its manual step runs); with `--wait`, its outcome."""
    cloud_service, collection = connection.need_collection()
    execution = api.resume_execution(cloud_service, collection, args.job, args.execution_id)
    failure = None
    if args.wait:
        execution = api.wait_for_execution(cloud_service, collection, args.job, execution)
        failure = run_failure(execution)
    return Output(execution, render.execution_details(execution), failure)


def add_executions_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler executions list|show|cancel|resume`."""
    executions = commands.add_parser(
        "executions", help="executions (runs) of a collection's jobs and its inline runs, "
        "through the HTTPS API")
    group = executions.add_subparsers(dest="action", required=True)
    listing = leaf(group, "list", executions_list, "list the collection's executions (or "
                   "one job's), newest first", common, job_id=False)
    listing.add_argument("--status", type=str.lower, choices=EXECUTION_STATUSES)
    listing.add_argument("--top", type=positive, default=20, help="at most N (default 20)")
    _job_flag(listing, "list only this job's executions")
    for name, action, what in (
            ("show", executions_show, "show one execution, with its steps"),
            ("cancel", executions_cancel, "cancel an open execution: no attempt, retry or "
                                          "step of it runs any more"),
            ("resume", executions_resume, "resume a paused execution: retry its failed "
                                          "step, or run its manual step")):
        one = leaf(group, name, action, what, common, job_id=False)
        one.add_argument("execution_id", metavar="EXECUTION_ID",
                         help="the execution's id (32 hexadecimal digits)")
        _job_flag(one, "reach the execution under this job (it must be one of the job's)")
        if name == "resume":
            one.add_argument("--wait", action="store_true", help="wait until the execution "
                             "has finished or paused again; exit 1 unless it completed")


def _job_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--job", metavar="ID", help=what)
