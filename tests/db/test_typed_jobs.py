"""Jobs as the API takes them, typed, stored and read back: what the validator made, exactly."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from scheduler.api.schemas.jobs import parse_job
from scheduler.db.stored_jobs import (
    dump_definition,
    load_definition,
    stored_schedule,
)
from scheduler.domain.jobs import (
    ActiveDirectoryAuthentication,
    AmqpAction,
    BasicAuthentication,
    CertificateAuthentication,
    HttpAction,
    JobDefinition,
    JobSpec,
    RedisAction,
    Secret,
    ServiceBusAction,
    StorageQueueAction,
)
from scheduler.domain.retry import RetryPolicy
from scheduler.security import pki

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


def stored(document: dict[str, Any]) -> JobDefinition:
    """The job as the engine reads it: validated, stored, read back with its secrets."""
    return stored_job(parse_job(document, now=NOW))


def stored_job(spec: JobSpec) -> JobDefinition:
    """A valid job's definition, stored and read back with its secrets."""
    text, secrets = dump_definition(spec.job)
    return load_definition(text, secrets)


@pytest.mark.parametrize("recurrence", RECURRENCES)
def test_a_stored_schedule_reads_back_as_the_validator_made_it(
    recurrence: dict[str, Any],
) -> None:
    document = {"startTime": "2026-03-02T08:15:00+01:00", "recurrence": recurrence,
                "action": {"type": "http", "request": {"uri": "http://example.com",
                                                       "method": "GET"}}}
    spec = parse_job(document, now=NOW)
    assert stored_schedule(dump_definition(spec.job)[0]) == (spec.start_time, spec.recurrence)
    definition = stored(document)
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
    definition = stored(document)
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
    definition = stored(document)
    assert isinstance(definition.action, HttpAction)
    auth = definition.action.authentication
    assert isinstance(auth, CertificateAuthentication)
    assert (auth.pfx, auth.password) == (Secret(pfx), Secret("pw"))
    assert auth.subject == "CN=job" and len(auth.thumbprint) == 40 and auth.expiration
    assert "pw" not in repr(definition.action.authentication)
    assert definition.error_action == StorageQueueAction(
        "acct", "jobs", Secret("sv=1&sig=x"), "failed", None)


def test_queue_and_broker_actions_read_back_typed_with_their_secrets() -> None:
    bus = {"type": "serviceBusTopic", "serviceBusTopicMessage": {
        "namespace": "my-namespace", "topicPath": "orders/new", "transportType": "AMQP",
        "authentication": {"sasKeyName": "send", "sasKey": "k3y", "type": "SharedAccessKey"},
        "message": "hello", "brokeredMessageProperties": {
            "contentType": "application/json", "label": "L", "messageId": None},
        "customMessageProperties": {"Source": "jobs"}}}
    definition = stored({"action": bus})
    assert definition.action == ServiceBusAction(
        "serviceBusTopic", "my-namespace", "orders/new", "hello", "send", Secret("k3y"),
        None, "AMQP", "application/json", {"Label": "L", "MessageId": None},
        {"Source": "jobs"})
    assert "k3y" not in repr(definition.action)
    amqp = {"type": "amqp", "amqpMessage": {"broker": "rabbit", "routingKey": "k",
                                            "message": "m", "headers": {"A": "1"}}}
    brokers = {"rabbit": "amqp", "cache": "redis"}
    spec = parse_job({"action": amqp}, now=NOW, brokers=brokers)
    assert stored_job(spec).action == AmqpAction(
        "rabbit", "", "k", "m", None, {"A": "1"})
    redis = {"type": "redis", "redisMessage": {"broker": "cache", "stream": "s",
                                               "message": "m"}}
    spec = parse_job({"action": redis}, now=NOW, brokers=brokers)
    assert stored_job(spec).action == RedisAction(
        "cache", "s", "m", None)
