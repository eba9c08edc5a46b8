"""Every field of the typed job is carried by each of its forms, and described.

A field added to the domain's job (`scheduler/domain/jobs.py`, `recurrence.py`, `retry.py`)
must be set by one of the documents below, or the first test fails; a document that sets it
must read into the typed job and back (Azure's JSON codec, `api/schemas`), be stored and read
back (the stored form, `db/stored_jobs.py`), and name only members `openapi.yaml` describes.
So adding a field is one place in the domain, one in each wire codec and one in
`openapi.yaml`, and this test says which is missing.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from scheduler.api.arm.documents import arm_spelling, asm_spelling
from scheduler.api.schemas.job_codec import encode
from scheduler.api.schemas.jobs import parse_job
from scheduler.db.stored_jobs import dump_definition, load_definition
from scheduler.domain.jobs import (
    AmqpAction,
    HttpAction,
    JobDefinition,
    RedisAction,
    Sequence,
    ServiceBusAction,
    StorageQueueAction,
)
from scheduler.security import pki

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BROKERS = {"rabbit": "amqp", "cache": "redis"}
OPENAPI = yaml.safe_load((Path(__file__).parents[2] / "openapi.yaml").read_text())
# The action types of this version (a test may register more for a while).
ACTIONS = (HttpAction, StorageQueueAction, ServiceBusAction, AmqpAction, RedisAction, Sequence)
RETRY = {"retryType": "exponential", "retryInterval": "PT30S", "retryCount": 3,
         "maxRetryInterval": "PT5M"}


def certificate_pfx() -> str:
    """A base64 PKCS#12 file with a password."""
    now = NOW
    issued = pki.issue_client_certificate(pki.create_ca("ca", now), "job", now)
    return base64.b64encode(pkcs12.serialize_key_and_certificates(
        b"job", issued.key, issued.certificate, None, BestAvailableEncryption(b"pw"))).decode()


def documents() -> list[dict[str, Any]]:
    """Jobs that, together, give every field of the typed job a value other than its
    default."""
    http = {"uri": "https://example.com/a", "method": "POST", "headers": {"X-A": "1"},
            "body": "b", "timeout": "PT5M",
            "authentication": {"type": "Basic", "username": "u", "password": "secret-password"}}
    bus = {"namespace": "shop-bus", "queueName": "orders", "message": "m",
           "transportType": "AMQP",
           "authentication": {"sasKeyName": "send", "sasKey": "secret-key",
                              "type": "SharedAccessKey"},
           "brokeredMessageProperties": {"contentType": "text/plain", "label": "L"},
           "customMessageProperties": {"Region": "eu"}, "timeout": "PT2M"}
    return [
        {"startTime": "2026-03-02T08:15:00Z", "parameters": {"who": "x"},
         "catchUp": {"policy": "all", "window": "PT6H", "maxRuns": 20},
         "concurrencyPolicy": "bufferOne",
         "runOn": ["rack-1", "Rack_2.east"],
         "alerts": {"on": ["failed", "late", "durationOver", "recovered"],
                    "channels": ["ops", "pager"], "afterConsecutive": 3, "lateBy": "PT5M",
                    "durationOver": "PT1H", "realert": "PT6H"},
         "action": {"type": "https", "request": http, "retryPolicy": RETRY,
                    "completion": {"mode": "callback", "timeout": "PT2H"},
                    "errorAction": {"type": "storageQueue", "queueMessage": {
                        "storageAccount": "acct1", "queueName": "jobs", "sasToken": "sv=secret",
                        "message": "failed", "timeout": "PT20S"},
                        "retryPolicy": {"retryType": "none"}}},
         "recurrence": {"frequency": "month", "interval": 2, "count": 5,
                        "endTime": "2030-01-01T00:00:00Z", "timeZone": "Europe/Paris",
                        "schedule": {"minutes": [0], "hours": [9],
                                     "monthlyOccurrences": [{"day": "friday",
                                                             "occurrence": -1}]}}},
        {"action": {"type": "http", "request": {"uri": "http://example.com", "method": "GET"}},
         "recurrence": {"frequency": "week", "schedule": {"weekDays": ["monday"]}}},
        {"action": {"type": "http", "request": {"uri": "http://example.com", "method": "GET"}},
         "recurrence": {"frequency": "month", "schedule": {"monthDays": [1]}}},
        {"action": {"type": "http", "request": {"uri": "http://example.com", "method": "GET"}},
         "recurrence": {"frequency": "year", "schedule": {"months": [1]}}},
        {"action": {"type": "http", "request": {"uri": "http://example.com", "method": "GET"}},
         "recurrence": {"cron": "0 9 * * MON-FRI", "timeZone": "Europe/Berlin",
                        "jitter": "PT5M", "excludeCalendars": ["holidays"]}},
        {"action": {"type": "https", "request": {
            "uri": "https://example.com", "method": "GET", "authentication": {
                "type": "ClientCertificate", "pfx": certificate_pfx(), "password": "pw"}}}},
        {"action": {"type": "http", "request": {
            "uri": "http://example.com", "method": "GET", "authentication": {
                "type": "ActiveDirectoryOAuth", "tenant": "t", "audience": "a",
                "clientId": "c", "secret": "secret-oauth"}}}},
        {"action": {"type": "http", "request": {
            "uri": "http://example.com", "method": "POST", "authentication": {
                "type": "Signature", "secret": "whsec_" + "c2VjcmV0" * 4,
                "previousSecret": "whsec_" + "b2xkb2xk" * 4}}}},
        {"action": {"type": "sequence", "retryPolicy": RETRY, "steps": [
            {"name": "bus", "action": {"type": "serviceBusQueue",
                                       "serviceBusQueueMessage": bus, "retryPolicy": RETRY},
             "retryPolicy": RETRY, "timeout": "PT10S", "pauseOnFailure": True,
             "manual": True},
            {"name": "amqp", "action": {"type": "amqp", "amqpMessage": {
                "broker": "rabbit", "exchange": "x", "routingKey": "k", "message": "m",
                "headers": {"A": "1"}, "timeout": "PT30S"}, "retryPolicy": RETRY}},
            {"name": "redis", "action": {"type": "redis", "redisMessage": {
                "broker": "cache", "stream": "s", "message": "m", "timeout": "PT1S"},
                "retryPolicy": RETRY}},
        ]}},
    ]


