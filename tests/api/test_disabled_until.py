"""A job disabled until a time (`disabledUntil`): written beside `state: disabled` through
both APIs, answered in the job document, refused with a 400 that names it when it does not
hold (and nothing stored), cleared by enabling the job or by a null in a patch."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from scheduler.cli import build_parser
from scheduler.client.commands import state_patch
from scheduler.client.render import jobs_table
from scheduler.clock import FrozenClock
from scheduler.db.models import Job
from scheduler.db.schema import upgrade_schema
from scheduler.db.session import Database
from scheduler.services.export_format import ClearSealer, HomeKeys, read_export, write_export
from scheduler.services.moving import load_home, read_home
from tests.support import JOBS, Tenant, http_job

ARM_JOBS = "/resourceGroups/cs1/providers/Microsoft.Scheduler/jobCollections/jc1/jobs"
# The fake clock starts at 2026-03-01T12:00:00Z; the tenant's certificate is `first`'s.
ACTOR = "first"
AT_START = "2026-03-01T12:00:00Z"
TOMORROW = "2026-03-02T12:00:00Z"


def job(tenant: Tenant, job_id: str = "job1") -> dict[str, Any]:
    """A job as the ASM API's GET answers it."""
    response = tenant.call("GET", f"{JOBS}/{job_id}")
    assert response.status_code == 200, response.data
    document: dict[str, Any] = response.get_json()
    return document


def refused(response: Any, field: str) -> str:
    """The message of a 400 that names `field` first."""
    assert response.status_code == 400, response.data
    message: str = response.get_json()["error"]["message"]
    assert message.startswith(f"{field}: "), message
    return message


def test_a_job_put_disabled_until_a_time_answers_it_and_keeps_it(collection: Tenant) -> None:
    response = collection.call("PUT", f"{JOBS}/job1", http_job(
        state="disabled", disabledUntil="2026-03-02T13:00:00+01:00", stateNote="holiday"))
    assert response.status_code == 201, response.data
    answered = response.get_json()
    assert answered["state"] == "disabled"
    assert answered["disabledUntil"] == TOMORROW  # in UTC, with a Z
    assert (answered["stateNote"], answered["stateChangedBy"],
            answered["stateChangedAt"]) == ("holiday", ACTOR, AT_START)
    assert job(collection)["disabledUntil"] == TOMORROW
    [listed] = collection.call("GET", JOBS).get_json()
    assert listed["disabledUntil"] == TOMORROW


