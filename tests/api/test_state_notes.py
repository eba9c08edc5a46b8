"""Who last set a job's state, when and why: `stateNote` written with a state change,
`stateChangedBy` and `stateChangedAt` stamped by the service, through both APIs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from scheduler.clock import FrozenClock
from tests.engine.harness import NodeDriver, Receiver
from tests.support import JOBS, Tenant, http_job

ARM_JOBS = "/resourceGroups/cs1/providers/Microsoft.Scheduler/jobCollections/jc1/jobs"
# The tenant fixture's certificate is issued to the common name `first`.
ACTOR = "first"
AT_START = "2026-03-01T12:00:00Z"


def job(tenant: Tenant, job_id: str = "job1") -> dict[str, Any]:
    """A job as the ASM API's GET answers it."""
    response = tenant.call("GET", f"{JOBS}/{job_id}")
    assert response.status_code == 200, response.data
    document: dict[str, Any] = response.get_json()
    return document


def stamp(document: dict[str, Any]) -> tuple[Any, Any, Any]:
    """A job document's note, who set its state and when."""
    return (document.get("stateNote"), document.get("stateChangedBy"),
            document.get("stateChangedAt"))


def test_a_disable_with_a_note_says_who_when_and_why_and_survives_a_get(
        collection: Tenant) -> None:
    assert collection.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    assert stamp(job(collection)) == (None, None, None)
    response = collection.call("PATCH", f"{JOBS}/job1",
                               {"state": "disabled", "stateNote": "vendor outage"})
    assert response.status_code == 200, response.data
    assert stamp(response.get_json()) == ("vendor outage", ACTOR, AT_START)
    assert job(collection)["state"] == "disabled"
    assert stamp(job(collection)) == ("vendor outage", ACTOR, AT_START)


