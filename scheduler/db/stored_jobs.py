"""The stored form of a job: the domain's typed definition as the project's own versioned
document (`"v": 1`, snake_case), and its secrets apart, for sealing.

Only this module reads or writes a stored job's JSON. The document follows the domain's
frozen dataclasses field by field, read off their type hints: a field added to the domain is
stored and read back with no change here (a document stored before it was added reads with
the field's default). A value of a union of dataclasses says which one it is by its `kind`;
an action's kind is the one `scheduler.domain.jobs.ACTION_KINDS` registers. Times are UTC
ISO-8601, durations their whole microseconds and the text the job wrote them as.

Each secret field is stored as a reference, `{"sealed": NAME}`, to an entry of the sealed
secrets; a name is the field's place in this document (`action.authentication.password`),
never a wire format's label, so that rewording an API error or renaming a wire field leaves
stored secrets where they are.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cache
from typing import Any, NamedTuple, Protocol, Union, get_args, get_origin, get_type_hints

from cryptography.fernet import InvalidToken

from scheduler.domain.durations import Duration
from scheduler.domain.jobs import ACTION_KINDS, JobDefinition, Secret
from scheduler.domain.occurrences import upcoming
from scheduler.domain.recurrence import MonthlyOccurrence, Recurrence

VERSION = 1
Document = dict[str, Any]


class StoredJobError(ValueError):
    """A stored job document this version cannot read (another version, a missing secret)."""


class SealedSecretsError(Exception):
    """A stored job's secrets do not open with the keys at hand."""


# What each secret field holds when a job is read without opening its secrets (for what a
# GET shows, which never includes them).
UNOPENED = Secret("")
_UNOPENED: Mapping[str, str] = types.MappingProxyType({})  # the secrets of a job read so


class Sealer(Protocol):
    """What seals and opens a job's secrets: the home's `SecretBox`."""

    def seal(self, secrets: dict[str, str]) -> bytes | None:
        """The secrets sealed; None if there are none."""

    def open(self, sealed: bytes | None) -> dict[str, str]:
        """The secrets a sealed value holds."""


class _Dumper:
    """Collects the secrets of the document being written, by name."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}

    def secret(self, value: Secret, name: str) -> Document:
        self.secrets[name] = value.value
        return {"sealed": name}


class _Loader:
    """Gives the document being read its secrets from the opened ones."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.secrets = secrets

    def secret(self, value: Document) -> Secret:
        name = value["sealed"]
        if self.secrets is _UNOPENED:
            return UNOPENED
        if name not in self.secrets:
            raise StoredJobError(f"the secret {name} is not among the job's sealed secrets")
        return Secret(self.secrets[name])

    def optional_secret(self, value: Document | None) -> Secret | None:
        """A secret that may be absent: a reference marked `optional` (as the migration from
        the wire form writes where it could not tell) to a name no sealed secret has."""
        if value is None or (value.get("optional") and self.secrets is not _UNOPENED
                             and value["sealed"] not in self.secrets):
            return None
        return self.secret(value)


def dump_definition(definition: JobDefinition) -> tuple[str, dict[str, str]]:
    """A definition's stored document (compact JSON) and its secrets, by name."""
    document, secrets = definition_document(definition)
    return _text(document), secrets


def definition_document(definition: JobDefinition) -> tuple[Document, dict[str, str]]:
    """A definition's stored document as an object (for a file that carries it inside its
    own, such as an export) and its secrets, by name."""
    dumper = _Dumper()
    return {"v": VERSION, **_dump_dataclass(definition, "", dumper)}, dumper.secrets


def texts_from_each_start(definition: JobDefinition) -> Callable[[datetime | None], str]:
    """The stored document of a definition with each start given (copies of one job that
    differ only in when they start): the rest is written once."""
    document, _ = definition_document(definition)
    dump_start = _converter(datetime | None)[0]

    def text_from(start: datetime | None) -> str:
        document["start"] = dump_start(start, "start", _Dumper())
        return _text(document)
    return text_from


def load_definition(text: str, secrets: Mapping[str, str]) -> JobDefinition:
    """The definition a stored document and its opened secrets make; `StoredJobError` if it
    does not read (its message names the kind of fault, never a value)."""
    return load_document(_document(text), secrets)


