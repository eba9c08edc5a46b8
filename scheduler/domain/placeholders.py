"""Placeholders in a job's text: which names exist, where each one stands, and how its value
is escaped there, so that a value is always data and never syntax.

A text is split once into a `Template`: its literal parts and its holes, each hole knowing
how its value is written (percent-encoded in a URI, JSON-escaped inside a JSON string, as a
JSON value where it stands alone, form- or XML-escaped, checked in a header, or as given).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape as xml_escape

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")
PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}", re.ASCII)
CALLBACK_URL = "execution.callbackUrl"
EXECUTION_NAMES = ("execution.id", "execution.scheduledTime", CALLBACK_URL)
_HEADER_TEXT = re.compile(r"[\t\x20-\x7e]*")
_XML_QUOTES = {'"': "&quot;", "'": "&apos;"}
TEMPLATE_CACHE = 4096


class Escaping(Enum):
    """How a value is written where its placeholder stands."""

    TEXT = "text"  # as given
    URI = "uri"  # a path segment or query value: percent-encoded
    HEADER = "header"  # as given, refused if a header cannot carry it
    JSON_STRING = "json string"  # inside a JSON string: JSON-escaped
    JSON_VALUE = "json value"  # a whole JSON value: the value as JSON
    FORM = "form"  # form-encoded
    XML = "xml"  # XML-escaped


class Body(Enum):
    """What a body is, by its content type: it decides how placeholders in it are escaped."""

    TEXT = "text"
    JSON = "json"
    FORM = "form"
    XML = "xml"


class PlaceholderError(ValueError):
    """A placeholder that cannot stand where it is, or that has no value; names it and
    never its value."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"The placeholder {{{{{name}}}}} {problem}.")
        self.name = name
        self.problem = problem


@dataclass(frozen=True, slots=True)
class FillLimit:
    """The most characters a text may have once its placeholders are filled: `what` names
    the kind of text in messages."""

    what: str
    chars: int

    def describe(self) -> str:
        """The limit in words, as error messages name it."""
        return f"a filled {self.what} has at most {self.chars} characters"


# Each text is bounded when it is written (a body at 8 KB, a URI at 2 KB, headers at 4 KB),
# but one placeholder may stand many times: these bound what filling can make of it.
FILLED_URI = FillLimit("URI", 8 * 1024)
FILLED_HEADER = FillLimit("header value", 4 * 1024)
FILLED_BODY = FillLimit("body or message", 64 * 1024)


class FilledTooLong(PlaceholderError):
    """A text that the values of its placeholders make longer than its limit: its attempt
    fails naming the limit, and nothing is sent."""

    def __init__(self, limit: FillLimit) -> None:
        # Not one placeholder but all of them together: the message names the limit, and
        # no placeholder.
        ValueError.__init__(self, f"The {limit.what} would be longer than {limit.chars} "
                                  f"characters once its placeholders are filled; "
                                  f"{limit.describe()}.")
        self.name = ""
        self.problem = f"would be longer than {limit.chars} characters"
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Hole:
    """Where one placeholder stands: its name and how its value is escaped there."""

    name: str
    escaping: Escaping


@dataclass(frozen=True, slots=True)
class Template:
    """A text split at its placeholders: `literals` has one more item than `holes`."""

    literals: tuple[str, ...]
    holes: tuple[Hole, ...]
    # Each hole with its writer and the literal after it, made once: every call fills them.
    _filling: tuple[tuple[str, Callable[[str, Any], str], str], ...] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        filling = tuple((hole.name, _WRITERS[hole.escaping], literal)
                        for hole, literal in zip(self.holes, self.literals[1:], strict=True))
        object.__setattr__(self, "_filling", filling)

    def names(self) -> Iterator[str]:
        """The names of its placeholders, in order."""
        return (hole.name for hole in self.holes)

    def fill(self, value_of: Callable[[str], Any], limit: FillLimit | None = None) -> str:
        """The text with every hole filled by `value_of(name)`, escaped for its place;
        `value_of` raises `PlaceholderError` for a name that has no value, and a text that
        grows past `limit` raises `FilledTooLong` as soon as it does."""
        parts = [self.literals[0]]
        length = len(parts[0])
        for name, write, literal in self._filling:
            value = write(name, value_of(name))
            parts.append(value)
            parts.append(literal)
            length += len(value) + len(literal)
            if limit is not None and length > limit.chars:  # before the rest is made at all
                raise FilledTooLong(limit)
        return "".join(parts)


