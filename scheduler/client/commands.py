"""`scheduler jobs ...` and `scheduler collections ...`: argparse subcommands over `ApiClient`;
and where every client command group is registered. Exit codes: see `runner`."""

from __future__ import annotations

import argparse
from typing import Any

from scheduler.client import render
from scheduler.client.alert_commands import add_alerts_commands
from scheduler.client.calendar_commands import add_calendars_commands
from scheduler.client.certs import add_certs_commands
from scheduler.client.channel_commands import add_channels_commands
from scheduler.client.errors import ClientError, InputError
from scheduler.client.execution_commands import add_executions_commands
from scheduler.client.http import ApiClient
from scheduler.client.profile import Connection
from scheduler.client.runner import (
    Action,
    Output,
    Subcommands,
    add_run_flags,
    common_flags,
    leaf,
    positive,
    read_document,
    run_failure,
    run_parameters,
)
from scheduler.client.status import add_status_command

JOB_STATES = ("enabled", "disabled", "faulted", "completed")
HISTORY_STATUSES = ("completed", "failed", "postponed", "missed", "canceled", "skipped")
# A job's `concurrencyPolicy` values, which a run or a backfill may name in its place.
OVERLAP_POLICIES = ("allow", "skip", "bufferOne", "bufferAll", "replace")


# --- jobs ----------------------------------------------------------------------------------

