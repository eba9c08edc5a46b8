"""The `scheduler` command: the server's (init, serve, db, subscription, cert, principals,
dashboard, secrets, export, import) and the client's (jobs, collections, ...).

Only the parser and the client are imported here: a server command's code, and the server
stack it needs (SQLAlchemy, Flask, gunicorn, cryptography), is imported from
`scheduler.admin` when that command runs, so that `scheduler --help` and the client's
commands start quickly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from scheduler.client.commands import add_client_commands
from scheduler.client.errors import ClientError
from scheduler.client.render import escape_controls
from scheduler.settings import LOG_FORMATS, SettingsError

Command = Callable[[argparse.Namespace], int]
# Where the server's commands are: `run_command(name, args)` runs one.
SERVER_COMMANDS = "scheduler.admin"


class CommandError(Exception):
    """A command cannot do what was asked; the message says why."""


def server_command(name: str) -> Command:
    """The server's command `name`, whose module is imported when it runs."""
    def run(args: argparse.Namespace) -> int:
        code: int = importlib.import_module(SERVER_COMMANDS).run_command(name, args)
        return code
    return run


def tcp_port(text: str) -> int:
    """A TCP port to serve on, 1 to 65535 (an argparse type)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1 to 65535)")
    return port


def add_host_name(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable `--host-name NAME` of the commands that make a server certificate."""
    parser.add_argument("--host-name", action="append", metavar="NAME", help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="scheduler", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create a home directory")
    init.add_argument("--home", required=True)
    init.add_argument("--json", action="store_true", help="print the result as JSON")
    init.add_argument("--database-url", help="create everything in this database and name it "
                      "in the config (postgresql+psycopg://USER@HOST:PORT/DB for several "
                      "nodes); default: SQLite in the home")
    init.add_argument("--certs-dir", help="put the CA, server and admin certificates and "
                      "keys in this directory instead of the home (`make serve`: certs/)")
    init.add_argument("--port", type=tcp_port, help="the port to serve on, written into the "
                      "config and the client's profile (default: SCHEDULER_SERVER_PORT, or "
                      "8443)")
    add_host_name(init, "also make the server certificate for this DNS name or IP address "
                  "(repeatable); it is always made for localhost, 127.0.0.1 and ::1")
    init.set_defaults(func=server_command("init"))

    serve = commands.add_parser("serve", help="run the HTTPS API")
    serve.add_argument("--home", required=True)
    serve.add_argument("--host", help="the address to listen on (default: server.host)")
    serve.add_argument("--port", type=tcp_port, help="the port to listen on (default: "
                       "server.port); recorded in the home's config and client profile when "
                       "they say another")
    serve.add_argument("--role", choices=("all", "api", "engine"), default="all")
    serve.add_argument("--log-format", choices=LOG_FORMATS,
                       help="text lines for people (default: logging.format), or one JSON "
                       "object per line for log shippers")
    # `--role all` starts its engine and its API with these: the descriptor of the child's
    # end of its lifeline (the parent serves the metrics), the engine's node id, and the
    # start of the ids of the engine nodes that are the API's own.
    serve.add_argument("--lifeline", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--node-id", help=argparse.SUPPRESS)
    serve.add_argument("--own-engine", help=argparse.SUPPRESS)
    serve.set_defaults(func=server_command("serve"))

    database = commands.add_parser("db").add_subparsers(dest="action", required=True)
    upgrade = database.add_parser("upgrade", help="bring the database to the current schema")
    upgrade.add_argument("--home", required=True)
    upgrade.set_defaults(func=server_command("db upgrade"))

    subscription = commands.add_parser("subscription").add_subparsers(dest="action",
                                                                      required=True)
    create = subscription.add_parser("create", help="create a subscription")
    create.add_argument("--home", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--cert", help="PEM or DER certificate to register to it")
    create.set_defaults(func=server_command("subscription create"))

    cert = commands.add_parser("cert").add_subparsers(dest="action", required=True)
    issue = cert.add_parser("issue", help="issue a client certificate from the home CA")
    issue.add_argument("--home", required=True)
    issue.add_argument("--name", required=True)
    issue.add_argument("--out", required=True)
    issue.add_argument("--days", type=int, default=825,
                       help="how long it is valid from now: 1 or more (default 825)")
    issue.add_argument("--subscription", help="also register it to this subscription")
    issue.set_defaults(func=server_command("cert issue"))
    server = cert.add_parser("server", help="renew the server certificate from the home CA; "
                             "a running serve takes it up without a restart")
    server.add_argument("--home", required=True)
    add_host_name(server, "make it for this DNS name or IP address (repeatable), besides "
                  "localhost, 127.0.0.1 and ::1; default: the current certificate's names")
    server.add_argument("--days", type=int, default=825,
                        help="how long it is valid from now: 1 or more (default 825)")
    server.add_argument("--if-expiring-within", type=int, metavar="DAYS",
                        help="do nothing unless the current certificate ends within DAYS "
                        "days (for a daily cron line)")
    server.set_defaults(func=server_command("cert server"))

    add_principal_commands(commands)
    add_dashboard_commands(commands)

    secrets = commands.add_parser("secrets").add_subparsers(dest="action", required=True)
    rotate = secrets.add_parser("rotate", help="encrypt the stored job secrets with a new key")
    rotate.add_argument("--home", required=True)
    rotate.set_defaults(func=server_command("secrets rotate"))

    add_move_commands(commands)
    add_client_commands(commands)
    return parser


def add_principal_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]
                           ) -> None:
    """`scheduler principals create|list|delete`: the client ids and secrets the service's
    token endpoint takes, for bearer tokens of the Resource Manager API."""
    principals = commands.add_parser(
        "principals", help="service principals: client ids and secrets for bearer tokens "
        "(azure-identity's ClientSecretCredential)").add_subparsers(dest="action",
                                                                    required=True)
    subscription_help = "the subscription (tenant) it belongs to (default: the one the " \
        "home's client profile names)"
    output_help = "table for people (default), json for scripts"
    create = principals.add_parser("create", help="make a service principal and print its "
                                   "client id and secret (shown once)")
    create.add_argument("--home", required=True)
    create.add_argument("--subscription", help=subscription_help)
    create.add_argument("--name", required=True, help="what it is for (1 to 100 characters)")
    create.add_argument("--output", "-o", choices=("table", "json"), default="table",
                        help=output_help)
    create.set_defaults(func=server_command("principals create"))
    listing = principals.add_parser("list", help="list the subscription's service principals "
                                    "(never their secrets)")
    listing.add_argument("--home", required=True)
    listing.add_argument("--subscription", help=subscription_help)
    listing.add_argument("--output", "-o", choices=("table", "json"), default="table",
                         help=output_help)
    listing.set_defaults(func=server_command("principals list"))
    remove = principals.add_parser("delete", help="delete a service principal; its tokens "
                                   "stop working at once")
    remove.add_argument("--home", required=True)
    remove.add_argument("--subscription", help=subscription_help)
    remove.add_argument("client_id", metavar="CLIENT_ID", help="the service principal's "
                        "client id")
    remove.set_defaults(func=server_command("principals delete"))


def add_dashboard_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]
                           ) -> None:
    """`scheduler dashboard link`: a one-time sign-in URL for the dashboard."""
    dashboard = commands.add_parser(
        "dashboard", help="the dashboard under /ui/").add_subparsers(dest="action",
                                                                     required=True)
    link = dashboard.add_parser("link", help="print a one-time URL that opens a dashboard "
                                "session (it works once, within 10 minutes)")
    link.add_argument("--home", required=True)
    link.add_argument("--subscription", help="the subscription the session sees (default: "
                      "the one the home's client profile names)")
    link.add_argument("--certificate", metavar="THUMBPRINT", help="the registered "
                      "certificate the session acts as (default: the home's admin "
                      "certificate)")
    link.add_argument("--output", "-o", choices=("text", "json"), default="text",
                      help="text for people (default), json for scripts")
    link.set_defaults(func=server_command("dashboard link"))


