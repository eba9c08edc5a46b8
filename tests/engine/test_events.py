"""An execution's events: what the engine and the API record as it happens, in the
transaction of the change, read back oldest first through the API; bounded per execution and
deleted with it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from scheduler.clock import FrozenClock
from scheduler.db.executions import event_row, insert_events
from scheduler.db.models import Execution, ExecutionEvent
from scheduler.db.session import Database
from scheduler.domain.executions import MAX_EVENTS, EventKind
from scheduler.security import pki
from scheduler.services.audit import Target, read_changes
from tests.engine.harness import Answer, MakeDriver, NodeDriver, Received, Receiver
from tests.support import JOBS, Tenant

EXECUTIONS = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"


def events(collection: Tenant, execution_id: str) -> list[dict[str, Any]]:
    """The execution's events as the API answers them."""
    response = collection.call("GET", f"{EXECUTIONS}/{execution_id}/events")
    assert response.status_code == 200, response.data
    found: list[dict[str, Any]] = response.get_json()["value"]
    return found


def timeline(collection: Tenant, execution_id: str) -> list[tuple[str, str | None, int | None]]:
    """Each event's kind, node and attempt, oldest first."""
    return [(event["kind"], event["node"], event["attempt"])
            for event in events(collection, execution_id)]


def only_execution(db: Database) -> str:
    """The id of the one execution stored."""
    with db.snapshot() as session:
        [execution_id] = session.scalars(select(Execution.id))
    return execution_id


def count_events(db: Database) -> int:
    """How many events are stored, of every execution."""
    with db.snapshot() as session:
        return int(session.scalar(select(func.count()).select_from(ExecutionEvent)) or 0)


def actor_of(tenant: Tenant) -> str:
    """The name a tenant's requests are recorded under: its certificate's common name."""
    return pki.name_of_der(pki.der_bytes(tenant.certificate.certificate))


def failing(times: int) -> Callable[[Received], Answer]:
    """A responder that answers 500 to the first `times` requests, then 200."""
    calls = itertools.count()

    def answer(request: Received) -> Answer:
        return (500, {}, b"not yet") if next(calls) < times else (200, {}, b"ok")

    return answer


def sequence(receiver: Receiver, *steps: dict[str, Any]) -> dict[str, Any]:
    """A job running steps in order, due in a day (so only run-now fires it)."""
    return {"startTime": "2026-03-02T12:00:00Z",
            "action": {"type": "sequence", "steps": list(steps)}}


def step(name: str, receiver: Receiver, path: str, **extra: Any) -> dict[str, Any]:
    """One step calling the receiver, with no retries."""
    return {"name": name, "retryPolicy": {"retryType": "none"},
            "action": {"type": "http", "request": {"uri": receiver.url(path), "method": "POST"}},
            **extra}


# --- the engine's events ---------------------------------------------------------------------

def test_a_job_that_fails_twice_then_succeeds_records_each_lease_attempt_and_retry_in_order(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.responder = failing(2)
    job = receiver.job()
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 3}
    assert collection.call("PUT", f"{JOBS}/flaky", job).status_code == 201
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    for _ in range(2):
        clock.advance(timedelta(seconds=30))
        assert driver.step() == 1
    execution_id = only_execution(db)
    assert timeline(collection, execution_id) == [
        ("scheduled", "node-a", None), ("leased", "node-a", 1),
        ("attempt", "node-a", 1), ("retry_scheduled", "node-a", 2),
        ("leased", "node-a", 2), ("attempt", "node-a", 2), ("retry_scheduled", "node-a", 3),
        ("leased", "node-a", 3), ("attempt", "node-a", 3), ("completed", "node-a", 3)]
    found = events(collection, execution_id)
    assert found[0]["detail"] == {"trigger": "schedule", "scheduledTime": "2026-03-01T12:00:10Z"}
    assert found[0]["time"] == "2026-03-01T12:00:10Z"
    attempts = [event["detail"] for event in found if event["kind"] == "attempt"]
    assert [detail["output"] for detail in attempts] == [{"statusCode": code}
                                                         for code in (500, 500, 200)]
    assert [detail["success"] for detail in attempts] == [False, False, True]
    assert [detail["next"] for detail in attempts] == ["retry", "retry", "completed"]
    assert all(detail["type"] == "http" and detail["durationMs"] >= 0 for detail in attempts)
    assert "500" in attempts[0]["message"]
    retries = [event for event in found if event["kind"] == "retry_scheduled"]
    assert [event["detail"]["nextAttemptAt"] for event in retries] == [
        "2026-03-01T12:00:40Z", "2026-03-01T12:01:10Z"]
    assert {event["detail"]["waitSeconds"] for event in retries} == {30.0}
    assert [event["id"] for event in found] == sorted(event["id"] for event in found)