def load_document(document: Document, secrets: Mapping[str, str]) -> JobDefinition:
    """The definition of a stored document given as an object, as `load_definition`."""
    if not isinstance(document, dict) or document.get("v") != VERSION:
        raise StoredJobError(f"the stored job is not a version {VERSION} document")
    try:
        definition: JobDefinition = _load_dataclass(JobDefinition, document, _Loader(secrets))
        return definition
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, StoredJobError):
            raise
        missing = f" (no {exc.args[0]!r})" if isinstance(exc, KeyError) else ""
        raise StoredJobError(f"the stored job does not read: {type(exc).__name__}{missing}"
                             ) from None


def seal_definition(definition: JobDefinition, box: Sealer) -> tuple[str, bytes | None]:
    """A definition's stored document and its secrets sealed with the box (None if it has
    none): the two columns a job or an inline run keeps it in."""
    text, secrets = dump_definition(definition)
    return text, box.seal(secrets)


def open_definition(text: str, sealed: bytes | None, box: Sealer) -> JobDefinition:
    """The definition of a stored document, its sealed secrets opened with the box;
    `SealedSecretsError` if they do not open, `StoredJobError` if the document does not
    read."""
    try:
        secrets = box.open(sealed) if sealed else {}
    except InvalidToken:
        raise SealedSecretsError("the secrets do not open with this home's keys") from None
    return load_definition(text, secrets)


def public_definition(text: str) -> JobDefinition:
    """The definition of a stored document with its secrets left sealed: each secret field
    holds `UNOPENED`. For what is shown of a job, which never includes its secrets."""
    return load_definition(text, _UNOPENED)


def stored_schedule(text: str) -> tuple[datetime | None, Recurrence | None]:
    """Only the start time and recurrence of a stored document."""
    document = _document(text)
    loads = {field: load for field, _, load in _shape(JobDefinition).fields}
    loader = _Loader(_UNOPENED)
    return loads["start"](document["start"], loader), loads["recurrence"](
        document["recurrence"], loader)


def stored_alert_channels(text: str) -> tuple[str, ...]:
    """Only the channels a stored document's alert rules send to (none without rules, or
    with rules that alert on nothing)."""
    rules = _document(text).get("alerts")
    if not isinstance(rules, dict) or not rules.get("on"):
        return ()
    return tuple(rules.get("channels") or ())


def fire_time_from(definition: str, created: datetime, executed: int, now: datetime,
                   stored: datetime | None, job_id: str) -> datetime | None:
    """A job's first fire time from `now` on, those passed meanwhile skipped (a job enabled
    or started again replays nothing); `stored` when it has not passed, or when the stored
    definition no longer reads (its next tick faults the job)."""
    if stored is None or stored >= now:
        return stored
    try:
        start, recurrence = stored_schedule(definition)
    except Exception:
        return stored
    return next(upcoming(recurrence, start, created, now, executed, job_id), None)


def _text(document: Document) -> str:
    return json.dumps(document, separators=(",", ":"))


