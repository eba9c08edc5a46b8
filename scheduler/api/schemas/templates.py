"""The placeholders of a job document, checked before it is stored or run: each one stands
where a value can be data, names something that exists, has a value when it must, and the
values known then do not make its text longer than a filled text may be."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.api.schemas.job_codec import ACTION_CODECS
from scheduler.domain import InvalidField
from scheduler.domain.placeholders import (
    CALLBACK_URL,
    EXECUTION_NAMES,
    FILLED_BODY,
    FILLED_HEADER,
    FILLED_URI,
    Escaping,
    FillLimit,
    Hole,
    PlaceholderError,
    Template,
    body_kind,
    body_template,
    check_name,
    escaped,
    parameter_of,
    text_template,
    uri_template,
)

# An HTTP action's request; any other action type's message has its text filled in (and its
# routing key, headers and custom properties, where it has them).
_REQUEST_KEY = "request"
# Values of the length an execution's own give (a 32-digit id, a time in UTC, a callback URL
# of a long host name, the id and a token), to measure filled texts by before there is an
# execution.
_EXECUTION_SAMPLES = dict(zip(EXECUTION_NAMES, (
    "0" * 32, "2000-01-01T00:00:00Z",
    "https://" + "h" * 64 + ":65535/callbacks/" + "0" * 32 + "/" + "t" * 43), strict=True))


@dataclass(frozen=True, slots=True)
class TemplatedField:
    """One text of a job document that placeholders are filled in, split at them."""

    name: str  # in the client's terms: `action.request.uri`
    template: Template
    steps_before: tuple[str, ...]
    limit: FillLimit  # how long it may be once filled, as the engine fills it
    awaits_callback: bool = False  # its action waits for a callback: it may name its URL


def check_placeholders(definition: Mapping[str, Any], values: Mapping[str, Any], *,
                       require_values: bool) -> None:
    """Refuse a placeholder that stands where it may not, names nothing, or fills a header
    with a value a header cannot carry; with `require_values`, also one naming a parameter
    that `values` does not give; and a text that the values known now (parameters, the
    execution's) would already make longer than its limit. Raises InvalidField naming the
    field."""
    for found in templated_fields(definition):
        for hole in found.template.holes:
            try:
                check_name(hole.name, found.steps_before)
            except PlaceholderError as exc:
                raise InvalidField(found.name, str(exc)) from None
            if hole.name == CALLBACK_URL and not found.awaits_callback:
                raise InvalidField(found.name, f"{{{{{CALLBACK_URL}}}}} has a value only in an "
                                               "HTTP action whose completion mode is "
                                               "callback")
            _check_value(found.name, hole, values, require_values)
        if found.template.holes:
            _check_filled_length(found, values)


def _check_filled_length(found: TemplatedField, values: Mapping[str, Any]) -> None:
    """Refuse a text longer than its limit once the values known now are filled in; step
    outputs are known only when the step before has run, and count as empty here."""
    length = sum(map(len, found.template.literals))
    written: dict[tuple[str, Escaping], int] = {}  # a value pasted many times: escaped once
    for hole in found.template.holes:
        key = (hole.name, hole.escaping)
        if key not in written:
            known = _known_value(hole.name, values)
            written[key] = 0 if known is None else len(escaped(hole, known))
        length += written[key]
    if length > found.limit.chars:
        raise InvalidField(found.name, f"would be {length} characters once its placeholders "
                                       f"are filled with these parameters; "
                                       f"{found.limit.describe()}")


def _known_value(name: str, values: Mapping[str, Any]) -> Any:
    """What a placeholder is filled with, if that is known before the execution runs."""
    if name in _EXECUTION_SAMPLES:
        return _EXECUTION_SAMPLES[name]
    parameter = parameter_of(name)
    return values.get(parameter) if parameter is not None else None


def _check_value(field: str, hole: Hole, values: Mapping[str, Any], require_values: bool
                 ) -> None:
    """A parameter's value, where it is known, can fill the hole; one that is needed is
    given."""
    parameter = parameter_of(hole.name)
    if parameter is None:
        return
    if parameter not in values:
        if require_values:
            raise InvalidField(field, f"{{{{{hole.name}}}}} names a parameter that neither "
                                      "the job's parameters nor the run give")
        return
    try:
        escaped(hole, values[parameter])
    except PlaceholderError as exc:
        raise InvalidField(f"parameters.{parameter}", str(exc)) from None


def templated_fields(definition: Mapping[str, Any]) -> Iterator[TemplatedField]:
    """Every text of a job document that placeholders are filled in; raises InvalidField
    for a placeholder in a place where no value may stand (a URI's scheme, host or port)."""
    action = definition.get("action") or {}
    yield from _action_fields(action, "action", ())
    if action.get("errorAction"):
        yield from _action_fields(action["errorAction"], "action.errorAction", ())


def message_keys() -> set[str]:
    """The keys the registered action types' messages sit under, HTTP's request aside."""
    return {codec.key for codec in ACTION_CODECS.values()} - {_REQUEST_KEY}


def _action_fields(action: Mapping[str, Any], name: str, steps_before: tuple[str, ...]
                   ) -> Iterator[TemplatedField]:
    """The templated texts of one action (each step's, for a sequence)."""
    if action.get("type") == "sequence":
        names: list[str] = []
        for index, step in enumerate(action.get("steps") or ()):
            yield from _action_fields(step.get("action") or {}, f"{name}.steps.{index}.action",
                                      tuple(names))
            names.append(str(step.get("name")))
        return
    if action.get(_REQUEST_KEY) is not None:
        awaits = (action.get("completion") or {}).get("mode") == "callback"
        for found in _request_fields(action[_REQUEST_KEY], f"{name}.request", steps_before):
            yield dataclasses.replace(found, awaits_callback=awaits)
    for key in message_keys():
        if action.get(key) is not None:
            yield from _message_fields(action[key], f"{name}.{key}", steps_before)


def _request_fields(request: Mapping[str, Any], name: str, steps_before: tuple[str, ...]
                    ) -> Iterator[TemplatedField]:
    """An HTTP request's URI, header values and body."""
    try:
        uri = uri_template(str(request.get("uri") or ""))
    except PlaceholderError as exc:
        raise InvalidField(f"{name}.uri", str(exc)) from None
    yield TemplatedField(f"{name}.uri", uri, steps_before, FILLED_URI)
    headers = request.get("headers") or {}
    yield from _header_fields(headers, f"{name}.headers", steps_before)
    if request.get("body") is not None:
        content_type = next((str(value) for key, value in headers.items()
                             if key.lower() == "content-type"), None)
        yield TemplatedField(f"{name}.body",
                             body_template(str(request["body"]), body_kind(content_type)),
                             steps_before, FILLED_BODY)


def _message_fields(message: Mapping[str, Any], name: str, steps_before: tuple[str, ...]
                    ) -> Iterator[TemplatedField]:
    """A queue message's text (escaped by its content type where it has one), its routing
    key and its headers or custom properties."""
    content_type = (message.get("brokeredMessageProperties") or {}).get("contentType")
    kind = body_kind(str(content_type) if content_type is not None else None)
    yield TemplatedField(f"{name}.message", body_template(str(message.get("message") or ""),
                                                          kind), steps_before, FILLED_BODY)
    if message.get("routingKey") is not None:
        yield TemplatedField(f"{name}.routingKey", text_template(str(message["routingKey"])),
                             steps_before, FILLED_BODY)
    for key in ("headers", "customMessageProperties"):
        yield from _header_fields(message.get(key) or {}, f"{name}.{key}", steps_before)


def _header_fields(headers: Mapping[str, Any], name: str, steps_before: tuple[str, ...]
                   ) -> Iterator[TemplatedField]:
    """Header values, whose placeholders are checked as headers."""
    for key, value in headers.items():
        yield TemplatedField(f"{name}.{key}", text_template(str(value), Escaping.HEADER),
                             steps_before, FILLED_HEADER)
