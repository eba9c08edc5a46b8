"""The audit of changes: every change made through either API to a job or a collection,
who made it, when and why, read per collection and per job, newest first, page by page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.services.audit import Target, read_changes
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, http_job

COLLECTION = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1"
ASM_COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
ARM_COLLECTION = "/resourceGroups/cs1/providers/Microsoft.Scheduler/jobCollections/jc1"
ACTOR = "first"


def audit(tenant: Tenant, path: str = f"{COLLECTION}/audit") -> dict[str, Any]:
    """A page of the audit, which must answer 200."""
    response = tenant.call("GET", path)
    assert response.status_code == 200, response.data
    page: dict[str, Any] = response.get_json()
    return page


def kinds(page: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Each change of a page as (kind, job id)."""
    return [(change["kind"], change.get("jobId")) for change in page["value"]]


def test_the_audit_lists_a_jobs_create_patch_and_delete_with_the_actor_and_the_notes(
        collection: Tenant, clock: FrozenClock) -> None:
    assert collection.call("PUT", f"{JOBS}/job1", http_job()).status_code == 201
    clock.advance(timedelta(minutes=1))
    assert collection.call("PATCH", f"{JOBS}/job1",
                           {"state": "disabled", "stateNote": "vendor outage"}).status_code == 200
    clock.advance(timedelta(minutes=1))
    assert collection.call("DELETE", f"{JOBS}/job1").status_code == 200
    page = audit(collection, f"{JOBS}/job1/audit")
    assert kinds(page) == [("job.delete", "job1"), ("job.patch", "job1"),
                           ("job.create", "job1")]
    deleted, patched, created = page["value"]
    assert {change["actor"] for change in page["value"]} == {ACTOR}
    assert [change["time"] for change in page["value"]] == [
        "2026-03-01T12:02:00Z", "2026-03-01T12:01:00Z", "2026-03-01T12:00:00Z"]
    assert patched["note"] == "vendor outage"
    assert patched["detail"] == "state: enabled → disabled"
    assert created["detail"] == "state: enabled" and "note" not in created
    assert deleted["detail"] == "state was disabled"
    assert deleted["id"] > patched["id"] > created["id"]
    assert len(patched["requestId"]) == 32
    assert "nextLink" not in page


