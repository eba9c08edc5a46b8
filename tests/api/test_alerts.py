"""Alert rules over the API: a job's `alerts`, checked field by field with nothing stored
when one does not hold, and naming only the collection's channels; a collection's default
rules; the lists of alerts made, which start empty."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import JOBS, Tenant, http_job

COLLECTION = JOBS.rsplit("/", 1)[0]
DEFAULTS = f"{COLLECTION}/defaultAlerts"


@pytest.fixture
def channels(collection: Tenant) -> Tenant:
    """The collection with two webhook channels, `ops` and `Pager`."""
    for name in ("ops", "Pager"):
        response = collection.call("PUT", f"{COLLECTION}/notificationChannels/{name}", {
            "type": "webhook", "url": "https://hooks.example.com/scheduler"})
        assert response.status_code == 201, response.data
    return collection


def job_with(alerts: Any) -> dict[str, Any]:
    """A job every minute with these alert rules."""
    return http_job(recurrence={"frequency": "minute"}, alerts=alerts)


def error_of(response: Any) -> str:
    """The message of an error answer."""
    assert 400 <= response.status_code < 500, response.data
    return str(response.get_json()["error"]["message"])


def audit(tenant: Tenant) -> list[tuple[str, str | None]]:
    """The collection's audit, newest first, as (kind, detail)."""
    response = tenant.call("GET", f"{COLLECTION}/audit")
    return [(change["kind"], change.get("detail")) for change in response.get_json()["value"]]


def test_a_jobs_alert_rules_are_stored_and_answered_normalised(channels: Tenant) -> None:
    rules = {"on": ["recovered", "FAILED", "late", "durationOver"], "afterConsecutive": 3,
             "lateBy": "PT5M", "durationOver": "PT1H", "realert": "P1D",
             "channels": ["OPS", "pager"]}
    response = channels.call("PUT", f"{JOBS}/nightly", job_with(rules))
    assert response.status_code == 201, response.data
    answered = channels.call("GET", f"{JOBS}/nightly").get_json()["alerts"]
    assert answered == {"on": ["failed", "late", "recovered", "durationOver"],
                        "channels": ["OPS", "pager"], "afterConsecutive": 3,
                        "lateBy": "PT5M", "durationOver": "PT1H", "realert": "P1D"}


def test_a_merge_patch_of_null_takes_a_jobs_rules_away(channels: Tenant) -> None:
    assert channels.call("PUT", f"{JOBS}/j", job_with({"on": ["failed"], "channels": ["ops"]})
                         ).status_code == 201
    response = channels.call("PATCH", f"{JOBS}/j", {"alerts": None})
    assert response.status_code == 200, response.data
    assert "alerts" not in channels.call("GET", f"{JOBS}/j").get_json()


@pytest.mark.parametrize(("alerts", "field", "words"), [
    ("failed", "alerts", "must be a JSON object"),
    ({"channels": ["ops"]}, "alerts.on", "is required"),
    ({"on": ["exploded"], "channels": ["ops"]}, "alerts.on.0", "must be one of failed"),
    ({"on": ["failed", "Failed"], "channels": ["ops"]}, "alerts.on.1", "names failed again"),
    ({"on": ["failed"]}, "alerts.channels", "is required"),
    ({"on": ["failed"], "channels": []}, "alerts.channels", "at least one channel"),
    ({"on": ["failed"], "channels": ["ops", "OPS"]}, "alerts.channels.1", "names OPS again"),
    ({"on": ["failed"], "channels": ["no such"]}, "alerts.channels.0", "not a channel name"),
    ({"on": ["failed"], "channels": ["ops"], "afterConsecutive": 0},
     "alerts.afterConsecutive", "must be from 1 to 1000"),
    ({"on": ["failed"], "channels": ["ops"], "afterConsecutive": "3"},
     "alerts.afterConsecutive", "must be an integer"),
    ({"on": ["late"], "channels": ["ops"]}, "alerts.lateBy", "is required when"),
    ({"on": ["durationOver"], "channels": ["ops"]}, "alerts.durationOver", "is required"),
    ({"on": ["failed"], "channels": ["ops"], "realert": "PT0S"}, "alerts.realert",
     "must be longer than zero"),
    ({"on": ["failed"], "channels": ["ops"], "realert": "soon"}, "alerts.realert",
     "not an ISO-8601 duration"),
    ({"on": ["failed"], "channels": ["ops"], "email": "me@example.com"}, "alerts.email",
     "is not a known field"),
    ({"on": ["failed"], "channels": ["nobody"]}, "alerts.channels.0",
     "has no notification channel named nobody"),
])
def test_rules_that_do_not_hold_are_refused_naming_the_field_and_nothing_is_stored(
    channels: Tenant, alerts: Any, field: str, words: str,
) -> None:
    message = error_of(channels.call("PUT", f"{JOBS}/bad", job_with(alerts)))
    assert message.startswith(field + ":") and words in message, message
    assert channels.call("GET", f"{JOBS}/bad").status_code == 404