def test_the_error_action_s_attempt_is_its_own_event_and_the_execution_ends_failed(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.answers["/hook"] = (503, {}, b"down")
    job = receiver.job()
    job["action"]["retryPolicy"] = {"retryType": "none"}
    job["action"]["errorAction"] = {"type": "http", "request": {
        "uri": receiver.url("/alarm"), "method": "POST"}, "retryPolicy": {"retryType": "none"}}
    collection.call("PUT", f"{JOBS}/alarmed", job)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert driver.step() == 1
    found = events(collection, only_execution(db))
    assert [event["kind"] for event in found] == [
        "scheduled", "leased", "attempt", "leased", "error_action", "failed"]
    assert found[2]["detail"]["next"] == "error action"
    assert found[3]["detail"]["action"] == "ErrorAction"
    ran = found[4]["detail"]
    assert (ran["action"], ran["type"], ran["success"], ran["output"]) == (
        "ErrorAction", "http", True, {"statusCode": 200})


def test_a_job_without_error_action_that_fails_for_good_ends_faulted(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.answers["/hook"] = (500, {}, b"broken")
    job = receiver.job()
    job["action"]["retryPolicy"] = {"retryType": "none"}
    collection.call("PUT", f"{JOBS}/broken", job)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    assert [kind for kind, _node, _attempt in timeline(collection, only_execution(db))] == [
        "scheduled", "leased", "attempt", "faulted"]


def test_missed_occurrences_are_scheduled_then_missed_and_name_the_one_fired(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/minutely", receiver.job(
        recurrence={"frequency": "minute", "interval": 1}))
    clock.advance(timedelta(minutes=2, seconds=10))  # 12:00:10, 12:01:10 passed unseen
    driver.step()
    with db.snapshot() as session:
        missed = list(session.scalars(select(Execution.id).where(Execution.status == "missed")
                                      .order_by(Execution.scheduled_time)))
    assert len(missed) == 2
    first = events(collection, missed[0])
    assert [event["kind"] for event in first] == ["scheduled", "missed"]
    assert first[0]["detail"]["scheduledTime"] == "2026-03-01T12:00:10Z"
    assert first[1]["detail"] == {
        "firedFor": "2026-03-01T12:02:10Z",
        "reason": "the job fired once, for 2026-03-01T12:02:10+00:00, for all the occurrences "
                  "it missed"}


def test_a_cancel_through_the_api_is_recorded_with_the_certificate_s_name_and_audited(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, db: Database,
) -> None:
    receiver.answers["/hook"] = (500, {}, b"no")
    job = receiver.job(startTime="2026-03-02T12:00:00Z")
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT1H",
                                    "retryCount": 3}
    collection.call("PUT", f"{JOBS}/slow", job)
    run = collection.call("POST", f"{JOBS}/slow/run")
    assert run.status_code == 202
    execution_id = run.get_json()["id"]
    assert driver.step() == 1  # its first attempt fails; its retry is an hour away
    assert collection.call("PATCH", f"{EXECUTIONS}/{execution_id}",
                           {"status": "canceled"}).status_code == 204
    found = events(collection, execution_id)
    assert [event["kind"] for event in found] == [
        "scheduled", "leased", "attempt", "retry_scheduled", "canceled"]
    actor = actor_of(collection)
    assert found[0]["detail"]["trigger"] == "manual" and found[0]["detail"]["by"] == actor
    assert found[-1]["detail"]["by"] == actor and found[-1]["node"] is None
    assert "Canceled by certificate" in found[-1]["detail"]["message"]
    with db.reader() as conn:
        changes = read_changes(conn, collection.subscription_id, Target("cs1", "jc1", "slow"))
    assert [(change.kind, change.actor, change.detail) for change in changes
            if change.kind.startswith("execution.")] == [
        ("execution.cancel", actor, execution_id), ("execution.run", actor, execution_id)]