def as_text(value: Any) -> str:
    """A value as text: strings as they are, anything else as JSON (`true`, `null`, `5`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def escaped(hole: Hole, value: Any) -> str:
    """A value written for the place of its hole."""
    return _WRITERS[hole.escaping](hole.name, value)


def _as_json(_name: str, value: Any) -> str:
    """A whole JSON value: strings quoted and escaped, the rest as JSON."""
    if isinstance(value, str):
        return encode_basestring(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _header_text(name: str, value: Any) -> str:
    """A header value, refused if a header cannot carry it."""
    text = as_text(value)
    if not header_safe(text):
        raise PlaceholderError(name, "fills a header, and its value holds a line break or "
                                     "a character a header cannot carry")
    return text


# How each escaping writes a value (`encode_basestring` is the JSON encoder's own, in C).
_WRITERS: dict[Escaping, Callable[[str, Any], str]] = {
    Escaping.TEXT: lambda _name, value: as_text(value),
    Escaping.URI: lambda _name, value: quote(as_text(value), safe=""),
    Escaping.HEADER: _header_text,
    Escaping.JSON_STRING: lambda _name, value: encode_basestring(as_text(value))[1:-1],
    Escaping.JSON_VALUE: _as_json,
    Escaping.FORM: lambda _name, value: quote_plus(as_text(value), safe=""),
    Escaping.XML: lambda _name, value: xml_escape(as_text(value), _XML_QUOTES),
}


def header_safe(text: str) -> bool:
    """Whether a header value can carry this text: printable ASCII and tabs."""
    return _HEADER_TEXT.fullmatch(text) is not None


@lru_cache(maxsize=256)
def body_kind(content_type: str | None) -> Body:
    """What a body is, by its `Content-Type` (JSON, form-encoded, XML, or other text)."""
    if not content_type:
        return Body.TEXT
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return Body.JSON
    if media == "application/x-www-form-urlencoded":
        return Body.FORM
    if media in ("application/xml", "text/xml") or media.endswith("+xml"):
        return Body.XML
    return Body.TEXT


def _split(text: str, escapings: Callable[[list[re.Match[str]]], list[Escaping]]
           ) -> Template:
    """A text cut at its placeholders, each escaped as `escapings` decides."""
    matches = list(PLACEHOLDER.finditer(text))
    literals, position = [], 0
    for match in matches:
        literals.append(text[position:match.start()])
        position = match.end()
    literals.append(text[position:])
    holes = tuple(Hole(match.group(1), escaping)
                  for match, escaping in zip(matches, escapings(matches), strict=True))
    return Template(tuple(literals), holes)


@lru_cache(maxsize=TEMPLATE_CACHE)
def text_template(text: str, escaping: Escaping = Escaping.TEXT) -> Template:
    """A text whose placeholders are all escaped the same way (headers, messages)."""
    return _split(text, lambda matches: [escaping] * len(matches))


@lru_cache(maxsize=TEMPLATE_CACHE)
def body_template(text: str, kind: Body) -> Template:
    """A body whose placeholders are escaped as its content type says."""
    if kind is Body.JSON:
        return _split(text, lambda matches: _json_escapings(text, matches))
    escaping = {Body.TEXT: Escaping.TEXT, Body.FORM: Escaping.FORM, Body.XML: Escaping.XML}
    return text_template(text, escaping[kind])


def _json_escapings(text: str, matches: list[re.Match[str]]) -> list[Escaping]:
    """Inside a JSON string a value is JSON-escaped text; standing alone, a JSON value."""
    starts = {match.start() for match in matches}
    inside, escaped_char, found = False, False, []
    for index, char in enumerate(text):
        if index in starts:
            found.append(Escaping.JSON_STRING if inside else Escaping.JSON_VALUE)
        if inside:
            if escaped_char:
                escaped_char = False
            elif char == "\\":
                escaped_char = True
            elif char == '"':
                inside = False
        elif char == '"':
            inside = True
    return found


@lru_cache(maxsize=TEMPLATE_CACHE)
def uri_template(text: str) -> Template:
    """A URI whose placeholders stand in its path, query or fragment, percent-encoded;
    raises `PlaceholderError` for one in its scheme, host or port."""
    matches = list(PLACEHOLDER.finditer(text))
    if matches:
        scheme_end = text.find("://")
        authority_start = scheme_end + 3 if scheme_end >= 0 else 0
        authority_end = min((index for index in (text.find(mark, authority_start)
                                                 for mark in "/?#") if index >= 0),
                            default=len(text))
        if matches[0].start() < authority_end:
            raise PlaceholderError(matches[0].group(1),
                                   "stands in the URI's scheme, host or port, where no "
                                   "placeholder may stand")
    return _split(text, lambda found: [Escaping.URI] * len(found))


def check_name(name: str, steps_before: Collection[str] = ()) -> None:
    """Refuse a placeholder that names nothing: an unknown namespace, a parameter name that
    cannot be one, an unknown execution value, or a step that does not run before it."""
    namespace, _, rest = name.partition(".")
    if namespace == "parameters":
        if not PARAMETER_NAME.fullmatch(rest):
            raise PlaceholderError(name, "does not name a parameter (letters, digits and _)")
    elif namespace == "execution":
        if name not in EXECUTION_NAMES:
            raise PlaceholderError(name, f"is not one of {', '.join(EXECUTION_NAMES)}")
    elif namespace == "steps":
        _check_step_output(name, rest.split("."), steps_before)
    else:
        raise PlaceholderError(name, "is in no known namespace (parameters, execution, "
                                     "steps)")


def _check_step_output(name: str, path: list[str], steps_before: Collection[str]) -> None:
    """`steps.NAME.output.FIELD` or `steps.NAME.output.json.PATH`, NAME an earlier step.
    Which fields a step leaves depends on its action; one it does not leave fails the
    attempt that reads it."""
    if not {step.lower() for step in steps_before} & {path[0].lower()}:
        raise PlaceholderError(name, "names no step that runs before it")
    if len(path) < 3 or path[1] != "output" or (path[2] != "json" and len(path) > 3):
        raise PlaceholderError(name, "must read steps.NAME.output.FIELD or "
                                     "steps.NAME.output.json.PATH")


def parameter_of(name: str) -> str | None:
    """The parameter a placeholder names, if it names one."""
    return name[11:] if name.startswith("parameters.") else None