def add_move_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`scheduler export` and `scheduler import`: moving a home to another database."""
    export = commands.add_parser(
        "export", help="write the home (subscriptions, certificates, CA and server "
        "certificate, cloud services, collections, jobs) as one file to standard output; "
        "refused while an engine of the home runs")
    export.add_argument("--home", required=True)
    export.add_argument("--history", action="store_true",
                        help="also carry the jobs' history and finished executions")
    sealing = export.add_mutually_exclusive_group()
    sealing.add_argument("--passphrase-file", metavar="FILE",
                         help="seal the secrets in the file (job secrets, CA and server "
                         "keys) with the passphrase FILE holds; one of this or "
                         "--clear-secrets is required")
    sealing.add_argument("--clear-secrets", action="store_true",
                         help="write the secrets in clear")
    export.set_defaults(func=server_command("export"))

    load = commands.add_parser(
        "import", help="load an export file into this home's database, which holds none "
        "of it yet, and make the file's CA and server certificate this home's")
    load.add_argument("--home", required=True)
    load.add_argument("file", metavar="FILE", help="the export file (- for standard input)")
    load.add_argument("--passphrase-file", metavar="FILE",
                      help="the file of the passphrase the export was sealed with")
    load.set_defaults(func=server_command("import"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `scheduler` command."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ClientError as exc:  # the service refused, or could not be reached
        return failed(exc, 1)
    except (CommandError, SettingsError, OSError, ValueError) as exc:
        return failed(exc, 2)
    except KeyboardInterrupt:
        return failed("interrupted", 130)
    except Exception as exc:  # a fault no check foresaw: a message all the same
        return failed(f"{type(exc).__name__}: {exc}", 1)


def failed(problem: object, code: int) -> int:
    """Say why a command failed on standard error, and return its exit code. The message may
    quote the service or a file, so control characters in it are shown, not obeyed."""
    print(f"scheduler: {escape_controls(str(problem), keep=chr(10))}", file=sys.stderr)
    return code


if __name__ == "__main__":
    # `python -m scheduler.cli` (how `serve --role all` starts its children): run the module
    # `scheduler.cli` that `scheduler.admin` imports, so that its CommandError is this one.
    from scheduler.cli import main as scheduler_main

    sys.exit(scheduler_main())
