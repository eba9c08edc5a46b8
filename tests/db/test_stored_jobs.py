"""The stored form of a job: every typed definition reads back as it was written, its secrets
kept apart under the names of their fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.api.schemas.jobs import parse_job
from scheduler.db.stored_jobs import StoredJobError, dump_definition, load_definition
from scheduler.domain.durations import Duration
from scheduler.domain.jobs import (
    ActiveDirectoryAuthentication,
    AmqpAction,
    BasicAuthentication,
    CertificateAuthentication,
    HttpAction,
    JobDefinition,
    RedisAction,
    Secret,
    Sequence,
    ServiceBusAction,
    Step,
    StorageQueueAction,
)
from scheduler.domain.recurrence import MonthlyOccurrence, Recurrence, Schedule
from scheduler.domain.retry import RetryPolicy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

texts = st.text(max_size=12)
secrets = st.builds(Secret, st.text(min_size=1, max_size=12))
durations = st.builds(Duration, st.timedeltas(min_value=timedelta(0),
                                               max_value=timedelta(days=30)), texts)
instants = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9000, 1, 1),
                        timezones=st.just(UTC))
scalars = st.none() | st.booleans() | st.integers(-2**31, 2**31) | texts | \
    st.floats(allow_nan=False, allow_infinity=False)
headers = st.dictionaries(texts, texts, max_size=3)
retries = st.none() | st.builds(
    RetryPolicy, st.sampled_from(["none", "fixed", "exponential"]), st.none() | durations,
    st.none() | st.integers(0, 20), st.none() | durations)
schedules = st.builds(
    Schedule, st.lists(st.integers(0, 59), max_size=3).map(tuple),
    st.lists(st.integers(0, 23), max_size=3).map(tuple),
    st.lists(st.sampled_from(["monday", "friday"]), max_size=2).map(tuple),
    st.lists(st.integers(-31, 31), max_size=3).map(tuple),
    st.lists(st.builds(MonthlyOccurrence, st.sampled_from(["sunday", "tuesday"]),
                       st.integers(-5, 5)), max_size=2).map(tuple),
    st.lists(st.integers(1, 12), max_size=3).map(tuple))
recurrences = st.builds(
    Recurrence, st.sampled_from(["minute", "hour", "day", "week", "month"]),
    st.integers(1, 1000), st.none() | st.integers(1, 1000), st.none() | instants, schedules,
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
    st.frozensets(st.sampled_from(["interval", "time_zone"])))
authentications = st.none() | st.builds(BasicAuthentication, texts, secrets) | \
    st.builds(CertificateAuthentication, secrets, st.none() | secrets, texts, texts,
              st.none() | instants) | \
    st.builds(ActiveDirectoryAuthentication, texts, texts, texts, secrets)
single_actions = st.one_of(
    st.builds(HttpAction, st.sampled_from(["http", "https"]), st.sampled_from(["GET", "PUT"]),
              texts, headers, st.none() | texts, authentications, retries),
    st.builds(StorageQueueAction, texts, texts, secrets, texts, retries),
    st.builds(ServiceBusAction, st.sampled_from(["serviceBusQueue", "serviceBusTopic"]),
              texts, texts, texts, texts, secrets, retries, st.none() | texts, scalars,
              st.dictionaries(st.sampled_from(["MessageId", "Label", "TimeToLive"]), scalars),
              headers),
    st.builds(AmqpAction, texts, texts, texts, texts, retries, headers),
    st.builds(RedisAction, texts, texts, texts, retries),
)
flags = st.none() | st.booleans()
steps = st.builds(Step, texts, single_actions, retries, st.none() | durations, flags, flags)
sequences = st.builds(Sequence, st.just("sequence"),
                      st.lists(steps, min_size=1, max_size=3).map(tuple), retries)
definitions = st.builds(
    JobDefinition, st.none() | instants, st.none() | recurrences,
    st.dictionaries(texts, scalars, max_size=3), single_actions | sequences,
    st.none() | single_actions)


@given(definitions)
def test_every_typed_definition_reads_back_as_it_was_stored(definition: JobDefinition) -> None:
    text, sealed = dump_definition(definition)
    assert json.loads(text)["v"] == 1
    assert load_definition(text, sealed) == definition


def test_secrets_are_kept_apart_under_the_names_of_their_fields() -> None:
    action = Sequence("sequence", (
        Step("put", StorageQueueAction("acct", "jobs", Secret("sv=1&sig=TOKEN"), "m",
                                       RetryPolicy()), RetryPolicy()),
        Step("call", HttpAction("https", "GET", "https://example.com", {}, None,
                                BasicAuthentication("u", Secret("PASSWORD")), RetryPolicy()),
             RetryPolicy())), RetryPolicy())
    text, sealed = dump_definition(JobDefinition(None, None, {}, action, None))
    assert sealed == {"action.steps.0.action.sas_token": "sv=1&sig=TOKEN",
                      "action.steps.1.action.authentication.password": "PASSWORD"}
    assert "TOKEN" not in text and "PASSWORD" not in text
    with pytest.raises(StoredJobError, match="sas_token is not among"):
        load_definition(text, {})


def test_a_validated_job_is_stored_in_snake_case_and_reads_back() -> None:
    document: dict[str, Any] = {
        "startTime": "2026-03-02T08:15:00+01:00",
        "recurrence": {"frequency": "week", "timeZone": "Europe/Paris",
                       "schedule": {"weekDays": ["monday"], "hours": [9]}},
        "action": {"type": "serviceBusQueue", "serviceBusQueueMessage": {
            "namespace": "my-namespace", "queueName": "orders", "message": "m",
            "authentication": {"sasKeyName": "send", "sasKey": "KEY"},
            "brokeredMessageProperties": {"contentType": "text/json", "timeToLive": 5}},
            "retryPolicy": {"retryType": "fixed", "retryInterval": "00:01:00"}}}
    spec = parse_job(document, now=NOW)
    definition = spec.job
    text, sealed = dump_definition(definition)
    assert sealed == {"action.sas_key": "KEY"}
    stored = json.loads(text)
    assert stored["action"]["sas_key_name"] == "send"
    assert stored["recurrence"]["schedule"]["week_days"] == ["monday"]
    assert load_definition(text, sealed) == definition


def test_a_document_of_another_version_is_refused() -> None:
    with pytest.raises(StoredJobError, match="version 1"):
        load_definition('{"v": 2}', {})
