"""Stored job documents read back into typed definitions: what the validator made, exactly."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from scheduler.api.schemas.jobs import parse_job
from scheduler.domain.jobs import (
    ActiveDirectoryAuthentication,
    AmqpAction,
    BasicAuthentication,
    CertificateAuthentication,
    HttpAction,
    RedisAction,
    Secret,
    ServiceBusAction,
    StorageQueueAction,
)
from scheduler.domain.retry import RetryPolicy
from scheduler.security import pki
from scheduler.services.definitions import read_definition, read_schedule, with_secrets

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RECURRENCES: list[dict[str, Any]] = [
    {"frequency": "minute", "interval": 5},
    {"frequency": "week", "interval": 2, "timeZone": "Europe/Paris", "count": 10,
     "schedule": {"weekDays": ["monday", "wednesday"], "hours": [9, 17], "minutes": [30]}},
    {"frequency": "month", "endTime": "2030-01-01T00:00:00+01:00",
     "schedule": {"monthlyOccurrences": [{"day": "friday", "Occurrence": -2}],
                  "monthDays": [-1, 15]}},
    {"frequency": "year", "schedule": {"months": [1, 6]}},
]


def stored(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the engine reads it: validated, stored, its secrets put back."""
    spec = parse_job(document, now=NOW)
    return with_secrets(spec.definition, spec.secrets)


@pytest.mark.parametrize("recurrence", RECURRENCES)
def test_a_stored_schedule_reads_back_as_the_validator_made_it(
    recurrence: dict[str, Any],
) -> None:
    document = {"startTime": "2026-03-02T08:15:00+01:00", "recurrence": recurrence,
                "action": {"type": "http", "request": {"uri": "http://example.com",
                                                       "method": "GET"}}}
    spec = parse_job(document, now=NOW)
    assert read_schedule(spec.definition) == (spec.start_time, spec.recurrence)
    definition = read_definition(stored(document))
    assert (definition.start, definition.recurrence) == (spec.start_time, spec.recurrence)


def test_actions_read_back_typed_with_their_secrets_and_retry_policies() -> None:
    document = {
        "startTime": "2026-03-02T00:00:00Z", "parameters": {"who": "world", "n": 3},
        "action": {"type": "https", "request": {
            "uri": "https://example.com/{{parameters.who}}", "method": "POST",
            "headers": {"X-A": "1"}, "body": "hi",
            "authentication": {"type": "Basic", "username": "u", "password": "p"}},
            "retryPolicy": {"retryType": "exponential", "retryInterval": "PT10S",
                            "retryCount": 3, "maxRetryInterval": "PT1M"},
            "errorAction": {"type": "http", "request": {
                "uri": "http://example.com/error", "method": "PUT",
                "authentication": {"type": "ActiveDirectoryOAuth", "tenant": "t",
                                   "audience": "a", "clientId": "c", "secret": "s"}},
                "retryPolicy": {"retryType": "none"}}},
    }
    definition = read_definition(stored(document))
    assert definition.parameters == {"who": "world", "n": 3}
    assert definition.action == HttpAction(
        "https", "POST", "https://example.com/{{parameters.who}}", {"X-A": "1"}, "hi",
        BasicAuthentication("u", Secret("p")),
        RetryPolicy.from_fields("exponential", "PT10S", 3, "PT1M"))
    assert definition.error_action == HttpAction(
        "http", "PUT", "http://example.com/error", {}, None,
        ActiveDirectoryAuthentication("t", "a", "c", Secret("s")), RetryPolicy.from_fields(
            "none", None, None, None))
    assert definition.action_named("MainAction") is definition.action
    assert definition.action_named("ErrorAction") is definition.error_action


def test_a_client_certificate_and_a_queue_action_read_back() -> None:
    issued = pki.issue_client_certificate(None, "job", NOW)
    pfx = base64.b64encode(pkcs12.serialize_key_and_certificates(
        b"job", issued.key, issued.certificate, None,
        BestAvailableEncryption(b"pw"))).decode()
    document = {"action": {"type": "http", "request": {
        "uri": "https://example.com", "method": "GET",
        "authentication": {"type": "ClientCertificate", "pfx": pfx, "password": "pw"}},
        "errorAction": {"type": "storageQueue", "queueMessage": {
            "storageAccount": "acct", "queueName": "jobs", "sasToken": "sv=1&sig=x",
            "message": "failed"}}}}
    definition = read_definition(stored(document))
    assert isinstance(definition.action, HttpAction)
    assert definition.action.authentication == CertificateAuthentication(Secret(pfx),
                                                                         Secret("pw"))
    assert "pw" not in repr(definition.action.authentication)
    assert definition.error_action == StorageQueueAction(
        "acct", "jobs", Secret("sv=1&sig=x"), "failed", RetryPolicy())


def test_queue_and_broker_actions_read_back_typed_with_their_secrets() -> None:
    bus = {"type": "serviceBusTopic", "serviceBusTopicMessage": {
        "namespace": "my-namespace", "topicPath": "orders/new", "transportType": "AMQP",
        "authentication": {"sasKeyName": "send", "sasKey": "k3y", "type": "SharedAccessKey"},
        "message": "hello", "brokeredMessageProperties": {
            "contentType": "application/json", "label": "L", "messageId": None},
        "customMessageProperties": {"Source": "jobs"}}}
    definition = read_definition(stored({"action": bus}))
    assert definition.action == ServiceBusAction(
        "serviceBusTopic", "my-namespace", "orders/new", "hello", "send", Secret("k3y"),
        RetryPolicy(), "AMQP", "application/json", {"Label": "L", "MessageId": None},
        {"Source": "jobs"})
    assert "k3y" not in repr(definition.action)
    amqp = {"type": "amqp", "amqpMessage": {"broker": "rabbit", "routingKey": "k",
                                            "message": "m", "headers": {"A": "1"}}}
    brokers = {"rabbit": "amqp", "cache": "redis"}
    spec = parse_job({"action": amqp}, now=NOW, brokers=brokers)
    assert read_definition(with_secrets(spec.definition, spec.secrets)).action == AmqpAction(
        "rabbit", "", "k", "m", RetryPolicy(), {"A": "1"})
    redis = {"type": "redis", "redisMessage": {"broker": "cache", "stream": "s",
                                               "message": "m"}}
    spec = parse_job({"action": redis}, now=NOW, brokers=brokers)
    assert read_definition(spec.definition).action == RedisAction(
        "cache", "s", "m", RetryPolicy())
