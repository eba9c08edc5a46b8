"""The names the client puts into a URL path, checked as the service checks them, before
anything is sent: job ids, cloud service and job collection names, subscription ids."""

from __future__ import annotations

import re

from scheduler.client.errors import InputError

# The service's rule for job ids and for cloud service and job collection names. The first
# character is a letter or digit, so `.` and `..` (dot segments, which URL libraries resolve
# away: `jobs/.` is `jobs`) can never be one; `/`, `%`, `?` and `#` are never part of one.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", re.ASCII)
RULE = "use 1-100 letters, digits, '-', '_' and '.', starting with a letter or digit"


def is_name(value: str) -> bool:
    """Whether the service takes `value` as a job id, cloud service or collection name."""
    return NAME.fullmatch(value) is not None


def check_name(value: str, argument: str, what: str) -> str:
    """`value`, or an InputError naming the argument it came from and the rule it breaks.

    `what` says what the value is (`job id`); repr() shows it, control characters escaped.
    """
    if not is_name(value):
        raise InputError(f"{argument}: the {what} {value!r} is not valid: {RULE}; "
                         "nothing was sent")
    return value


# An execution id as the service makes them (openapi.yaml: `^[0-9a-f]{32}$`); it reads them
# in either case.
EXECUTION_ID = re.compile(r"[0-9a-fA-F]{32}", re.ASCII)
# A certificate's thumbprint: the SHA-1 of its DER, 40 hexadecimal digits. People copy them
# from tools that print `AB:CD:...` or groups with spaces, so those separators are dropped.
THUMBPRINT = re.compile(r"[0-9A-F]{40}", re.ASCII)
THUMBPRINT_SEPARATORS = re.compile(r"[:\s]")


def check_execution_id(value: str, argument: str) -> str:
    """`value`, or an InputError naming the argument it came from: an execution id is 32
    hexadecimal digits."""
    if EXECUTION_ID.fullmatch(value) is None:
        raise InputError(f"{argument}: the execution id {value!r} is not valid: an execution "
                         "id is 32 hexadecimal digits; nothing was sent")
    return value.lower()


def thumbprint_of(value: str, argument: str) -> str:
    """A certificate thumbprint as the service writes it (40 upper-case hexadecimal digits,
    no separators), or an InputError naming the argument it came from."""
    thumbprint = THUMBPRINT_SEPARATORS.sub("", value).upper()
    if THUMBPRINT.fullmatch(thumbprint) is None:
        raise InputError(f"{argument}: the thumbprint {value!r} is not valid: a thumbprint is "
                         "40 hexadecimal digits (the SHA-1 of the certificate); nothing was "
                         "sent")
    return thumbprint