def test_the_collections_audit_holds_its_own_changes_and_those_of_each_job(
        collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/a", http_job())
    collection.call("PUT", f"{JOBS}/b", http_job())
    collection.call("PATCH", JOBS, {"state": "disabled", "stateNote": "freeze"})
    collection.call("DELETE", JOBS)
    page = audit(collection)
    assert kinds(page) == [("jobs.delete", None), ("jobs.state", None), ("job.create", "b"),
                           ("job.create", "a"), ("collection.create", None)]
    assert page["value"][0]["detail"] == "2 jobs deleted"
    assert page["value"][1]["note"] == "freeze"
    assert page["value"][1]["detail"] == "state → disabled: 2 jobs changed"
    assert kinds(audit(collection, f"{JOBS}/a/audit")) == [("job.create", "a")]


def test_a_collections_changes_are_named_field_by_field(collection: Tenant) -> None:
    response = collection.call("PUT", ASM_COLLECTION, collection_xml(
        quota="<Quota><MaxJobCount>5</MaxJobCount></Quota>", state="Suspended"))
    assert response.status_code == 202, response.data
    change = audit(collection)["value"][0]
    assert change["kind"] == "collection.put"
    assert change["detail"] == "max job count: none → 5; state: Started → Suspended"


def test_a_write_that_fails_records_nothing(collection: Tenant) -> None:
    collection.call("PUT", ASM_COLLECTION,
                    collection_xml(quota="<Quota><MaxJobCount>1</MaxJobCount></Quota>"))
    collection.call("PUT", f"{JOBS}/job1", http_job())
    before = audit(collection)["value"]
    refused = collection.call("PUT", f"{JOBS}/job1", http_job(stateNote="x" * 1025))
    assert refused.status_code == 400
    over_quota = collection.call("PUT", f"{JOBS}/job2", http_job(stateNote="one too many"))
    assert over_quota.status_code == 409
    missing = collection.call("PATCH", f"{JOBS}/nothing", {"state": "disabled"})
    assert missing.status_code == 404
    assert audit(collection)["value"] == before


def test_names_match_in_any_case_and_read_as_the_resources_spell_them(
        collection: Tenant) -> None:
    collection.call("PUT", f"{JOBS.replace('jc1', 'JC1')}/MyJob", http_job())
    collection.call("PATCH", f"{JOBS}/MYJOB", {"state": "disabled"})
    path = "/cloudservices/CS1/resources/scheduler/~/jobcollections/Jc1/jobs/myjob/audit"
    assert kinds(audit(collection, path)) == [("job.patch", "MyJob"), ("job.create", "MyJob")]


def test_pages_follow_the_next_link_and_before(collection: Tenant) -> None:
    for n in range(5):
        collection.call("PUT", f"{JOBS}/job{n}", http_job())
    first = audit(collection, f"{COLLECTION}/audit?$top=2")
    assert kinds(first) == [("job.create", "job4"), ("job.create", "job3")]
    link = urlsplit(first["nextLink"])
    assert link.path == f"/{collection.subscription_id}{COLLECTION}/audit"
    query = parse_qs(link.query)
    assert query["$top"] == ["2"] and query["$skipToken"] == [str(first["value"][1]["id"])]
    second = collection.client.get(f"{link.path}?{link.query}").get_json()
    assert kinds(second) == [("job.create", "job2"), ("job.create", "job1")]
    last = audit(collection, f"{COLLECTION}/audit?before={second['value'][1]['id']}")
    assert kinds(last) == [("job.create", "job0"), ("collection.create", None)]
    assert "nextLink" not in last
    for bad in ("$top=0", "$top=1001", "before=x", "before=1&$skipToken=2"):
        assert collection.call("GET", f"{COLLECTION}/audit?{bad}").status_code == 400


def test_another_subscriptions_audit_is_refused_and_a_missing_collection_is_404(
        collection: Tenant, other_tenant: Tenant) -> None:
    collection.call("PUT", f"{JOBS}/job1", http_job())
    foreign = other_tenant.client.get(f"/{collection.subscription_id}{COLLECTION}/audit")
    assert foreign.status_code == 403
    assert other_tenant.call("GET", f"{COLLECTION}/audit").status_code == 404
    assert other_tenant.call("GET", f"{JOBS}/job1/audit").status_code == 404
    gone = "/cloudservices/cs1/resources/scheduler/~/jobcollections/nowhere/audit"
    assert collection.call("GET", gone).status_code == 404


def test_resource_managers_writes_are_audited_as_the_asm_apis(
        collection: Tenant, clock: FrozenClock) -> None:
    body = {"properties": {**http_job(), "state": "Enabled"}}
    assert collection.arm("PUT", f"{ARM_COLLECTION}/jobs/job1", body).status_code == 201
    assert collection.arm("POST", f"{ARM_COLLECTION}/jobs/job1/run").status_code == 200
    assert collection.arm("PATCH", f"{ARM_COLLECTION}/jobs/job1",
                          {"properties": {"state": "Disabled", "stateNote": "why"}}
                          ).status_code == 200
    assert collection.arm("POST", f"{ARM_COLLECTION}/enable").status_code in (200, 202)
    assert collection.arm("PATCH", ARM_COLLECTION,
                          {"tags": {"team": "ops"}}).status_code == 200
    assert collection.arm("DELETE", f"{ARM_COLLECTION}/jobs/job1").status_code == 200
    page = audit(collection)
    assert kinds(page) == [("job.delete", "job1"), ("collection.patch", None),
                           ("collection.enable", None), ("job.patch", "job1"),
                           ("execution.run", "job1"), ("job.create", "job1"),
                           ("collection.create", None)]
    assert page["value"][1]["detail"] == 'tags: none → {"team": "ops"}'
    assert page["value"][3]["note"] == "why"


def test_deleting_a_collection_or_a_cloud_service_is_recorded_when_accepted(
        collection: Tenant) -> None:
    assert collection.call("DELETE", ASM_COLLECTION).status_code == 202
    assert collection.call("DELETE", "/cloudservices/cs1").status_code == 202
    assert collection.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert collection.call("PUT", ASM_COLLECTION, collection_xml()).status_code == 202
    assert kinds(audit(collection)) == [("collection.create", None), ("collection.delete", None),
                                        ("collection.create", None)]


def test_a_group_made_by_a_resource_manager_put_is_recorded_as_a_cloud_service(
        tenant: Tenant, db: Database) -> None:
    path = "/resourceGroups/rg9/providers/Microsoft.Scheduler/jobCollections/jc9"
    body = {"location": "West US", "properties": {"sku": {"name": "Standard"}}}
    assert tenant.arm("PUT", path, body).status_code == 201
    assert tenant.arm("PUT", path, body).status_code == 200
    with db.engine.connect() as conn:
        changes = read_changes(conn, tenant.subscription_id, Target("RG9"))
    assert [(c.kind, c.target.collection, c.detail) for c in changes] == [
        ("collection.put", "jc9", "no change"), ("collection.create", "jc9",
                                                 "plan: Standard; state: Started"),
        ("cloudservice.create", None, "region: West US")]