def test_a_later_patch_of_something_else_keeps_the_note_and_the_stamp(
        collection: Tenant, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled", stateNote="paused"))
    clock.advance(timedelta(hours=1))
    response = collection.call("PATCH", f"{JOBS}/job1", {"recurrence": {"frequency": "day"}})
    assert response.status_code == 200, response.data
    assert response.get_json()["recurrence"] == {"frequency": "day"}
    assert stamp(job(collection)) == ("paused", ACTOR, AT_START)
    put_again = collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled"))
    assert stamp(put_again.get_json()) == ("paused", ACTOR, AT_START)


def test_a_patch_of_the_note_alone_sets_it_and_stamps_the_time(
        collection: Tenant, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled"))
    clock.advance(timedelta(minutes=5))
    response = collection.call("PATCH", f"{JOBS}/job1", {"stateNote": "until Monday"})
    assert stamp(response.get_json()) == ("until Monday", ACTOR, "2026-03-01T12:05:00Z")
    assert response.get_json()["state"] == "disabled"
    cleared = collection.call("PATCH", f"{JOBS}/job1", {"stateNote": None})
    assert stamp(cleared.get_json()) == (None, ACTOR, "2026-03-01T12:05:00Z")


def test_a_state_change_without_a_note_clears_the_old_one(
        collection: Tenant, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(state="disabled", stateNote="outage"))
    clock.advance(timedelta(days=1))
    response = collection.call("PATCH", f"{JOBS}/job1", {"state": "enabled"})
    assert stamp(response.get_json()) == (None, ACTOR, "2026-03-02T12:00:00Z")


def test_a_job_created_enabled_without_a_note_has_no_stamp_and_one_created_disabled_has(
        collection: Tenant) -> None:
    enabled = collection.call("PUT", f"{JOBS}/on", http_job())
    assert stamp(enabled.get_json()) == (None, None, None)
    disabled = collection.call("POST", JOBS, http_job(state="disabled", stateNote="later"))
    assert disabled.status_code == 201, disabled.data
    assert stamp(disabled.get_json()) == ("later", ACTOR, AT_START)


def test_a_note_too_long_is_a_400_naming_it_and_nothing_is_stored(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    response = collection.call("PATCH", f"{JOBS}/job1",
                               {"state": "disabled", "stateNote": "x" * 1025})
    assert response.status_code == 400
    assert "stateNote" in response.get_json()["error"]["message"]
    assert job(collection)["state"] == "enabled"
    assert stamp(job(collection)) == (None, None, None)
    longest = collection.call("PATCH", f"{JOBS}/job1", {"stateNote": "x" * 1024})
    assert longest.status_code == 200
    not_text = collection.call("PUT", f"{JOBS}/job2", http_job(stateNote=7))
    assert not_text.status_code == 400
    assert collection.call("GET", f"{JOBS}/job2").status_code == 404


def test_who_and_when_are_read_only(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    for member, value in (("stateChangedBy", "mallory"), ("stateChangedAt", AT_START)):
        patched = collection.call("PATCH", f"{JOBS}/job1", {member: value})
        assert patched.status_code == 400
        assert patched.get_json()["error"]["message"].startswith(f"{member}: is read-only")
        put = collection.call("PUT", f"{JOBS}/job1", http_job(**{member: value}))
        assert put.status_code == 400
    assert stamp(job(collection)) == (None, None, None)


def test_disabling_every_job_stamps_those_it_changes_with_its_note(
        collection: Tenant, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/a", http_job())
    collection.call("PUT", f"{JOBS}/b", http_job(state="disabled", stateNote="older"))
    clock.advance(timedelta(minutes=1))
    response = collection.call("PATCH", JOBS, {"state": "disabled", "stateNote": "freeze"})
    assert response.status_code == 200, response.data
    by_id = {item["id"]: stamp(item) for item in response.get_json()}
    assert by_id == {"a": ("freeze", ACTOR, "2026-03-01T12:01:00Z"),
                     "b": ("older", ACTOR, AT_START)}
    too_long = collection.call("PATCH", JOBS, {"state": "enabled", "stateNote": "x" * 1025})
    assert too_long.status_code == 400
    assert job(collection, "a")["state"] == "disabled"


def test_resource_managers_properties_carry_the_note_and_the_stamp(collection: Tenant) -> None:
    created = collection.arm(
        "PUT", f"{ARM_JOBS}/job1",
        {"properties": {**http_job(), "state": "Disabled", "stateNote": "rollout"}})
    assert created.status_code == 201, created.data
    assert stamp(created.get_json()["properties"]) == ("rollout", ACTOR, AT_START)
    patched = collection.arm("PATCH", f"{ARM_JOBS}/job1",
                             {"properties": {"recurrence": {"frequency": "Hour"}}})
    assert stamp(patched.get_json()["properties"]) == ("rollout", ACTOR, AT_START)
    assert stamp(collection.arm("GET", f"{ARM_JOBS}/job1").get_json()["properties"]) == (
        "rollout", ACTOR, AT_START)
    assert stamp(job(collection)) == ("rollout", ACTOR, AT_START)


def test_resource_manager_refuses_a_long_note_and_the_read_only_members(
        collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    too_long = collection.arm("PATCH", f"{ARM_JOBS}/job1",
                              {"properties": {"state": "Disabled", "stateNote": "x" * 1025}})
    assert too_long.status_code == 400
    assert "properties.stateNote" in too_long.get_json()["error"]["message"]
    written = collection.arm("PATCH", f"{ARM_JOBS}/job1",
                             {"properties": {"stateChangedBy": "mallory"}})
    assert written.status_code == 400
    assert "properties.stateChangedBy" in written.get_json()["error"]["message"]
    assert job(collection)["state"] == "enabled"
    assert stamp(job(collection)) == (None, None, None)


def test_resource_managers_disable_of_a_collection_stamps_its_jobs(
        collection: Tenant, clock: FrozenClock) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    clock.advance(timedelta(minutes=2))
    collection_path = ARM_JOBS.rsplit("/", 1)[0]
    response = collection.arm("POST", f"{collection_path}/disable")
    assert response.status_code in (200, 202), response.data
    assert job(collection)["state"] == "disabled"
    assert stamp(job(collection)) == (None, ACTOR, "2026-03-01T12:02:00Z")


def test_the_engine_ending_a_job_leaves_who_set_its_state_as_it_was(
        collection: Tenant, clock: FrozenClock, driver: NodeDriver, receiver: Receiver
        ) -> None:
    collection.call("PUT", f"{JOBS}/once", receiver.job("/once", state="disabled"))
    enabled = collection.call("PATCH", f"{JOBS}/once",
                              {"state": "enabled", "stateNote": "ready"})
    assert stamp(enabled.get_json()) == ("ready", ACTOR, AT_START)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    ended = job(collection, "once")
    assert ended["state"] == "completed"
    assert stamp(ended) == ("ready", ACTOR, AT_START)
