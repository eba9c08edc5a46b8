"""What every client command shares: its flags, how it connects, reads its input, checks the
names it puts into a URL, and prints what it got.

Exit codes: 0 done; 1 the service refused (its message is shown), could not be reached
(connection refused, TLS handshake failed), or the outcome is a failure (a run that did not
complete, a job that is failing); 2 the command could not be made (usage, a file that cannot
be read, an id that is not one, no URL, certificate or subscription configured).
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
from scheduler.client.names import check_execution_id, check_name, thumbprint_of
from scheduler.client.profile import Connection, resolve_connection
from scheduler.settings import client_environment, default_home

# What add_subparsers() returns (generic only to type checkers).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
CONNECTION_FLAGS = ("url", "cert", "ca", "subscription", "cloud_service", "collection",
                    "profile", "home")
# The arguments that go into a URL path: (attribute, as usage names it, what it is).
PATH_ARGUMENTS = (("job_id", "ID", "job id"), ("name", "NAME", "job collection name"),
                  ("job", "--job", "job id"))
# Arguments with a form of their own, written as the service writes them once checked.
FORMED_ARGUMENTS: tuple[tuple[str, str, Callable[[str, str], str]], ...] = (
    ("execution_id", "EXECUTION_ID", check_execution_id),
    ("thumbprint", "THUMBPRINT", thumbprint_of))


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


def runner(action: Action) -> Callable[[argparse.Namespace], int]:
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
    """Refuse, before anything is sent, an id or name the service would not take: it goes
    into the URL's path, where `.`, `..` or a `/` would name another resource."""
    for attribute, argument, what in PATH_ARGUMENTS:
        value = getattr(args, attribute, None)
        if value is not None:
            check_name(value, argument, what)
    for attribute, argument, checked in FORMED_ARGUMENTS:
        value = getattr(args, attribute, None)
        if value is not None:
            setattr(args, attribute, checked(value, argument))


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
    """The parameters of a run: `--parameters JSON`, then each `--param NAME=VALUE`."""
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
                f"(scheduler executions resume {execution_id})")
    return f"execution {execution_id} is still {status}; stopped waiting"


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


def leaf(group: Subcommands, name: str, action: Action, help_text: str,
         common: argparse.ArgumentParser, job_id: bool = True) -> argparse.ArgumentParser:
    """A subcommand that runs `action`; with `job_id`, it takes the job's ID first."""
    parser = group.add_parser(name, help=help_text, description=help_text, parents=[common])
    if job_id:
        parser.add_argument("job_id", metavar="ID", help="the job's id")
    parser.set_defaults(func=runner(action))
    return parser


def add_run_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """The flags of a command that starts a run: its parameters, and whether to wait."""
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="a parameter of this run (repeatable)")
    parser.add_argument("--parameters", metavar="JSON", help="the run's parameters, an object")
    parser.add_argument("--wait", action="store_true",
                        help=f"wait until {what} has finished; exit 1 unless it completed")


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def not_negative(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value