def jobs_list(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs list`."""
    jobs = api.list_jobs(*connection.need_collection(), state=args.state, top=args.top)
    return Output(jobs, render.jobs_table(jobs))


def jobs_show(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs show ID`."""
    job = api.get_job(*connection.need_collection(), args.job_id)
    return Output(job, render.job_fields(job))


def jobs_create(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs create ID --file F`: a new job; an existing one is not replaced."""
    document = read_document(args.file)
    job = api.create_job(*connection.need_collection(), args.job_id, document)
    return Output(job, render.job_fields(job))


def jobs_update(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs update ID --file F`: the file's fields merged into the job."""
    patch = read_document(args.file)
    if not isinstance(patch, dict):
        raise InputError(f"{args.file}: an update must be a JSON object of the fields to change")
    job = api.patch_job(*connection.need_collection(), args.job_id, patch)
    return Output(job, render.job_fields(job))


def _set_state(state: str) -> Action:
    def set_state(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
        job = api.patch_job(*connection.need_collection(), args.job_id, state_patch(state, args))
        return Output(job, render.jobs_table([job]))
    set_state.__doc__ = f"`jobs {state[:-1]} ID`, with `--note` (and, disabling, `--until`)."
    return set_state


def state_patch(state: str, args: argparse.Namespace) -> dict[str, Any]:
    """The patch that sets a job's state, with the note given; a job disabled waits until
    the time given (`disabledUntil`), or for no time: until it is enabled again."""
    patch: dict[str, Any] = {"state": state}
    if args.note is not None:
        patch["stateNote"] = args.note
    if state == "disabled":
        patch["disabledUntil"] = args.until
    return patch


def jobs_run(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs run ID`: an execution now; with `--wait`, its outcome."""
    cloud_service, collection = connection.need_collection()
    execution = api.run_job(cloud_service, collection, args.job_id, run_parameters(args),
                            args.overlap)
    failure = None
    if args.wait:
        execution = api.wait_for_execution(cloud_service, collection, args.job_id, execution)
        failure = run_failure(execution)
    return Output(execution, render.execution_fields(execution), failure)


def jobs_backfill(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs backfill ID --start T --end T`: the job's past occurrences in the range run now."""
    made = api.backfill_job(*connection.need_collection(), args.job_id, args.start, args.end,
                            args.only_missed, args.overlap)
    return Output(made, render.backfill_text(made))


def jobs_delete(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs delete ID`."""
    api.delete_job(*connection.need_collection(), args.job_id)
    return Output(None, f"Deleted job {args.job_id} and its history.")


def jobs_history(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs history ID`, newest first."""
    entries = api.job_history(*connection.need_collection(), args.job_id, status=args.status,
                              top=args.top)
    return Output(entries, render.history_table(entries))


def jobs_occurrences(api: ApiClient, connection: Connection,
                     args: argparse.Namespace) -> Output:
    """`jobs occurrences ID`: the next fire times, as the service computes them."""
    times = api.job_occurrences(*connection.need_collection(), args.job_id, args.top)
    return Output(times, render.occurrences_table(times))


# --- job collections -----------------------------------------------------------------------

def collections_list(api: ApiClient, connection: Connection,
                     args: argparse.Namespace) -> Output:
    """`collections list`: of the cloud service, or of every one without --cloud-service."""
    found = api.list_collections(connection.cloud_service)
    return Output(found, render.collections_table(found))


def collections_create(api: ApiClient, connection: Connection,
                       args: argparse.Namespace) -> Output:
    """`collections create NAME`: the cloud service too, if it does not exist yet."""
    cloud_service = connection.need_cloud_service()
    if not api.cloud_service_exists(cloud_service):
        api.create_cloud_service(cloud_service, args.region)
    available, reason = api.collection_name_available(cloud_service, args.name)
    if not available:
        raise ClientError(reason or f"the job collection {args.name} exists already")
    api.create_collection(cloud_service, args.name, args.plan)
    collection = api.get_collection(cloud_service, args.name)
    return Output(collection, render.collection_fields(collection))


def _set_collection_state(state: str) -> Action:
    def set_collection_state(api: ApiClient, connection: Connection,
                             args: argparse.Namespace) -> Output:
        cloud_service = connection.need_cloud_service()
        api.set_collection_state(cloud_service, args.name, state)
        collection = api.get_collection(cloud_service, args.name)
        return Output(collection, render.collection_fields(collection))
    verb = "suspend" if state == "Suspended" else "resume"
    set_collection_state.__doc__ = f"`collections {verb} NAME`."
    return set_collection_state


def collections_delete(api: ApiClient, connection: Connection,
                       args: argparse.Namespace) -> Output:
    """`collections delete NAME`, with its jobs and their history."""
    cloud_service = connection.need_cloud_service()
    api.delete_collection(cloud_service, args.name)
    return Output(None, f"Deleted job collection {cloud_service}/{args.name} and its jobs.")


def collections_run(api: ApiClient, connection: Connection,
                    args: argparse.Namespace) -> Output:
    """`collections run [NAME] --file F`: a definition run once (inline); with `--wait`, its
    outcome."""
    cloud_service = connection.need_cloud_service()
    collection = args.name or connection.need_collection()[1]
    document = inline_document(read_document(args.file), args.file, run_parameters(args))
    execution = api.run_inline(cloud_service, collection, document)
    failure = None
    if args.wait:
        execution = api.wait_for_execution(cloud_service, collection, None, execution)
        failure = run_failure(execution)
    return Output(execution, render.execution_fields(execution), failure)


def inline_document(document: Any, name: str, parameters: dict[str, Any]) -> Any:
    """The body of an inline run: the file's object, the run's parameters merged into its
    own. Its fields are left for the service to check, which names what it refuses."""
    where = "standard input" if name == "-" else name
    if not isinstance(document, dict):
        raise InputError(f"{where}: an inline run must be a JSON object "
                         '{"action": ..., "parameters": ...}')
    if not parameters:
        return document
    own = document.get("parameters")
    if own is not None and not isinstance(own, dict):
        raise InputError(f"{where}: parameters must be a JSON object to add --param to")
    return {**document, "parameters": {**(own or {}), **parameters}}


# --- the command line ----------------------------------------------------------------------

def add_jobs_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler jobs list|show|create|update|run|backfill|enable|disable|delete|history|
    occurrences`."""
    jobs = commands.add_parser("jobs", help="jobs of a collection, through the HTTPS API")
    group = jobs.add_subparsers(dest="action", required=True)
    listing = leaf(group, "list", jobs_list, "list the collection's jobs", common,
                   job_id=False)
    listing.add_argument("--state", type=str.lower, choices=JOB_STATES)
    listing.add_argument("--top", type=positive, help="at most N jobs (default: all)")
    leaf(group, "show", jobs_show, "show one job", common)
    for name, action, what in (("create", jobs_create, "create a job from a JSON file (PUT; "
                                "an existing job is not replaced)"),
                               ("update", jobs_update, "merge a JSON file's fields into a job "
                                "(PATCH)")):
        writing = leaf(group, name, action, what, common)
        writing.add_argument("--file", "-f", required=True, help="JSON document; - for stdin")
    run = leaf(group, "run", jobs_run, "run a job now, outside its schedule", common)
    add_run_flags(run, "the execution")
    _overlap_flag(run, "the run")
    backfill = leaf(group, "backfill", jobs_backfill, "run the occurrences of a past range "
                    "of a job's schedule now, each as a run of trigger backfill", common)
    backfill.add_argument("--start", metavar="TIME", required=True,
                          help="the range's first time, ISO 8601 (UTC without an offset)")
    backfill.add_argument("--end", metavar="TIME", required=True,
                          help="the range's last time (included), not after now")
    backfill.add_argument("--only-missed", action="store_true",
                          help="run only the occurrences none of whose runs ran")
    _overlap_flag(backfill, "the runs")
    enable = leaf(group, "enable", _set_state("enabled"), "enable a job", common)
    disable = leaf(group, "disable", _set_state("disabled"), "disable a job, until a time "
                   "if given", common)
    for changing in (enable, disable):
        changing.add_argument("--note", help="why: the job's state note (empty: none)")
    disable.add_argument("--until", metavar="TIME",
                         help="an ISO-8601 time (UTC without an offset), at most a year "
                              "ahead, when the service enables the job again")
    leaf(group, "delete", jobs_delete, "delete a job and its history", common)
    history = leaf(group, "history", jobs_history, "a job's history, newest first", common)
    history.add_argument("--top", type=positive, default=20, help="at most N (default 20)")
    history.add_argument("--status", type=str.lower, choices=HISTORY_STATUSES)
    occurrences = leaf(group, "occurrences", jobs_occurrences,
                       "a job's next fire times, as the service computes them", common)
    occurrences.add_argument("--top", type=positive, default=10, help="how many (default 10)")


def overlap_name(text: str) -> str:
    """An argparse type: an overlap policy in any case, as the service spells it."""
    return next((policy for policy in OVERLAP_POLICIES if policy.lower() == text.lower()),
                text)


def _overlap_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overlap", metavar="POLICY", type=overlap_name,
                        choices=OVERLAP_POLICIES,
                        help=f"what {what} do while another run of the job is open, in place "
                             f"of its concurrencyPolicy: {', '.join(OVERLAP_POLICIES)}")


def add_collections_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler collections list|create|delete|suspend|resume|run`."""
    collections = commands.add_parser("collections", help="job collections, through the "
                                      "HTTPS API")
    group = collections.add_subparsers(dest="action", required=True)
    leaf(group, "list", collections_list, "list the job collections of the cloud service "
         "(of every one without --cloud-service)", common, job_id=False)
    create = leaf(group, "create", collections_create, "create a job collection, and its "
                  "cloud service if there is none", common, job_id=False)
    create.add_argument("name", metavar="NAME")
    # Not checked here: the operator may configure plans of their own (`[plans.NAME]`).
    create.add_argument("--plan", default="Standard", help="Free, Standard (default), "
                        "P10Premium, P20Premium, or a plan the operator configured")
    create.add_argument("--region", default="West Europe",
                        help="the region of a cloud service made for it (default West Europe)")
    delete = leaf(group, "delete", collections_delete, "delete a job collection with its "
                  "jobs", common, job_id=False)
    delete.add_argument("name", metavar="NAME")
    for verb, state, what in (
            ("suspend", "Suspended", "suspend a job collection: none of its jobs fires"),
            ("resume", "Started", "start a suspended job collection again; what it missed "
                                  "is not replayed")):
        changing = leaf(group, verb, _set_collection_state(state), what, common, job_id=False)
        changing.add_argument("name", metavar="NAME")
    run = leaf(group, "run", collections_run, "run a definition once in a job collection, "
               "without storing a job (an inline run)", common, job_id=False)
    run.add_argument("name", metavar="NAME", nargs="?",
                     help="the job collection (default: --collection, then the profile's)")
    run.add_argument("--file", "-f", required=True,
                     help='JSON {"action": ..., "parameters": ...}; - for stdin')
    add_run_flags(run, "the run")


def add_client_commands(commands: Subcommands) -> None:
    """Register the client's commands (`jobs`, `collections`, `executions`, `calendars`,
    `channels`, `certs`, `status`) on the `scheduler` command's subparsers."""
    common = common_flags()
    add_jobs_commands(commands, common)
    add_collections_commands(commands, common)
    add_executions_commands(commands, common)
    add_calendars_commands(commands, common)
    add_channels_commands(commands, common)
    add_alerts_commands(commands, common)
    add_certs_commands(commands, common)
    add_status_command(commands, common)