def test_a_job_with_no_events_needs_no_channel(channels: Tenant) -> None:
    assert channels.call("PUT", f"{JOBS}/quiet", job_with({"on": []})).status_code == 201
    assert channels.call("GET", f"{JOBS}/quiet").get_json()["alerts"] == {"on": [],
                                                                         "channels": []}


def test_a_collections_default_rules_are_set_read_and_deleted_and_audited(
    channels: Tenant,
) -> None:
    assert channels.call("GET", DEFAULTS).status_code == 404
    rules = {"on": ["failed", "missed"], "channels": ["ops"], "afterConsecutive": 2}
    response = channels.call("PUT", DEFAULTS, rules)
    assert response.status_code == 200, response.data
    assert response.get_json() == {"on": ["failed", "missed"], "channels": ["ops"],
                                   "afterConsecutive": 2}
    assert channels.call("GET", DEFAULTS.upper().replace("/CLOUDSERVICES/CS1/RESOURCES/"
                                                         "SCHEDULER/~/JOBCOLLECTIONS/JC1",
                                                         COLLECTION)).status_code == 200
    assert channels.call("DELETE", DEFAULTS).status_code == 204
    assert channels.call("GET", DEFAULTS).status_code == 404
    assert channels.call("DELETE", DEFAULTS).status_code == 404
    assert audit(channels)[:2] == [
        ("alerts.default", "default alert rules deleted"),
        ("alerts.default", "default alert rules: on failed, missed to ops, after 2 failures "
                           "in a row")]


@pytest.mark.parametrize(("rules", "words"), [
    ([], "must be a JSON object"),
    ({"on": ["failed"]}, "channels: is required"),
    ({"on": ["failed"], "channels": ["nobody"]},
     "channels.0: the job collection has no notification channel named nobody"),
    ({"on": ["late"], "channels": ["ops"]}, "lateBy: is required when on names late"),
])
def test_default_rules_that_do_not_hold_are_refused_and_nothing_is_stored(
    channels: Tenant, rules: Any, words: str,
) -> None:
    assert words in error_of(channels.call("PUT", DEFAULTS, rules))
    assert channels.call("GET", DEFAULTS).status_code == 404


def test_alert_lists_start_empty_and_name_what_does_not_exist(channels: Tenant) -> None:
    assert channels.call("PUT", f"{JOBS}/j", job_with({"on": ["failed"], "channels": ["ops"]})
                         ).status_code == 201
    assert channels.call("GET", f"{JOBS}/j/alerts").get_json() == {"value": []}
    assert channels.call("GET", f"{COLLECTION}/alerts").get_json() == {"value": []}
    assert "The job nobody does not exist" in error_of(
        channels.call("GET", f"{JOBS}/nobody/alerts"))
    assert channels.call("GET", "/cloudservices/cs1/resources/scheduler/~/jobcollections/"
                                "jc9/alerts").status_code == 404
    assert "$top" in error_of(channels.call("GET", f"{COLLECTION}/alerts?$top=0"))


def test_a_channel_named_in_alert_rules_is_not_deleted_until_they_change(
    channels: Tenant,
) -> None:
    assert channels.call("PUT", f"{JOBS}/j", job_with({"on": ["failed"], "channels": ["OPS"]})
                         ).status_code == 201
    assert channels.call("PUT", DEFAULTS, {"on": ["missed"], "channels": ["ops"]}
                         ).status_code == 200
    response = channels.call("DELETE", f"{COLLECTION}/notificationChannels/ops")
    assert response.status_code == 409
    assert error_of(response) == ("The notification channel ops is named in the alert rules "
                                  "of the collection's default, job j: change them first.")
    assert channels.call("DELETE", f"{COLLECTION}/notificationChannels/pager"
                         ).status_code == 204
    assert channels.call("DELETE", DEFAULTS).status_code == 204
    assert channels.call("PATCH", f"{JOBS}/j", {"alerts": {"on": []}}).status_code == 200
    assert channels.call("DELETE", f"{COLLECTION}/notificationChannels/ops"
                         ).status_code == 204