def test_a_job_that_waits_for_no_time_answers_no_member(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/on", http_job())
    collection.call("PUT", f"{JOBS}/off", http_job(state="disabled"))
    assert "disabledUntil" not in job(collection, "on")
    assert "disabledUntil" not in job(collection, "off")


def test_a_post_makes_a_job_disabled_until_a_time(collection: Tenant) -> None:
    response = collection.call("POST", JOBS, http_job(state="disabled",
                                                      disabledUntil=TOMORROW))
    assert response.status_code == 201, response.data
    assert job(collection, response.get_json()["id"])["disabledUntil"] == TOMORROW


def test_a_patch_of_a_disabled_job_may_give_the_time_alone_and_a_null_clears_it(
        collection: Tenant, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled", stateNote="outage"))
    clock.advance(timedelta(minutes=5))
    response = collection.call("PATCH", f"{JOBS}/job1", {"disabledUntil": TOMORROW})
    assert response.status_code == 200, response.data
    patched = response.get_json()
    assert (patched["state"], patched["disabledUntil"]) == ("disabled", TOMORROW)
    # A new time is a change of the job's state: stamped anew, its note kept.
    assert (patched["stateNote"], patched["stateChangedAt"]) == ("outage",
                                                                 "2026-03-01T12:05:00Z")
    cleared = collection.call("PATCH", f"{JOBS}/job1", {"disabledUntil": None})
    assert cleared.status_code == 200, cleared.data
    assert cleared.get_json()["state"] == "disabled"
    assert "disabledUntil" not in job(collection)


def test_a_patch_of_something_else_keeps_the_time_and_a_put_without_it_drops_it(
        collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled", disabledUntil=TOMORROW))
    patched = collection.call("PATCH", f"{JOBS}/job1", {"recurrence": {"frequency": "day"}})
    assert patched.get_json()["disabledUntil"] == TOMORROW
    kept = collection.call("PATCH", f"{JOBS}/job1", {"state": "disabled"})
    assert kept.get_json()["disabledUntil"] == TOMORROW
    # A put is the whole job: what it leaves out, the job no longer has.
    put = collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled"))
    assert put.status_code == 200, put.data
    assert "disabledUntil" not in put.get_json()


@pytest.mark.parametrize("enable", [
    ("PATCH", f"{JOBS}/job1", {"state": "enabled"}),
    ("PUT", f"{JOBS}/job1", http_job()),
    ("PATCH", JOBS, {"state": "enabled"}),
])
def test_enabling_a_job_by_any_means_clears_its_time(
        collection: Tenant, enable: tuple[str, str, dict[str, Any]]) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled", disabledUntil=TOMORROW))
    response = collection.call(*enable)
    assert response.status_code == 200, response.data
    assert job(collection)["state"] == "enabled"
    assert "disabledUntil" not in job(collection)


def test_disabling_every_job_of_the_collection_leaves_none_waiting(
        collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled", disabledUntil=TOMORROW))
    response = collection.call("PATCH", JOBS, {"state": "disabled", "stateNote": "freeze"})
    assert response.status_code == 200, response.data
    [answered] = response.get_json()
    assert "disabledUntil" not in answered and answered["stateNote"] == "freeze"


BAD_TIMES = [
    ("2026-03-01T11:59:59Z", "must be in the future"),
    (AT_START, "must be in the future"),
    ("2027-03-01T12:00:01Z", "must be at most a year ahead"),
    ("next monday", "is not an ISO-8601 date-time"),
    (20260302, "must be a string"),
]


@pytest.mark.parametrize(("value", "says"), BAD_TIMES)
def test_a_time_that_does_not_hold_is_refused_naming_it_and_stores_nothing(
        collection: Tenant, value: Any, says: str) -> None:
    put = collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled",
                                                          disabledUntil=value))
    assert says in refused(put, "disabledUntil")
    assert collection.call("GET", f"{JOBS}/job1").status_code == 404
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled", stateNote="kept"))
    before = job(collection)
    patch = collection.call("PATCH", f"{JOBS}/job1", {"disabledUntil": value,
                                                      "stateNote": "new"})
    assert says in refused(patch, "disabledUntil")
    assert job(collection) == before


def test_a_year_ahead_to_the_second_is_the_latest_time(collection: Tenant) -> None:
    response = collection.call("PUT", f"{JOBS}/job1", http_job(
        state="disabled", disabledUntil="2027-03-01T12:00:00Z"))
    assert response.status_code == 201, response.data


@pytest.mark.parametrize("document", [
    http_job(state="enabled", disabledUntil=TOMORROW),
    http_job(disabledUntil=TOMORROW),  # enabled by default
])
def test_a_time_given_to_a_job_written_enabled_is_refused(
        collection: Tenant, document: dict[str, Any]) -> None:
    response = collection.call("PUT", f"{JOBS}/job1", document)
    assert "only a disabled job waits to be enabled" in refused(response, "disabledUntil")
    assert collection.call("GET", f"{JOBS}/job1").status_code == 404
    posted = collection.call("POST", JOBS, document)
    refused(posted, "disabledUntil")
    assert collection.call("GET", JOBS).get_json() == []


def test_a_patch_that_gives_a_time_to_an_enabled_job_is_refused(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    before = job(collection)
    alone = collection.call("PATCH", f"{JOBS}/job1", {"disabledUntil": TOMORROW})
    refused(alone, "disabledUntil")
    enabling = collection.call("PATCH", f"{JOBS}/job1",
                               {"state": "enabled", "disabledUntil": TOMORROW})
    refused(enabling, "disabledUntil")
    assert job(collection) == before
    # A null asks for no time: an enabled job has none to clear.
    nothing = collection.call("PATCH", f"{JOBS}/job1", {"disabledUntil": None})
    assert nothing.status_code == 200, nothing.data


def test_a_job_that_cannot_run_on_its_own_parameters_cannot_wait_to_be_enabled(
        collection: Tenant) -> None:
    templated = http_job(state="disabled", disabledUntil=TOMORROW)
    templated["action"]["request"]["body"] = "hello {{parameters.who}}"
    response = collection.call("PUT", f"{JOBS}/job1", templated)
    message = refused(response, "disabledUntil")
    assert "the job is enabled then" in message and "who" in message
    assert collection.call("GET", f"{JOBS}/job1").status_code == 404
    templated["parameters"] = {"who": "world"}
    assert collection.call("PUT", f"{JOBS}/job1", templated).status_code == 201


def test_the_audit_says_until_when(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    collection.call("PATCH", f"{JOBS}/job1", {"state": "disabled", "disabledUntil": TOMORROW})
    collection.call("PATCH", f"{JOBS}/job1", {"disabledUntil": None})
    changes = collection.call("GET", f"{JOBS}/job1/audit")
    assert changes.status_code == 200, changes.data
    cleared, paused = [change["detail"] for change in changes.get_json()["value"][:2]]
    assert paused == f"state: enabled → disabled; disabled until: none → {TOMORROW}"
    assert cleared == f"disabled until: {TOMORROW} → none"


def test_resource_manager_writes_and_answers_the_time_under_properties(
        collection: Tenant) -> None:
    body = {"properties": {**http_job(state="Disabled"), "disabledUntil": TOMORROW}}
    created = collection.arm("PUT", f"{ARM_JOBS}/job1", body)
    assert created.status_code in (200, 201), created.data
    assert created.get_json()["properties"]["disabledUntil"] == TOMORROW
    later = "2026-03-03T12:00:00Z"
    patched = collection.arm("PATCH", f"{ARM_JOBS}/job1",
                             {"properties": {"disabledUntil": later}})
    assert patched.status_code == 200, patched.data
    assert collection.arm("GET", f"{ARM_JOBS}/job1").get_json()["properties"][
        "disabledUntil"] == later
    enabled = {"properties": {**http_job(state="Enabled"), "disabledUntil": TOMORROW}}
    refused(collection.arm("PUT", f"{ARM_JOBS}/job1", enabled), "properties.disabledUntil")
    past = {"properties": {"disabledUntil": "2026-01-01T00:00:00Z"}}
    refused(collection.arm("PATCH", f"{ARM_JOBS}/job1", past), "properties.disabledUntil")
    assert job(collection)["disabledUntil"] == later


def test_the_time_moves_with_the_home(collection: Tenant, app: Flask, db: Database,
                                      clock: FrozenClock, tmp_path: Path) -> None:
    collection.call("PUT", f"{JOBS}/paused", http_job(state="disabled", disabledUntil=TOMORROW))
    collection.call("PUT", f"{JOBS}/plain", http_job(state="disabled"))
    box = app.extensions["scheduler"].box
    keys = HomeKeys(b"ca", b"ca-key", b"server", b"server-key")
    text = write_export(read_home(db, box, keys, None, None, clock.now(), False), ClearSealer())
    [subscription] = [moved for moved in json.loads(text)["subscriptions"]
                      if moved["id"] == collection.subscription_id]
    jobs = {moved["id"]: moved for moved in
            subscription["cloud_services"][0]["collections"][0]["jobs"]}
    assert jobs["paused"]["disabled_until"] == "2026-03-02T12:00:00+00:00"
    assert "disabled_until" not in jobs["plain"]
    target = Database(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        upgrade_schema(target)
        load_home(target, box, read_export(text, None), clock.now(), None)
        with target.snapshot() as session:
            moved = {job.job_id: job.disabled_until for job in session.scalars(select(Job))}
    finally:
        target.dispose()
    assert moved == {"paused": clock.now() + timedelta(days=1), "plain": None}


@pytest.mark.parametrize(("argv", "patch"), [
    (["disable", "j1", "--until", TOMORROW, "--note", "window"],
     {"state": "disabled", "disabledUntil": TOMORROW, "stateNote": "window"}),
    (["disable", "j1"], {"state": "disabled", "disabledUntil": None}),
    (["enable", "j1", "--note", ""], {"state": "enabled", "stateNote": ""}),
])
def test_the_command_line_sends_the_time_a_disable_gives_and_none_otherwise(
        collection: Tenant, argv: list[str], patch: dict[str, Any]) -> None:
    args = build_parser().parse_args(["jobs", *argv])
    assert state_patch(argv[0] + "d", args) == patch
    collection.call("PUT", f"{JOBS}/j1", http_job(state="disabled", disabledUntil=TOMORROW))
    answered = collection.call("PATCH", f"{JOBS}/j1", patch)
    assert answered.status_code == 200, answered.data
    shown = jobs_table([answered.get_json()]).splitlines()[1]
    waits = f"disabled until {TOMORROW}" if "--until" in argv else None
    assert (waits in shown) if waits else "until" not in shown
