"""Engine nodes by name: the name each node runs under (`engine.node_name`), and the nodes
a job's executions may run on (its `runOn`).

Names are compared lower-cased. An execution keeps the names it may run on as one text,
`,a,b,` (`stored_run_on`), so that a claim tests a node's membership with one LIKE on a
parameter bound once, whatever the list's length.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

MAX_NODE_NAME = 63
MAX_RUN_ON = 20
NODE_NAME_RULE = "1 to 63 letters, digits, '-', '_' or '.'"
_NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,63}")
# What surrounds every name in the stored form.
SEPARATOR = ","


def is_node_name(name: object) -> bool:
    """Whether `name` may name an engine node."""
    return isinstance(name, str) and _NODE_NAME.fullmatch(name) is not None


def node_name(name: str) -> str:
    """A node's name as it is compared and stored: lower-cased."""
    return name.lower()


def stored_run_on(names: Sequence[str]) -> str | None:
    """The stored form of the nodes an execution may run on: `,a,b,`; None for any node."""
    if not names:
        return None
    return SEPARATOR + SEPARATOR.join(node_name(name) for name in names) + SEPARATOR


def read_run_on(stored: str | None) -> tuple[str, ...]:
    """The names of a stored `run_on` (none: any node)."""
    if not stored:
        return ()
    return tuple(name for name in stored.split(SEPARATOR) if name)


def runs_on(names: Iterable[str], node: str) -> bool:
    """Whether a node named `node` may run an execution that names `names` (none: any)."""
    listed = [node_name(name) for name in names]
    return not listed or node_name(node) in listed


def waits_for_nodes(names: Iterable[str], live: Collection[str]) -> bool:
    """Whether an open execution that names `names` waits for a node: it names some, and
    none of them is among `live`, the names of the nodes alive now."""
    listed = [node_name(name) for name in names]
    return bool(listed) and not any(name in live for name in listed)


def membership_pattern(node: str) -> str:
    """The LIKE pattern that a stored `run_on` naming `node` matches (names hold no `%` or
    `_` wildcard that could match another: `_` is escaped)."""
    escaped = node_name(node).replace("_", "\\_")
    return f"%{SEPARATOR}{escaped}{SEPARATOR}%"