def test_a_retry_the_engine_cancels_as_its_job_was_disabled_names_the_node(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    receiver.answers["/hook"] = (500, {}, b"no")
    job = receiver.job()
    job["action"]["retryPolicy"] = {"retryType": "fixed", "retryInterval": "PT30S",
                                    "retryCount": 3}
    collection.call("PUT", f"{JOBS}/soon", job)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    collection.call("PATCH", f"{JOBS}/soon", {"state": "disabled"})
    clock.advance(timedelta(seconds=30))
    driver.step()
    canceled = events(collection, only_execution(db))[-1]
    assert (canceled["kind"], canceled["node"]) == ("canceled", "node-a")
    assert canceled["detail"] == {"message": "Canceled because the job was disabled."}


def test_a_manual_step_records_its_pause_and_who_resumed_it(
    collection: Tenant, driver: NodeDriver, receiver: Receiver,
) -> None:
    job = sequence(receiver, step("prepare", receiver, "/prepare"),
                   step("approve", receiver, "/go", manual=True))
    collection.call("PUT", f"{JOBS}/seq", job)
    execution_id = collection.call("POST", f"{JOBS}/seq/run").get_json()["id"]
    assert driver.step() == 1
    assert collection.call("POST", f"{EXECUTIONS}/{execution_id}/resume").status_code == 202
    assert driver.step() == 1
    found = events(collection, execution_id)
    assert [(event["kind"], event["attempt"]) for event in found] == [
        ("scheduled", None), ("leased", 1), ("step", 1), ("paused", None), ("resumed", None),
        ("leased", 2), ("step", 2), ("completed", 2)]
    prepared = found[2]["detail"]
    assert (prepared["step"], prepared["name"], prepared["stepStatus"]) == (
        0, "prepare", "completed")
    assert prepared["input"]["uri"] == receiver.url("/prepare")
    assert prepared["output"]["statusCode"] == 200
    assert found[3]["detail"] == {"step": 1, "name": "approve", "reason": "manual"}
    assert found[4]["detail"] == {"step": 1, "name": "approve", "by": actor_of(collection)}
    assert found[6]["detail"]["name"] == "approve"


def test_a_sequence_whose_first_step_is_manual_starts_paused(
    collection: Tenant, receiver: Receiver,
) -> None:
    collection.call("PUT", f"{JOBS}/seq", sequence(
        receiver, step("approve", receiver, "/go", manual=True)))
    execution_id = collection.call("POST", f"{JOBS}/seq/run").get_json()["id"]
    assert [event["kind"] for event in events(collection, execution_id)] == [
        "scheduled", "paused"]


def test_a_failed_step_that_pauses_says_so(
    collection: Tenant, driver: NodeDriver, receiver: Receiver,
) -> None:
    receiver.answers["/flaky"] = (503, {}, b"not yet")
    collection.call("PUT", f"{JOBS}/seq", sequence(
        receiver, step("flaky", receiver, "/flaky", pauseOnFailure=True)))
    execution_id = collection.call("POST", f"{JOBS}/seq/run").get_json()["id"]
    driver.step()
    paused = events(collection, execution_id)[-1]
    assert paused["kind"] == "paused"
    assert paused["detail"] == {"step": 0, "name": "flaky", "reason": "failed"}


def test_an_inline_run_records_its_events_like_a_job_s(
    collection: Tenant, driver: NodeDriver, receiver: Receiver,
) -> None:
    started = collection.call("POST", EXECUTIONS, {"action": {"type": "http", "request": {
        "uri": receiver.url("/once"), "method": "POST"}}})
    assert started.status_code == 202, started.data
    execution_id = started.get_json()["id"]
    assert driver.step() == 1
    assert [kind for kind, _node, _attempt in timeline(collection, execution_id)] == [
        "scheduled", "leased", "attempt", "completed"]


# --- take-overs ------------------------------------------------------------------------------

def ready_one_call(collection: Tenant, receiver: Receiver, driver: NodeDriver,
                   clock: FrozenClock, db: Database) -> str:
    """A job due at 12:00:10 whose call `driver`'s node readied at 12:00:08."""
    collection.call("PUT", f"{JOBS}/soon", receiver.job())
    clock.advance(timedelta(seconds=8))
    driver.run_pass()
    assert driver.held_calls() == (1, 0)
    return only_execution(db)


def test_a_node_that_takes_over_from_a_dead_one_records_from_whom_by_whom_and_why(
    collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    execution_id = ready_one_call(collection, receiver, driver, clock, db)
    other.run_pass()  # node-b starts while node-a is alive: nothing to take
    clock.advance(timedelta(seconds=6))  # node-a's heartbeat stopped 6 s ago
    assert other.run_timers() == 1  # node-b's heartbeat finds it dead
    other.settle()
    other.step()
    found = events(collection, execution_id)
    assert [(event["kind"], event["node"], event["attempt"]) for event in found] == [
        ("scheduled", "node-a", None), ("leased", "node-a", 1),
        ("taken_over", "node-b", None), ("leased", "node-b", 1),
        ("attempt", "node-b", 1), ("completed", "node-b", 1)]
    assert found[2]["detail"] == {"from": "node-a", "by": "node-b",
                                  "reason": "heartbeat_stopped"}


def test_a_lease_that_ran_out_is_taken_over_saying_so(
    collection: Tenant, driver: NodeDriver, other: NodeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    execution_id = ready_one_call(collection, receiver, driver, clock, db)
    other.run_pass()
    with db.transaction() as session:  # node-a is alive, but its lease ran out
        session.execute(update(Execution).values(lease_until=clock.now()
                                                 - timedelta(seconds=1)))
    other.step()
    taken, leased = events(collection, execution_id)[2:4]
    assert (taken["kind"], taken["node"]) == ("taken_over", "node-b")
    assert taken["detail"] == {"from": "node-a", "by": "node-b", "reason": "lease_expired"}
    assert (leased["kind"], leased["node"]) == ("leased", "node-b")


def test_a_node_that_starts_alone_takes_over_what_the_one_before_held(
    collection: Tenant, driver: NodeDriver, make_driver: MakeDriver, receiver: Receiver,
    clock: FrozenClock, db: Database,
) -> None:
    execution_id = ready_one_call(collection, receiver, driver, clock, db)
    starting = make_driver("node-b", events=driver.events, sole=True)
    starting.begin()
    taken = events(collection, execution_id)[-1]
    assert (taken["kind"], taken["node"]) == ("taken_over", "node-b")
    assert taken["detail"] == {"from": "node-a", "by": "node-b", "reason": "node_replaced"}


# --- the bound, and deletion -----------------------------------------------------------------

def fill(db: Database, execution_id: str, kinds: list[EventKind], batch: int) -> None:
    """Add events of these kinds to an execution, `batch` to a statement."""
    rows = [event_row(execution_id, START_OF_EVENTS, kind) for kind in kinds]
    for start in range(0, len(rows), batch):
        with db.transaction() as session:
            insert_events(session.connection(), rows[start:start + batch])


def kinds_kept(db: Database, execution_id: str) -> list[str]:
    """The kinds of an execution's events, oldest first."""
    with db.snapshot() as session:
        return list(session.scalars(select(ExecutionEvent.kind).where(
            ExecutionEvent.execution_id == execution_id).order_by(ExecutionEvent.id)))


START_OF_EVENTS = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_an_execution_keeps_at_most_its_bound_of_events_its_ending_always_among_them(
    collection: Tenant, receiver: Receiver, db: Database,
) -> None:
    collection.call("PUT", f"{JOBS}/job", receiver.job(startTime="2026-03-02T12:00:00Z"))
    ids = [collection.call("POST", f"{JOBS}/job/run").get_json()["id"] for _ in range(3)]
    many = [EventKind.LEASED] * (MAX_EVENTS + 20) + [EventKind.CANCELED]
    for execution_id, batch in zip(ids, (1, 37, len(many)), strict=True):
        fill(db, execution_id, many, batch)
        kept = kinds_kept(db, execution_id)
        assert len(kept) == MAX_EVENTS, batch
        assert kept[0] == "scheduled" and kept[-1] == "canceled"
        assert kept[1:-1] == ["leased"] * (MAX_EVENTS - 2)
        fill(db, execution_id, [EventKind.LEASED, EventKind.COMPLETED], batch)
        assert len(kinds_kept(db, execution_id)) == MAX_EVENTS


def test_a_step_paused_and_resumed_again_and_again_keeps_its_bound_and_its_end(
    collection: Tenant, driver: NodeDriver, receiver: Receiver, db: Database,
) -> None:
    receiver.answers["/flaky"] = (503, {}, b"not yet")
    collection.call("PUT", f"{JOBS}/seq", sequence(
        receiver, step("flaky", receiver, "/flaky", pauseOnFailure=True)))
    execution_id = collection.call("POST", f"{JOBS}/seq/run").get_json()["id"]
    driver.step()  # scheduled, leased, step, paused: then 4 more per resume
    for _ in range(MAX_EVENTS // 4):
        assert collection.call("POST", f"{EXECUTIONS}/{execution_id}/resume").status_code == 202
        assert driver.step() == 1
    receiver.answers["/flaky"] = (200, {}, b"done")
    collection.call("POST", f"{EXECUTIONS}/{execution_id}/resume")
    assert driver.step() == 1
    kept = kinds_kept(db, execution_id)
    assert len(kept) == MAX_EVENTS
    assert kept[:4] == ["scheduled", "leased", "step", "paused"]
    assert kept[-1] == "completed" and kept.count("completed") == 1
    assert kept.count("resumed") < MAX_EVENTS // 4 + 1, "the latest events are dropped"
    assert len(events(collection, execution_id)) == MAX_EVENTS


def test_deleting_a_job_its_collection_or_old_history_leaves_no_events(
    collection: Tenant, make_driver: MakeDriver, receiver: Receiver, clock: FrozenClock,
    db: Database,
) -> None:
    driver = make_driver(history_keep=3)
    collection.call("PUT", f"{JOBS}/one", receiver.job())
    collection.call("PUT", f"{JOBS}/two", receiver.job())
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 2
    assert count_events(db) == 8
    assert collection.call("DELETE", f"{JOBS}/one").status_code == 200
    assert count_events(db) == 4
    keep = driver.node.options.history_keep
    collection.call("PUT", f"{JOBS}/many", receiver.job(
        recurrence={"frequency": "minute", "interval": 1}))
    for _ in range(keep + 2):
        clock.advance(timedelta(minutes=1))
        driver.step()
    driver.node.prune(clock.now())
    with db.snapshot() as session:
        kept = set(session.scalars(select(Execution.id)))
        owners = set(session.scalars(select(ExecutionEvent.execution_id)))
    assert owners == kept, "retention leaves no events of the executions it pruned"
    deleted = collection.call("DELETE",
                              "/cloudservices/cs1/resources/scheduler/jobcollections/jc1")
    assert deleted.status_code in (200, 202), deleted.data
    assert count_events(db) == 0
