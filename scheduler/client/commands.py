"""`scheduler jobs ...` and `scheduler collections ...`: argparse subcommands over `ApiClient`.

Exit codes: 0 done; 1 the service refused (its message is shown) or could not be reached
(connection refused, TLS handshake failed); 2 the command could not be made (usage, a file
that cannot be read, no URL, certificate or subscription configured).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from scheduler.client import render
from scheduler.client.errors import ClientError, InputError
from scheduler.client.http import FINISHED_EXECUTIONS, PAUSED, ApiClient
from scheduler.client.names import check_name
from scheduler.client.profile import Connection, resolve_connection
from scheduler.settings import client_environment, default_home

# What add_subparsers() returns (generic only to type checkers).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
JOB_STATES = ("enabled", "disabled", "faulted", "completed")
HISTORY_STATUSES = ("completed", "failed", "postponed", "missed")
CONNECTION_FLAGS = ("url", "cert", "ca", "subscription", "cloud_service", "collection",
                    "profile", "home")
# The positional arguments that go into a URL path: (attribute, as usage names it, what it is).
PATH_ARGUMENTS = (("job_id", "ID", "job id"), ("name", "NAME", "job collection name"))


@dataclass(frozen=True)
class Output:
    """What a command prints: `document` with `--output json`, `text` for people; and, when
    the command did its part but the outcome is a failure, why (exit 1)."""

    document: Any
    text: str | None
    failure: str | None = None


Action = Callable[[ApiClient, Connection, argparse.Namespace], Output]


# --- running a command ---------------------------------------------------------------------

def connection_of(args: argparse.Namespace) -> Connection:
    """The connection settings of a command: its flags, the environment, the profile."""
    flags = {key: getattr(args, key, None) for key in CONNECTION_FLAGS}
    return resolve_connection(flags, client_environment(), default_home())


def _runner(action: Action) -> Callable[[argparse.Namespace], int]:
    """A command function: connect, act, print, and close."""
    def run(args: argparse.Namespace) -> int:
        check_path_arguments(args)
        connection = connection_of(args)
        api = ApiClient.connect(connection.url, connection.subscription, connection.cert,
                                connection.ca)
        try:
            output = action(api, connection, args)
        finally:
            api.close()
        show(output, args.output)
        if output.failure:
            raise ClientError(output.failure)
        return 0
    return run


def check_path_arguments(args: argparse.Namespace) -> None:
    """Refuse, before anything is sent, an ID or NAME the service would not take: it goes
    into the URL's path, where `.`, `..` or a `/` would name another resource."""
    for attribute, argument, what in PATH_ARGUMENTS:
        value = getattr(args, attribute, None)
        if value is not None:
            check_name(value, argument, what)


def show(output: Output, mode: str) -> None:
    """Print a command's output in the mode asked for."""
    if mode == "json":
        if output.document is not None:
            print(render.as_json(output.document))
    elif output.text:
        print(output.text)


def read_document(name: str) -> Any:
    """The JSON document in a file (`-`: standard input), or an error naming the file."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: cannot be read: {exc}") from None
    where = "standard input" if name == "-" else name
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply to be a job") from None


def run_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters of `jobs run`: `--parameters JSON`, then each `--param NAME=VALUE`."""
    parameters: dict[str, Any] = {}
    if args.parameters:
        try:
            given = json.loads(args.parameters)
        except ValueError as exc:
            raise InputError(f"--parameters: not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise InputError("--parameters must be a JSON object")
        parameters.update(given)
    for pair in args.param or []:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise InputError(f"--param {pair!r}: write NAME=VALUE")
        parameters[name] = value
    return parameters


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
        job = api.patch_job(*connection.need_collection(), args.job_id, {"state": state})
        return Output(job, render.jobs_table([job]))
    set_state.__doc__ = f"`jobs {state[:-1]} ID`."
    return set_state


def jobs_run(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`jobs run ID`: an execution now; with `--wait`, its outcome."""
    cloud_service, collection = connection.need_collection()
    execution = api.run_job(cloud_service, collection, args.job_id, run_parameters(args))
    failure = None
    if args.wait:
        execution = api.wait_for_execution(cloud_service, collection, args.job_id, execution)
        failure = run_failure(execution)
    return Output(execution, render.execution_fields(execution), failure)


def run_failure(execution: Any) -> str | None:
    """Why a waited-for execution did not complete (exit 1), or None if it did."""
    status, execution_id = execution.get("status"), execution.get("id")
    if status == "completed":
        return None
    if status in FINISHED_EXECUTIONS:
        return f"execution {execution_id} ended with status {status}"
    if status == PAUSED:
        step = render.paused_step(execution)
        return (f"execution {execution_id} did not complete: it is paused"
                f"{f' at step {step}' if step else ''}, waiting to be resumed or canceled "
                f"(POST .../executions/{execution_id}/resume)")
    return f"execution {execution_id} is still {status}; stopped waiting"


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


# --- the command line ----------------------------------------------------------------------

def common_flags() -> argparse.ArgumentParser:
    """The flags every client command takes: where to connect and how to print."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group(
        "connection (each also from SCHEDULER_CLIENT_<NAME>, then from the profile)")
    where.add_argument("--url", help="the service, https://HOST:PORT")
    where.add_argument("--cert", help="client certificate and its key, one PEM file")
    where.add_argument("--ca", help="CA file that signed the server's certificate "
                       "(default: the system's store)")
    where.add_argument("--subscription", help="subscription id")
    where.add_argument("--cloud-service", help="cloud service name")
    where.add_argument("--collection", help="job collection name")
    where.add_argument("--profile", help="profile file (SCHEDULER_CLIENT_PROFILE; default: "
                       "HOME/client.toml, which `scheduler init` writes)")
    where.add_argument("--home", help="read the profile HOME/client.toml "
                       "(default: SCHEDULER_HOME's, if there is one)")
    common.add_argument("--output", "-o", choices=("table", "json"), default="table",
                        help="table for people (default), json for scripts")
    return common


def _leaf(group: Subcommands, name: str, action: Action, help_text: str,
          common: argparse.ArgumentParser, job_id: bool = True) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text,
                                                       description=help_text,
                                                       parents=[common])
    if job_id:
        parser.add_argument("job_id", metavar="ID", help="the job's id")
    parser.set_defaults(func=_runner(action))
    return parser