# --- the fields of the typed job -------------------------------------------------------------

def dataclass_fields(cls: type, seen: set[type] | None = None) -> Iterator[tuple[type, str]]:
    """Every (class, field) reachable from `cls` through its type hints."""
    seen = set() if seen is None else seen
    if cls in seen:
        return
    seen.add(cls)
    hints = get_type_hints(cls)
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        yield cls, item.name
        for inner in classes_in(hints[item.name]):
            yield from dataclass_fields(inner, seen)


def classes_in(hint: Any) -> Iterator[type]:
    """The dataclasses a type hint names (an action's union: every action type)."""
    if get_origin(hint) in (Union, types.UnionType) and any(
            arg in ACTIONS for arg in get_args(hint)):
        yield from ACTIONS
        return
    if dataclasses.is_dataclass(hint):
        yield hint  # type: ignore[misc]
    for arg in get_args(hint):
        yield from classes_in(arg)


def set_fields(value: Any) -> Iterator[tuple[type, str]]:
    """The (class, field) pairs a typed value gives a value other than the default."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from set_fields(item)
        return
    if not dataclasses.is_dataclass(value):
        return
    for item in dataclasses.fields(value):
        given = getattr(value, item.name)
        default = (item.default if item.default is not dataclasses.MISSING else
                   item.default_factory() if item.default_factory is not dataclasses.MISSING
                   else None)
        if given != default and given not in ((), {}, ""):
            yield type(value), item.name
        yield from set_fields(given)


def typed(document: dict[str, Any]) -> JobDefinition:
    return parse_job(document, now=NOW, brokers=BROKERS).job


def test_the_documents_give_every_field_of_the_typed_job_a_value() -> None:
    wanted = set(dataclass_fields(JobDefinition))
    given = {pair for document in documents() for pair in set_fields(typed(document))}
    missing = sorted(f"{cls.__name__}.{name}" for cls, name in wanted - given)
    assert missing == [], ("fields no document sets: give them in `documents()`, through "
                           "Azure's JSON codec (api/schemas) and openapi.yaml")


@pytest.mark.parametrize("index", range(len(documents())))
def test_each_form_carries_every_field(index: int) -> None:
    job = typed(documents()[index])
    again = parse_job(encode(job, secrets=True), now=NOW, brokers=BROKERS).job
    assert again == job, "Azure's JSON codec drops or changes a field"
    arm = arm_spelling(encode(job, secrets=True))
    again = parse_job(asm_spelling(arm), now=NOW, brokers=BROKERS).job
    assert again == job, "Resource Manager's spelling drops or changes a field"
    text, secrets = dump_definition(job)
    assert load_definition(text, secrets) == job, "the stored form drops or changes a field"
    assert not any(value in text for value in secrets.values())


# --- openapi.yaml ------------------------------------------------------------------------------

def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its `$ref` followed."""
    while "$ref" in schema:
        schema = OPENAPI["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def undescribed(document: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """The members of a document its schema does not describe, by their paths."""
    schema = resolve(schema)
    if "oneOf" in schema:
        branches = [resolve(branch) for branch in schema["oneOf"]]
        fitting = [branch for branch in branches if fits(document, branch)]
        assert fitting, f"{path}: no branch of the schema is for this document"
        yield from undescribed(document, fitting[0], path)
        return
    if isinstance(document, dict) and "properties" in schema:
        for key, value in document.items():
            if key not in schema["properties"]:
                yield f"{path}.{key}"
            else:
                yield from undescribed(value, schema["properties"][key], f"{path}.{key}")
    elif isinstance(document, list) and "items" in schema:
        for index, item in enumerate(document):
            yield from undescribed(item, schema["items"], f"{path}.{index}")


def fits(document: Any, branch: dict[str, Any]) -> bool:
    """Whether a branch of a `oneOf` is the one for this document: by its `type`."""
    kind = (branch.get("properties") or {}).get("type") or {}
    if not isinstance(document, dict) or not kind:
        return isinstance(document, dict) and set(document) <= set(branch.get("properties", {}))
    allowed = [kind["const"]] if "const" in kind else kind.get("enum", [])
    return document.get("type") in allowed


@pytest.mark.parametrize("index", range(len(documents())))
def test_openapi_describes_every_member_a_job_is_written_and_read_with(index: int) -> None:
    job = typed(documents()[index])
    written = encode(job, secrets=True)
    assert list(undescribed(written, {"$ref": "#/components/schemas/JobDocument"}, "")) == []
    read = {"id": "j", **encode(job), "state": "enabled", "status": {}}
    assert list(undescribed(read, {"$ref": "#/components/schemas/Job"}, "")) == []


def test_the_openapi_check_finds_a_member_it_does_not_describe() -> None:
    written = encode(typed(documents()[0]), secrets=True)
    written["action"]["request"]["timeoutx"] = "PT1S"
    written["recurrence"]["spread"] = "PT1M"
    found = list(undescribed(json.loads(json.dumps(written)),
                             {"$ref": "#/components/schemas/JobDocument"}, ""))
    assert found == [".action.request.timeoutx", ".recurrence.spread"]
