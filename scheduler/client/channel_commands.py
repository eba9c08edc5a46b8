"""`scheduler channels put|get|list|delete|test`: a collection's notification channels, where
its notifications go (webhook, email, Slack), and their test message. Exit codes: see
`runner`."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.client import render
from scheduler.client.errors import InputError
from scheduler.client.http import ApiClient
from scheduler.client.profile import Connection
from scheduler.client.runner import Output, Subcommands, leaf

# The service's rule for channel names: one URL segment, never a dot segment.
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
CHANNEL_TYPES = ("webhook", "email", "slack")
# The flags each type takes, besides --type.
TYPE_FLAGS = {"webhook": ("target", "secret"), "email": ("to", "sender"),
              "slack": ("target",)}
FLAG_NAMES = {"target": "--target", "secret": "--secret", "to": "--to", "sender": "--from"}


def check_channel_name(name: str) -> str:
    """`name`, or an InputError naming NAME, before anything is sent."""
    if not CHANNEL_NAME.fullmatch(name):
        raise InputError(f"NAME: the channel name {name!r} is not valid: use 1-64 letters, "
                         "digits, '-' and '_'; nothing was sent")
    return name


def channel_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The channel document the flags describe; an InputError for a flag its type does not
    take, or a missing one, before anything is sent."""
    kind: str = args.type
    for key, flag in FLAG_NAMES.items():
        if getattr(args, key) and key not in TYPE_FLAGS[kind]:
            raise InputError(f"{flag} does not apply to a {kind} channel; nothing was sent")
    if kind == "email":
        if not args.to:
            raise InputError("an email channel needs --to ADDRESS (once per recipient); "
                             "nothing was sent")
        document: dict[str, Any] = {"type": kind, "to": list(args.to)}
        if args.sender:
            document["from"] = args.sender
        return document
    if not args.target:
        raise InputError(f"a {kind} channel needs --target URL; nothing was sent")
    document = {"type": kind, "url": args.target}
    if args.secret:
        document["secret"] = args.secret
    return document


def channels_table(found: Sequence[Mapping[str, Any]]) -> str:
    """Channels, one a line: where each sends."""
    return render.table(["NAME", "TYPE", "TO"], [
        [item.get("name"), item.get("type"), _where(item)] for item in found])


def _where(channel: Mapping[str, Any]) -> str:
    if channel.get("type") == "email":
        return ", ".join(channel.get("to") or [])
    signed = " (signed)" if channel.get("secret") else ""
    return f"{channel.get('url')}{signed}"


def channel_fields(channel: Mapping[str, Any]) -> str:
    """One channel, field by field; its secrets as the service shows them (redacted)."""
    pairs: list[tuple[str, Any]] = [("name", channel.get("name")),
                                    ("type", channel.get("type"))]
    if channel.get("type") == "email":
        pairs += [("to", channel.get("to") or []), ("from", channel.get("from"))]
    else:
        pairs.append(("url", channel.get("url")))
        if channel.get("type") == "webhook":
            pairs.append(("secret", channel.get("secret")))
    return render.fields(pairs)


def channels_put(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`channels put NAME --type T ...`: create the channel, or replace it whole."""
    name = check_channel_name(args.channel)
    channel = api.put_channel(*connection.need_collection(), name, channel_from_flags(args))
    return Output(channel, channel_fields(channel))


def channels_get(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`channels get NAME`."""
    channel = api.get_channel(*connection.need_collection(), check_channel_name(args.channel))
    return Output(channel, channel_fields(channel))


def channels_list(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`channels list`: the collection's channels, by name."""
    found = api.list_channels(*connection.need_collection())
    return Output(found, channels_table(found))


def channels_delete(api: ApiClient, connection: Connection,
                    args: argparse.Namespace) -> Output:
    """`channels delete NAME`."""
    name = check_channel_name(args.channel)
    api.delete_channel(*connection.need_collection(), name)
    return Output(None, f"Deleted notification channel {name}.")


def channels_test(api: ApiClient, connection: Connection, args: argparse.Namespace) -> Output:
    """`channels test NAME`: send the test message; exit 1 unless it was delivered."""
    name = check_channel_name(args.channel)
    answer = api.test_channel(*connection.need_collection(), name)
    if answer.get("delivered"):
        return Output(answer, f"Delivered a test message to {name}.")
    return Output(answer, None, f"The test message to {name} was not delivered: "
                                f"{answer.get('error')}")


def add_channels_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """`scheduler channels put|get|list|delete|test`."""
    channels = commands.add_parser(
        "channels", help="notification channels of a collection: webhooks, email, Slack, "
        "through the HTTPS API")
    group = channels.add_subparsers(dest="action", required=True)
    put = leaf(group, "put", channels_put, "create a channel, or replace it whole (PUT)",
               common, job_id=False)
    _name(put)
    put.add_argument("--type", required=True, choices=CHANNEL_TYPES, metavar="TYPE",
                     help=f"where the notifications go: {', '.join(CHANNEL_TYPES)}")
    # Not --url: that names the service, as it does for every command of the client.
    put.add_argument("--target", metavar="URL",
                     help="webhook and slack: the URL messages are POSTed to")
    put.add_argument("--secret", help="webhook: a whsec_ secret that signs each message")
    put.add_argument("--to", action="append", metavar="ADDRESS",
                     help="email: a recipient; once per recipient")
    put.add_argument("--from", dest="sender", metavar="ADDRESS",
                     help="email: the sender (default: the operator's)")
    _name(leaf(group, "get", channels_get, "show one channel", common, job_id=False))
    leaf(group, "list", channels_list, "list the collection's channels", common, job_id=False)
    _name(leaf(group, "delete", channels_delete, "delete a channel", common, job_id=False))
    _name(leaf(group, "test", channels_test, "send a channel a test message now", common,
               job_id=False))


def _name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("channel", metavar="NAME", help="the channel's name")