def _document(text: str) -> Document:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise StoredJobError(f"the stored job is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("v") != VERSION:
        raise StoredJobError(f"the stored job is not a version {VERSION} document")
    return document


# --- values by their type hints --------------------------------------------------------------

Dump = Callable[[Any, str, _Dumper], Any]
Load = Callable[[Any, _Loader], Any]


class _Shape(NamedTuple):
    """How a dataclass is stored: the kind it writes of itself (a class's own `kind`, not a
    field of it), and how each field is written and read."""

    kind: str | None
    fields: tuple[tuple[str, Dump, Load], ...]


def _dump_dataclass(value: Any, name: str, dumper: _Dumper) -> Document:
    """A dataclass's fields, after its kind when it has one of its own."""
    shape = _shape(value.__class__)
    document: Document = {} if shape.kind is None else {"kind": shape.kind}
    for field, dump, _ in shape.fields:
        given = getattr(value, field)
        # A value JSON holds as it is (most fields) is written without a call.
        document[field] = given if dump is _same else dump(
            given, f"{name}.{field}" if name else field, dumper)
    return document


def _load_dataclass(cls: type, document: Document, loader: _Loader) -> Any:
    """An instance of `cls` from its fields; a field the document lacks takes its default."""
    fields = _shape(cls).fields
    try:  # every field there, as in a document this version wrote: by position, quickly
        return cls(*[document[field] if load is _same else load(document[field], loader)
                     for field, _, load in fields])
    except KeyError:  # stored before a field was added: the field's default
        return cls(**{field: load(document[field], loader)
                      for field, _, load in fields if field in document})


@cache
def _shape(cls: type) -> _Shape:
    """How a dataclass is stored, read off its type hints once."""
    hints = get_type_hints(cls)
    fields = tuple((field.name, *_converter(hints[field.name]))
                   for field in dataclasses.fields(cls) if field.init)
    kind = getattr(cls, "kind", None)
    own_kind = kind if isinstance(kind, str) and all(name != "kind" for name, *_ in fields) \
        else None
    return _Shape(own_kind, fields)


def _same(value: Any, *_: Any) -> Any:
    return value


@cache
def _converter(hint: Any) -> tuple[Dump, Load]:
    """How a value of the type `hint` is written and read."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return _union(args)
    if hint is Secret:
        return (lambda value, name, dumper: dumper.secret(value, name),
                lambda value, loader: loader.secret(value))
    if hint is Duration:
        return (lambda value, *_: {"us": value.value // timedelta(microseconds=1),
                                   "text": value.text},
                lambda value, _: Duration(timedelta(microseconds=value["us"]), value["text"]))
    if hint is datetime:
        return (lambda value, *_: value.astimezone(UTC).isoformat(),
                lambda value, _: datetime.fromisoformat(value))
    if isinstance(hint, type) and issubclass(hint, Enum):  # by its value
        enum: type[Enum] = hint
        return (lambda value, *_: value.value, lambda value, _: enum(value))
    if hint is MonthlyOccurrence:  # a pair: [day, occurrence]
        return (lambda value, *_: [value.day, value.occurrence],
                lambda value, _: MonthlyOccurrence(value[0], value[1]))
    if origin is tuple:
        return _sequence(args[0])
    if origin is frozenset:
        return (lambda value, *_: sorted(value), lambda value, _: frozenset(value))
    if origin in (dict, Mapping):  # read: the object JSON made is a dict of its own already
        return (lambda value, *_: dict(value), _same)
    if dataclasses.is_dataclass(hint):
        cls: type = hint  # type: ignore[assignment]
        return (_dump_dataclass, lambda value, loader: _load_dataclass(cls, value, loader))
    return _same, _same  # str, int, bool, Any: JSON as it is


def _sequence(item: Any) -> tuple[Dump, Load]:
    dump_item, load_item = _converter(item)
    return (lambda value, name, dumper: [dump_item(entry, f"{name}.{index}", dumper)
                                         for index, entry in enumerate(value)],
            lambda value, loader: tuple(load_item(entry, loader) for entry in value))


def _union(members: tuple[Any, ...]) -> tuple[Dump, Load]:
    """A union: None for None, a secret that may be absent, one of several dataclasses told
    apart by their `kind`, or one type that may be None."""
    present = tuple(member for member in members if member is not type(None))
    if present == (Secret,):
        return (lambda value, name, dumper: None if value is None else
                dumper.secret(value, name),
                lambda value, loader: loader.optional_secret(value))
    if len(present) > 1 and all(dataclasses.is_dataclass(member) for member in present):
        kinds = _kinds(present)
        return (lambda value, name, dumper: None if value is None else
                _dump_dataclass(value, name, dumper),
                lambda value, loader: None if value is None else
                _load_dataclass(kinds()[value["kind"]], value, loader))
    if len(present) == 1:
        dump, load = _converter(present[0])
        if dump is _same and load is _same:  # None is JSON's null as it is
            return _same, _same
        return (lambda value, name, dumper: None if value is None else dump(value, name, dumper),
                lambda value, loader: None if value is None else load(value, loader))
    return _same, _same  # scalars


def _kinds(members: tuple[Any, ...]) -> Callable[[], Mapping[str, type]]:
    """The classes of a union of dataclasses by their kinds: for actions, every action type
    registered (when it is read, so that one registered later reads too)."""
    if any(member in ACTION_KINDS.values() for member in members):
        return lambda: ACTION_KINDS
    by_kind = {member.kind: member for member in members}
    return lambda: by_kind
