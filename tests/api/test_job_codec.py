"""Azure's job document read into the typed job and written back: a GET says back what a
PUT gave, key for key and in order, through the typed job and its stored form."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from scheduler.api.schemas.job_codec import encode
from scheduler.api.schemas.jobs import parse_job
from scheduler.db.stored_jobs import dump_definition, load_definition, public_definition

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BROKERS = {"rabbit": "amqp", "cache": "redis"}
HTTP = {"type": "https", "request": {"uri": "https://example.com/a", "method": "POST",
                                     "headers": {"X-A": "1"}, "body": "b",
                                     "authentication": {"type": "Basic", "username": "u",
                                                        "password": "PASSWORD"}}}
# Each in the service's normal form (its times in UTC, its keys in the order a GET gives
# them, defaults the service writes out written out), secrets included.
DOCUMENTS: list[dict[str, Any]] = [
    {"startTime": "2026-03-02T07:15:00Z",
     "action": {**HTTP, "retryPolicy": {"retryType": "exponential", "retryInterval": "00:00:30",
                                        "maxRetryInterval": "PT5M", "retryCount": 3}},
     "recurrence": {"frequency": "week", "interval": 1, "timeZone": "UTC",
                    "schedule": {"minutes": [0], "hours": [9], "weekDays": ["monday"]}},
     "parameters": {"name": "x"}},
    {"action": {"type": "storageQueue",
                "queueMessage": {"storageAccount": "acct1", "queueName": "jobs",
                                 "message": "hi", "sasToken": "sv=1&sig=x"},
                "retryPolicy": {"retryType": "none"},
                "errorAction": {"type": "http", "request": {"uri": "https://example.com",
                                                            "method": "GET"}}},
     "recurrence": {"frequency": "month", "count": 3, "endTime": "2027-01-01T00:00:00Z",
                    "schedule": {"monthlyOccurrences": [{"day": "friday", "occurrence": -1}]}}},
    {"action": {"type": "serviceBusTopic", "serviceBusTopicMessage": {
        "namespace": "my-namespace", "topicPath": "orders", "message": "m",
        "transportType": "AMQP",
        "authentication": {"sasKeyName": "send", "type": "SharedAccessKey", "sasKey": "KEY"},
        "brokeredMessageProperties": {"contentType": "text/json", "timeToLive": 5,
                                      "label": None},
        "customMessageProperties": {"Region": "eu"}}}},
    {"action": {"type": "sequence", "steps": [
        {"name": "first", "action": {"type": "amqp", "amqpMessage": {
            "broker": "rabbit", "exchange": "", "routingKey": "k", "message": "m",
            "headers": {"A": "1"}}},
         "retryPolicy": {"retryType": "fixed", "retryCount": 0}, "pauseOnFailure": False},
        {"name": "second",
         "action": {"type": "redis", "redisMessage": {"broker": "cache", "stream": "s",
                                                      "message": "m"}},
         "timeout": "PT10S", "manual": True},
    ], "retryPolicy": {"retryType": "fixed"}}},
]
SECRET_KEYS = {"password", "sasToken", "sasKey", "pfx", "secret"}


def _shown(document: Any) -> Any:
    """The document as a GET shows it: without its secrets."""
    if isinstance(document, dict):
        return {key: _shown(value) for key, value in document.items()
                if key not in SECRET_KEYS}
    if isinstance(document, list):
        return [_shown(item) for item in document]
    return document


@pytest.mark.parametrize("document", DOCUMENTS)
def test_a_job_reads_back_as_it_was_given_through_its_stored_form(document: dict[str, Any]
                                                                  ) -> None:
    spec = parse_job(document, now=NOW, brokers=BROKERS)
    text, secrets = dump_definition(spec.job)
    stored = load_definition(text, secrets)
    assert stored == spec.job
    assert json.dumps(encode(stored, secrets=True)) == json.dumps(document)
    assert json.dumps(encode(public_definition(text))) == json.dumps(_shown(document))


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_document_with_its_secrets_is_the_job_again(document: dict[str, Any]) -> None:
    spec = parse_job(document, now=NOW, brokers=BROKERS)
    again = parse_job(encode(spec.job, secrets=True), now=NOW, brokers=BROKERS)
    assert again.job == spec.job
