"""Jobs: create, read, replace, merge, delete, list, page, filter, enable and disable all."""

from __future__ import annotations

import json

from sqlalchemy import select

from scheduler.api.schemas.jobs import parse_job
from scheduler.clock import FrozenClock
from scheduler.db.models import Job
from scheduler.db.session import Database
from scheduler.security.secrets import SecretBox
from scheduler.services import jobs
from scheduler.settings import Settings
from tests.support import JOBS, Tenant, http_job


def test_put_creates_a_job_and_echoes_it_in_azure_format(collection: Tenant) -> None:
    response = collection.call("PUT", f"{JOBS}/job1?api-version=2014-04-01", http_job(
        recurrence={"frequency": "Minute", "interval": 30, "count": 10}, state="Enabled"))
    assert response.status_code == 201, response.data
    job = response.get_json()
    assert job["id"] == "job1"
    assert job["startTime"] == "2026-03-02T00:00:00Z"
    assert job["action"] == {"type": "http", "request": {
        "uri": "http://example.com/hook", "method": "POST", "body": "hello"}}
    assert job["recurrence"] == {"frequency": "minute", "interval": 30, "count": 10}
    assert job["state"] == "enabled"
    assert job["status"] == {"nextExecutionTime": "2026-03-02T00:00:00Z", "executionCount": 0,
                             "failureCount": 0, "faultedCount": 0}
    assert response.headers["ETag"]
    assert len(response.headers["x-ms-request-id"]) == 32


def test_put_again_replaces_the_whole_job(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(recurrence={"frequency": "hour"}))
    response = collection.call("PUT", f"{JOBS}/job1", http_job())
    assert response.status_code == 200
    assert "recurrence" not in response.get_json()


def test_post_creates_a_job_with_a_server_made_id(collection: Tenant) -> None:
    response = collection.call("POST", JOBS, http_job())
    assert response.status_code == 201
    job_id = response.get_json()["id"]
    assert collection.call("GET", f"{JOBS}/{job_id}").status_code == 200


