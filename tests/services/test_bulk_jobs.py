"""Many jobs at once: copies of a job under new ids, each from its own start, and one new
schedule for every job of a collection; read back through the API, as a client sees them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from scheduler.api.schemas.jobs import parse_job
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.domain.jobs import BasicAuthentication, HttpAction
from scheduler.domain.recurrence import Recurrence
from scheduler.security.secrets import SecretBox
from scheduler.services.bulk_jobs import copy_job, reschedule_jobs
from scheduler.services.errors import BadRequest, Conflict, NotFound
from scheduler.services.jobs import opened_definition, read_job
from scheduler.settings import Settings
from tests.support import JOBS, START, Tenant, collection_xml, http_job

CLOUD_SERVICE = ('<CloudService xmlns="http://schemas.microsoft.com/windowsazure"><Label>cs'
                 "</Label><Description>d</Description><GeoRegion>West Europe</GeoRegion>"
                 "</CloudService>")
COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"


def copy(tenant: Tenant, db: Database, settings: Settings, clock: FrozenClock, source: str,
         copies: list[tuple[str, datetime]]) -> int:
    """Copy a job of cs1/jc1 in a transaction of its own."""
    with db.transaction() as session:
        return copy_job(session, tenant.subscription_id, "cs1", "jc1", source, copies,
                        settings.plans, clock.now())


def reschedule(tenant: Tenant, db: Database, settings: Settings, clock: FrozenClock,
               start: datetime, recurrence: Recurrence | None) -> datetime | None:
    """Give every job of cs1/jc1 a new schedule in a transaction of its own."""
    with db.transaction() as session:
        return reschedule_jobs(session, tenant.subscription_id, "cs1", "jc1", start,
                               recurrence, settings.plans, clock.now())


def recurrence(clock: FrozenClock, **fields: Any) -> Recurrence:
    """A recurrence as a job document states it."""
    found = parse_job(http_job(recurrence=fields), now=clock.now()).recurrence
    assert found is not None
    return found


def shown(tenant: Tenant, job_id: str) -> dict[str, Any]:
    """A job as GET answers it."""
    response = tenant.call("GET", f"{JOBS}/{job_id}")
    assert response.status_code == 200, response.data
    job: dict[str, Any] = response.get_json()
    return job


def job_ids(tenant: Tenant) -> list[str]:
    """The ids of the collection's jobs, as the list of jobs gives them."""
    return [job["id"] for job in tenant.call("GET", JOBS).get_json()]


def collection_of_at_most(tenant: Tenant, jobs: int) -> None:
    """cs1/jc1, a Standard collection whose quota allows `jobs` jobs."""
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE).status_code == 202
    quota = f"<Quota><MaxJobCount>{jobs}</MaxJobCount></Quota>"
    assert tenant.call("PUT", COLLECTION, collection_xml("Standard", quota)).status_code == 202


