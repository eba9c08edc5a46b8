"""Resource Manager's JSON: the resource envelopes, and a job's `properties`, which is
Azure's job document in Resource Manager's spelling.

The job is read and written by the one job codec (`scheduler.api.schemas`); this module
only respells its document both ways. Out: enum values in PascalCase (`Http`, `Minute`,
`Fixed`, `Enabled`), durations in ISO-8601 (`PT30S`, never .NET's `00:00:30`), a monthly
occurrence's `Occurrence` with a capital O and a client certificate's
`certificateExpirationDate`. In: any case and either duration form are read as the job
codec reads them; the two keys are spelled back, and `NotSpecified` authentication means
none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.domain.durations import format_iso_duration, parse_duration

PROVIDER = "Microsoft.Scheduler"
COLLECTION_TYPE = f"{PROVIDER}/jobCollections"
JOB_TYPE = f"{COLLECTION_TYPE}/jobs"
HISTORY_TYPE = f"{JOB_TYPE}/history"

# The members whose value is one of a few words, and those that list such words.
_ENUM_KEYS = frozenset({"type", "frequency", "retryType", "day", "state", "status"})
_ENUM_LIST_KEYS = frozenset({"weekDays"})
_DURATION_KEYS = frozenset({"retryInterval", "maxRetryInterval", "timeout", "timeToLive",
                            "jitter", "window"})
# Maps whose keys and values are the user's own words: never respelled.
_USER_MAPS = frozenset({"headers", "customMessageProperties", "parameters", "tags"})
# Members Resource Manager spells otherwise, by the object that holds them.
_RENAMED_OUT: dict[tuple[str, str], str] = {
    ("monthlyOccurrences", "occurrence"): "Occurrence",
    ("authentication", "certificateExpiration"): "certificateExpirationDate",
}
_RENAMED_IN: dict[tuple[str, str], str] = {
    (parent, arm): asm for (parent, asm), arm in _RENAMED_OUT.items()}
NOT_SPECIFIED = "notspecified"


def pascal(word: str) -> str:
    """A word as Resource Manager's enums spell it: `storageQueue` is `StorageQueue`."""
    return word[:1].upper() + word[1:]


def arm_spelling(document: Any, parent: str = "") -> Any:
    """Azure's job document (or a part of it) in Resource Manager's spelling."""
    if isinstance(document, list):
        return [arm_spelling(item, parent) for item in document]
    if not isinstance(document, dict) or parent in _USER_MAPS:
        return document
    out: dict[str, Any] = {}
    for key, value in document.items():
        name = _RENAMED_OUT.get((parent, key)) or key
        if key in _ENUM_KEYS and isinstance(value, str):
            out[name] = pascal(value)
        elif key in _ENUM_LIST_KEYS and isinstance(value, list):
            out[name] = [pascal(item) if isinstance(item, str) else item for item in value]
        elif key in _DURATION_KEYS and isinstance(value, str):
            out[name] = _iso_duration(value)
        else:
            out[name] = arm_spelling(value, key)
    return out


def _iso_duration(text: str) -> str:
    """A duration the job holds, in ISO-8601; as written when it is not one this service
    reads as a duration (a Service Bus time to live may be .NET's TimeSpan.MaxValue)."""
    try:
        return format_iso_duration(parse_duration(text))
    except ValueError:
        return text


def asm_spelling(document: Any, parent: str = "") -> Any:
    """A job's `properties` as Azure's job document, which the job codec reads."""
    if isinstance(document, list):
        return [asm_spelling(item, parent) for item in document]
    if not isinstance(document, dict) or parent in _USER_MAPS:
        return document
    out: dict[str, Any] = {}
    for key, value in document.items():
        if key == "authentication" and _not_specified(value):
            continue
        out[_RENAMED_IN.get((parent, key)) or key] = asm_spelling(value, key)
    return out


def _not_specified(authentication: Any) -> bool:
    kind = authentication.get("type") if isinstance(authentication, dict) else None
    return isinstance(kind, str) and kind.lower() == NOT_SPECIFIED


def resource(resource_id: str, kind: str, name: str, properties: Mapping[str, Any],
             **members: Any) -> dict[str, Any]:
    """Resource Manager's envelope: `id`, `type`, `name`, then `members` (such as
    `location` and `tags`) and `properties`."""
    return {"id": resource_id, "type": kind, "name": name, **members,
            "properties": dict(properties)}


def page(values: list[Any], next_link: str | None) -> dict[str, Any]:
    """One page of a list: `value` and the link to the next page, null on the last."""
    return {"value": values, "nextLink": next_link}
