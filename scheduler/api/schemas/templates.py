"""The placeholders of a job document, checked before it is stored or run: each one stands
where a value can be data, names something that exists, and has a value when it must."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.domain import InvalidField
from scheduler.domain.placeholders import (
    Escaping,
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

# Each queue message's fields that placeholders are filled in.
_MESSAGE_KEYS = ("queueMessage", "serviceBusQueueMessage", "serviceBusTopicMessage",
                 "amqpMessage", "redisMessage")


@dataclass(frozen=True, slots=True)
class TemplatedField:
    """One text of a job document that placeholders are filled in, split at them."""

    name: str  # in the client's terms: `action.request.uri`
    template: Template
    steps_before: tuple[str, ...]


def check_placeholders(definition: Mapping[str, Any], values: Mapping[str, Any], *,
                       require_values: bool) -> None:
    """Refuse a placeholder that stands where it may not, names nothing, or fills a header
    with a value a header cannot carry; with `require_values`, also one naming a parameter
    that `values` does not give. Raises InvalidField naming the field."""
    for found in templated_fields(definition):
        for hole in found.template.holes:
            try:
                check_name(hole.name, found.steps_before)
            except PlaceholderError as exc:
                raise InvalidField(found.name, str(exc)) from None
            _check_value(found.name, hole, values, require_values)


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
    if action.get("request") is not None:
        yield from _request_fields(action["request"], f"{name}.request", steps_before)
    for key in _MESSAGE_KEYS:
        if action.get(key) is not None:
            yield from _message_fields(action[key], f"{name}.{key}", steps_before)


def _request_fields(request: Mapping[str, Any], name: str, steps_before: tuple[str, ...]
                    ) -> Iterator[TemplatedField]:
    """An HTTP request's URI, header values and body."""
    try:
        uri = uri_template(str(request.get("uri") or ""))
    except PlaceholderError as exc:
        raise InvalidField(f"{name}.uri", str(exc)) from None
    yield TemplatedField(f"{name}.uri", uri, steps_before)
    headers = request.get("headers") or {}
    yield from _header_fields(headers, f"{name}.headers", steps_before)
    if request.get("body") is not None:
        content_type = next((str(value) for key, value in headers.items()
                             if key.lower() == "content-type"), None)
        yield TemplatedField(f"{name}.body",
                             body_template(str(request["body"]), body_kind(content_type)),
                             steps_before)


def _message_fields(message: Mapping[str, Any], name: str, steps_before: tuple[str, ...]
                    ) -> Iterator[TemplatedField]:
    """A queue message's text (escaped by its content type where it has one), its routing
    key and its headers or custom properties."""
    content_type = (message.get("brokeredMessageProperties") or {}).get("contentType")
    kind = body_kind(str(content_type) if content_type is not None else None)
    yield TemplatedField(f"{name}.message", body_template(str(message.get("message") or ""),
                                                          kind), steps_before)
    if message.get("routingKey") is not None:
        yield TemplatedField(f"{name}.routingKey", text_template(str(message["routingKey"])),
                             steps_before)
    for key in ("headers", "customMessageProperties"):
        yield from _header_fields(message.get(key) or {}, f"{name}.{key}", steps_before)


def _header_fields(headers: Mapping[str, Any], name: str, steps_before: tuple[str, ...]
                   ) -> Iterator[TemplatedField]:
    """Header values, whose placeholders are checked as headers."""
    for key, value in headers.items():
        yield TemplatedField(f"{name}.{key}", text_template(str(value), Escaping.HEADER),
                             steps_before)