def test_copies_are_new_jobs_each_from_its_own_start(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    assert collection.call("PUT", f"{JOBS}/source", http_job(
        recurrence={"frequency": "hour", "interval": 2})).status_code == 201
    starts = [START + timedelta(days=1, minutes=n) for n in range(3)]
    made = copy(collection, db, settings, clock, "source",
                [(f"Copy-{n}", start) for n, start in enumerate(starts)])
    assert made == 3
    assert job_ids(collection) == ["Copy-0", "Copy-1", "Copy-2", "source"]
    source = shown(collection, "source")
    for n, start in enumerate(starts):
        job = shown(collection, f"copy-{n}")
        expected = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert job["startTime"] == expected
        assert job["status"]["nextExecutionTime"] == expected
        assert job["status"]["executionCount"] == 0
        assert job["action"] == source["action"]
        assert job["recurrence"] == source["recurrence"]
        assert job["state"] == "enabled"


def test_a_copy_whose_start_has_passed_is_due_at_its_start(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    assert collection.call("PUT", f"{JOBS}/source", http_job()).status_code == 201
    past = START - timedelta(minutes=5)
    copy(collection, db, settings, clock, "source", [("late", past)])
    assert shown(collection, "late")["status"]["nextExecutionTime"] == "2026-03-01T11:55:00Z"


def test_copies_keep_the_sources_secrets_and_disabled_state(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    job = http_job(state="disabled")
    job["action"]["request"]["authentication"] = {"type": "Basic", "username": "u",
                                                  "password": "secret"}
    assert collection.call("PUT", f"{JOBS}/source", job).status_code == 201
    copy(collection, db, settings, clock, "source", [("copy", START + timedelta(days=2))])
    assert shown(collection, "copy")["state"] == "disabled"
    box = SecretBox.from_file(settings.path(settings.security.secret_key_file))
    with db.snapshot() as session:
        stored = read_job(session.connection(), collection.subscription_id, "cs1", "jc1",
                          "copy")
        action = opened_definition(stored, box).action
    assert isinstance(action, HttpAction)
    assert isinstance(action.authentication, BasicAuthentication)
    assert action.authentication.password.value == "secret"


def test_copies_count_against_the_collections_quota(
        tenant: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    collection_of_at_most(tenant, 4)
    assert tenant.call("PUT", f"{JOBS}/source", http_job()).status_code == 201
    later = START + timedelta(days=1)
    with pytest.raises(Conflict, match="quota"):
        copy(tenant, db, settings, clock, "source", [(f"c{n}", later) for n in range(4)])
    assert job_ids(tenant) == ["source"]  # nothing of the refused copies stayed
    assert copy(tenant, db, settings, clock, "source",
                [(f"c{n}", later) for n in range(3)]) == 3
    full = tenant.call("PUT", f"{JOBS}/one-more", http_job())
    assert full.status_code == 409 and "quota" in full.get_json()["error"]["message"]


def test_a_copy_under_a_taken_id_copies_nothing(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    assert collection.call("PUT", f"{JOBS}/source", http_job()).status_code == 201
    later = START + timedelta(days=1)
    with pytest.raises(Conflict, match="exists already"):
        copy(collection, db, settings, clock, "source", [("new", later), ("SOURCE", later)])
    with pytest.raises(Conflict, match="exists already"):
        copy(collection, db, settings, clock, "source", [("twice", later), ("twice", later)])
    assert job_ids(collection) == ["source"]


@pytest.mark.parametrize(("source", "new_id", "error", "message"), [
    ("missing", "new", NotFound, "The job missing does not exist"),
    ("source", "not valid!", BadRequest, "job id 'not valid!' is not valid"),
])
def test_a_copy_of_a_missing_job_or_under_a_bad_id_is_refused(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock,
        source: str, new_id: str, error: type[Exception], message: str) -> None:
    assert collection.call("PUT", f"{JOBS}/source", http_job()).status_code == 201
    with pytest.raises(error, match=message):
        copy(collection, db, settings, clock, source, [(new_id, START)])
    assert job_ids(collection) == ["source"]


def test_a_copy_in_a_missing_collection_is_refused(
        tenant: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    with pytest.raises(NotFound, match="job collection jc1 does not exist"):
        copy(tenant, db, settings, clock, "source", [("new", START)])


def test_reschedule_gives_every_job_the_schedule_a_replace_would(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    for job_id, state in (("a", "enabled"), ("b", "disabled")):
        assert collection.call("PUT", f"{JOBS}/{job_id}", http_job(state=state)
                               ).status_code == 201
    before = {job_id: shown(collection, job_id) for job_id in ("a", "b")}
    start = START + timedelta(hours=3)
    every = recurrence(clock, frequency="minute", interval=5, count=10)
    assert reschedule(collection, db, settings, clock, start, every) == start
    for job_id in ("a", "b"):
        job = shown(collection, job_id)
        assert job["startTime"] == "2026-03-01T15:00:00Z"
        assert job["recurrence"] == {"frequency": "minute", "interval": 5, "count": 10}
        assert job["status"]["nextExecutionTime"] == "2026-03-01T15:00:00Z"
        assert job["state"] == before[job_id]["state"]
        assert job["action"] == before[job_id]["action"]
        replaced = collection.call("PUT", f"{JOBS}/{job_id}", http_job(
            startTime="2026-03-01T15:00:00Z", state=job["state"],
            recurrence={"frequency": "minute", "interval": 5, "count": 10})).get_json()
        assert replaced == job  # what a replace with the same schedule stores


def test_reschedule_keeps_the_collections_quota_and_a_schedule_that_fires(
        collection: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    assert collection.call("PUT", f"{JOBS}/a", http_job()).status_code == 201
    with pytest.raises(Conflict, match="more often than"):
        reschedule(collection, db, settings, clock, START, recurrence(clock, frequency="second"))
    ended = recurrence(clock, frequency="hour", endTime="2026-03-01T13:00:00Z")
    with pytest.raises(BadRequest, match="never fires for the job a"):
        reschedule(collection, db, settings, clock, START + timedelta(days=1), ended)
    assert shown(collection, "a")["startTime"] == "2026-03-02T00:00:00Z"


def test_reschedule_of_an_empty_or_missing_collection(
        tenant: Tenant, db: Database, settings: Settings, clock: FrozenClock) -> None:
    with pytest.raises(NotFound, match="job collection jc1 does not exist"):
        reschedule(tenant, db, settings, clock, START, None)
    collection_of_at_most(tenant, 4)
    assert reschedule(tenant, db, settings, clock, START, None) is None