def add_jobs_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler jobs list|show|create|update|run|enable|disable|delete|history|occurrences`."""
    jobs = commands.add_parser("jobs", help="jobs of a collection, through the HTTPS API")
    group = jobs.add_subparsers(dest="action", required=True)
    listing = _leaf(group, "list", jobs_list, "list the collection's jobs", common,
                    job_id=False)
    listing.add_argument("--state", type=str.lower, choices=JOB_STATES)
    listing.add_argument("--top", type=_positive, help="at most N jobs (default: all)")
    _leaf(group, "show", jobs_show, "show one job", common)
    for name, action, what in (("create", jobs_create, "create a job from a JSON file (PUT; "
                                "an existing job is not replaced)"),
                               ("update", jobs_update, "merge a JSON file's fields into a job "
                                "(PATCH)")):
        leaf = _leaf(group, name, action, what, common)
        leaf.add_argument("--file", "-f", required=True, help="JSON document; - for stdin")
    run = _leaf(group, "run", jobs_run, "run a job now, outside its schedule", common)
    run.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="a parameter of this run (repeatable)")
    run.add_argument("--parameters", metavar="JSON", help="the run's parameters, an object")
    run.add_argument("--wait", action="store_true",
                     help="wait until the execution has finished; exit 1 unless it completed")
    _leaf(group, "enable", _set_state("enabled"), "enable a job", common)
    _leaf(group, "disable", _set_state("disabled"), "disable a job", common)
    _leaf(group, "delete", jobs_delete, "delete a job and its history", common)
    history = _leaf(group, "history", jobs_history, "a job's history, newest first", common)
    history.add_argument("--top", type=_positive, default=20, help="at most N (default 20)")
    history.add_argument("--status", type=str.lower, choices=HISTORY_STATUSES)
    occurrences = _leaf(group, "occurrences", jobs_occurrences,
                        "a job's next fire times, as the service computes them", common)
    occurrences.add_argument("--top", type=_positive, default=10, help="how many (default 10)")


def add_collections_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler collections list|create|delete|suspend|resume`."""
    collections = commands.add_parser("collections", help="job collections, through the "
                                      "HTTPS API")
    group = collections.add_subparsers(dest="action", required=True)
    _leaf(group, "list", collections_list, "list the job collections of the cloud service "
          "(of every one without --cloud-service)", common, job_id=False)
    create = _leaf(group, "create", collections_create, "create a job collection, and its "
                   "cloud service if there is none", common, job_id=False)
    create.add_argument("name", metavar="NAME")
    # Not checked here: the operator may configure plans of their own (`[plans.NAME]`).
    create.add_argument("--plan", default="Standard", help="Free, Standard (default), "
                        "P10Premium, P20Premium, or a plan the operator configured")
    create.add_argument("--region", default="West Europe",
                        help="the region of a cloud service made for it (default West Europe)")
    delete = _leaf(group, "delete", collections_delete, "delete a job collection with its "
                   "jobs", common, job_id=False)
    delete.add_argument("name", metavar="NAME")
    for verb, state, what in (
            ("suspend", "Suspended", "suspend a job collection: none of its jobs fires"),
            ("resume", "Started", "start a suspended job collection again; what it missed "
                                  "is not replayed")):
        leaf = _leaf(group, verb, _set_collection_state(state), what, common, job_id=False)
        leaf.add_argument("name", metavar="NAME")


def add_client_commands(commands: Subcommands) -> None:
    """Register `jobs` and `collections` on the `scheduler` command's subparsers."""
    common = common_flags()
    add_jobs_commands(commands, common)
    add_collections_commands(commands, common)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