def test_get_job_matches_ids_and_paths_case_insensitively(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/MyJob", http_job())
    path = "/CloudServices/cs1/Resources/Scheduler/~/JobCollections/JC1/Jobs/myjob"
    response = collection.call("GET", path)
    assert response.status_code == 200
    assert response.get_json()["id"] == "MyJob"


def test_patch_merges_and_keeps_unspecified_fields(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(recurrence={"frequency": "hour"}))
    response = collection.call("PATCH", f"{JOBS}/job1",
                               {"state": "disabled", "stateDetails": "maintenance"})
    assert response.status_code == 200
    job = response.get_json()
    assert job["state"] == "disabled"
    assert job["stateDetails"] == "maintenance"
    assert job["recurrence"] == {"frequency": "hour"}
    assert job["action"]["request"]["body"] == "hello"


def test_merge_and_method_override_are_patch(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    merged = collection.call("MERGE", f"{JOBS}/job1", {"state": "disabled"})
    assert merged.get_json()["state"] == "disabled"
    overridden = collection.call("POST", f"{JOBS}/job1", {"state": "enabled"},
                                 headers={"X-HTTP-Method": "PATCH"})
    assert overridden.get_json()["state"] == "enabled"


def test_patch_can_remove_a_field_with_null(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job(recurrence={"frequency": "hour"}))
    response = collection.call("PATCH", f"{JOBS}/job1", {"recurrence": None})
    assert "recurrence" not in response.get_json()


def test_patch_refuses_status_and_final_states(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    status = collection.call("PATCH", f"{JOBS}/job1", {"status": {"executionCount": 3}})
    assert status.status_code == 400
    assert "status" in status.get_json()["error"]["message"]
    final = collection.call("PATCH", f"{JOBS}/job1", {"state": "completed"})
    assert final.status_code == 400
    assert "state" in final.get_json()["error"]["message"]


def test_delete_job_then_get_is_404_and_second_delete_is_404(collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    assert collection.call("DELETE", f"{JOBS}/job1").status_code == 200
    assert collection.call("GET", f"{JOBS}/job1").status_code == 404
    second = collection.call("DELETE", f"{JOBS}/job1")
    assert second.status_code == 404
    assert second.get_json()["error"]["code"] == "ResourceNotFound"


def test_list_pages_with_top_and_skip_and_filters_by_state(collection: Tenant) -> None:
    for index in range(5):
        collection.call("PUT", f"{JOBS}/job{index}",
                        http_job(state="disabled" if index % 2 else "enabled"))
    everything = collection.call("GET", f"{JOBS}/?api-version=2014-04-01").get_json()
    assert [job["id"] for job in everything] == [f"job{i}" for i in range(5)]
    page = collection.call("GET", f"{JOBS}?$top=2&$skip=1").get_json()
    assert [job["id"] for job in page] == ["job1", "job2"]
    disabled = collection.call("GET", f"{JOBS}?$filter=state eq 'Disabled'").get_json()
    assert [job["id"] for job in disabled] == ["job1", "job3"]


def test_patch_all_jobs_disables_and_enables_every_job(collection: Tenant) -> None:
    for index in range(3):
        collection.call("PUT", f"{JOBS}/job{index}", http_job())
    response = collection.call("PATCH", JOBS, {"state": "disabled"})
    assert response.status_code == 200
    assert {job["state"] for job in response.get_json()} == {"disabled"}
    enabled = collection.call("PATCH", JOBS, {"state": "enabled"}).get_json()
    assert {job["state"] for job in enabled} == {"enabled"}


def test_secrets_are_never_returned_and_are_encrypted_at_rest(
    collection: Tenant, db: Database
) -> None:
    auth = {"type": "Basic", "username": "svc", "password": "s3cret-pass"}
    job = http_job()
    job["action"]["request"]["authentication"] = auth
    job["action"]["errorAction"] = {"type": "storageQueue", "queueMessage": {
        "storageAccount": "acct1", "queueName": "errors", "sasToken": "sig=tok3n",
        "message": "failed"}}
    created = collection.call("PUT", f"{JOBS}/job1", job)
    assert created.status_code == 201, created.data
    for response in (created, collection.call("GET", f"{JOBS}/job1"),
                     collection.call("GET", JOBS)):
        text = response.get_data(as_text=True)
        assert "s3cret-pass" not in text and "tok3n" not in text
    echoed = created.get_json()["action"]
    assert echoed["request"]["authentication"] == {"type": "Basic", "username": "svc"}
    assert "sasToken" not in echoed["errorAction"]["queueMessage"]
    with db.snapshot() as session:
        row = session.scalar(select(Job))
        assert row is not None and row.secrets is not None
        assert b"s3cret-pass" not in row.secrets and "s3cret-pass" not in row.definition


def test_patch_keeps_secrets_it_does_not_touch(collection: Tenant, db: Database) -> None:
    job = http_job()
    job["action"]["request"]["authentication"] = {
        "type": "Basic", "username": "svc", "password": "pw"}
    collection.call("PUT", f"{JOBS}/job1", job)
    response = collection.call("PATCH", f"{JOBS}/job1",
                               {"action": {"request": {"body": "changed"}}})
    assert response.status_code == 200, response.data
    assert response.get_json()["action"]["request"]["authentication"]["username"] == "svc"
    app_box = collection.client.application.extensions["scheduler"].box
    with db.snapshot() as session:
        row = session.scalar(select(Job))
        assert row is not None
        assert app_box.open(row.secrets) == {"action.authentication.password": "pw"}


def test_etags_guard_concurrent_writes(collection: Tenant) -> None:
    created = collection.call("PUT", f"{JOBS}/job1", http_job())
    etag = created.headers["ETag"]
    ok = collection.call("PATCH", f"{JOBS}/job1", {"state": "disabled"},
                         headers={"If-Match": etag})
    assert ok.status_code == 200
    stale = collection.call("PATCH", f"{JOBS}/job1", {"state": "enabled"},
                            headers={"If-Match": etag})
    assert stale.status_code == 412
    create_only = collection.call("PUT", f"{JOBS}/job1", http_job(),
                                  headers={"If-None-Match": "*"})
    assert create_only.status_code == 412


def test_a_delete_whose_etag_does_not_match_keeps_the_job(collection: Tenant) -> None:
    created = collection.call("PUT", f"{JOBS}/job1", http_job())
    stale = collection.call("DELETE", f"{JOBS}/job1", headers={"If-Match": '"other"'})
    assert stale.status_code == 412
    assert collection.call("GET", f"{JOBS}/job1").headers["ETag"] == created.headers["ETag"]
    matching = collection.call("DELETE", f"{JOBS}/job1",
                               headers={"If-Match": created.headers["ETag"]})
    assert matching.status_code == 200
    assert collection.call("GET", f"{JOBS}/job1").status_code == 404


def test_writes_name_the_missing_collection_or_job(collection: Tenant) -> None:
    missing = JOBS.replace("/jc1/", "/nope/")
    for method, body, headers in (("PUT", http_job(), {}),
                                  ("PUT", http_job(), {"If-Match": '"x"'}),
                                  ("PATCH", {"state": "disabled"}, {}),
                                  ("DELETE", None, {})):
        response = collection.call(method, f"{missing}/job1", body, headers=headers)
        assert response.status_code == 404, (method, headers)
        assert "job collection nope" in response.get_json()["error"]["message"]
    for method, body in (("PATCH", {"state": "disabled"}), ("DELETE", None)):
        response = collection.call(method, f"{JOBS}/job1", body)
        assert response.status_code == 404
        assert "job job1 does not exist" in response.get_json()["error"]["message"]
    matching = collection.call("PUT", f"{JOBS}/job1", http_job(), headers={"If-Match": "*"})
    assert matching.status_code == 412
    assert collection.call("GET", f"{JOBS}/job1").status_code == 404


def test_a_create_that_finds_its_id_taken_meanwhile_makes_nothing(
        collection: Tenant, db: Database, clock: FrozenClock, settings: Settings) -> None:
    spec = parse_job(http_job(), now=clock.now(), job_id="job1")
    box, plans = SecretBox(SecretBox.new_key()), settings.plans
    made = []
    for _ in range(2):
        with db.transaction() as session:
            made.append(jobs.create_job(session.connection(), collection.subscription_id,
                                        "cs1", "jc1", "job1", spec, box, plans, clock.now()))
    assert made[0] is not None and made[0].job_id == "job1" and made[1] is None
    with db.snapshot() as session:
        assert session.scalars(select(Job.job_id)).all() == ["job1"]


def test_history_route_pages_newest_first(collection: Tenant, db: Database) -> None:
    from datetime import UTC, datetime, timedelta

    from scheduler.db.models import HistoryEntry

    collection.call("PUT", f"{JOBS}/job1", http_job())
    with db.transaction() as session:
        job = session.scalar(select(Job))
        assert job is not None
        base = datetime(2026, 3, 1, tzinfo=UTC)
        for index in range(5):
            moment = base + timedelta(minutes=index)
            session.add(HistoryEntry(
                job_pk=job.id, timestamp=moment, start_time=moment, end_time=moment,
                expected_execution_time=moment, state="enabled",
                status="failed" if index % 2 else "completed", action_name="MainAction",
                message=f"attempt {index}", retry_count=0, repeat_count=index))
    entries = collection.call("GET", f"{JOBS}/job1/history?$top=2").get_json()
    assert [entry["message"] for entry in entries] == ["attempt 4", "attempt 3"]
    failed = collection.call("GET", f"{JOBS}/job1/history?$filter=status eq 'failed'")
    assert [entry["repeatCount"] for entry in failed.get_json()] == [3, 1]
    assert json.loads(failed.data)[0]["jobId"] == "job1"


def test_status_and_occurrences_show_what_will_happen(collection: Tenant) -> None:
    job = http_job(startTime="2026-03-01T09:30:00+01:00", recurrence={
        "frequency": "week", "interval": 1, "count": 3, "timeZone": "Europe/Berlin",
        "schedule": {"weekDays": ["monday", "thursday"], "hours": [9], "minutes": [30]}})
    created = collection.call("PUT", f"{JOBS}/weekly", job).get_json()
    assert created["status"]["nextExecutionTime"] == "2026-03-02T08:30:00Z"
    response = collection.call("GET", f"{JOBS}/weekly/occurrences?$top=5")
    assert response.status_code == 200
    assert response.get_json() == ["2026-03-02T08:30:00Z", "2026-03-05T08:30:00Z",
                                   "2026-03-09T08:30:00Z"]
    one_shot = collection.call("PUT", f"{JOBS}/once", http_job(startTime="2020-01-01T00:00:00Z"))
    assert one_shot.get_json()["status"]["nextExecutionTime"] == "2026-03-01T12:00:00Z"
    assert collection.call("GET", f"{JOBS}/once/occurrences").get_json() == [
        "2026-03-01T12:00:00Z"]


def test_a_recurrence_that_never_fires_is_refused(collection: Tenant) -> None:
    never = http_job(startTime="2026-03-02T00:00:00Z", recurrence={
        "frequency": "day", "endTime": "2026-03-01T18:00:00Z"})
    response = collection.call("PUT", f"{JOBS}/never", never)
    assert response.status_code == 400
    assert "never fires" in response.get_json()["error"]["message"]
