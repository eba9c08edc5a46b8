"""Resource Manager's API over the same collections and jobs as the ASM API: the envelope,
the spelling of a job, lists and their links, long operations, errors and who may call."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from scheduler.clock import FrozenClock
from scheduler.db.models import Job
from scheduler.db.session import Database
from scheduler.services.principals import create_principal, delete_principal
from tests.support import ARM_VERSION as V
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, http_job

PROVIDER = "providers/Microsoft.Scheduler"


def group(name: str = "rg1") -> str:
    """A group's collections."""
    return f"/resourceGroups/{name}/{PROVIDER}/jobCollections"


JC = group() + "/jc1"


def collection_body(**properties: Any) -> dict[str, Any]:
    """A collection as azure-mgmt-scheduler sends it."""
    return {"location": "West US", "tags": {"team": "ops"},
            "properties": {"sku": {"name": "Standard"}, "state": "Enabled", **properties}}


def arm_job(**properties: Any) -> dict[str, Any]:
    """A job as azure-mgmt-scheduler sends it: PascalCase, ISO durations, `Occurrence`."""
    return {"properties": {
        "startTime": "2030-01-01T09:00:00.000Z",
        "action": {
            "type": "Http",
            "request": {"uri": "https://example.com/hook", "method": "POST", "body": "b",
                        "headers": {"type": "kept as written"},
                        "authentication": {"type": "Basic", "username": "u",
                                           "password": "secret"}},
            "retryPolicy": {"retryType": "Fixed", "retryInterval": "PT30S", "retryCount": 4},
            "errorAction": {"type": "StorageQueue", "queueMessage": {
                "storageAccount": "account", "queueName": "failures", "sasToken": "?sv=x",
                "message": "failed"}}},
        "recurrence": {"frequency": "Month", "interval": 1, "count": 12,
                       "endTime": "2031-01-01T00:00:00.000Z",
                       "schedule": {"hours": [9], "minutes": [0, 30],
                                    "monthlyOccurrences": [{"day": "Monday", "Occurrence": 1}]}},
        "state": "Enabled", **properties}}


def error_of(response: TestResponse) -> dict[str, Any]:
    """The `{"error": {...}}` of an answer, which must be JSON."""
    assert response.mimetype == "application/json", response.data
    error: dict[str, Any] = response.get_json()["error"]
    return error


@pytest.fixture
def arm_collection(tenant: Tenant) -> Tenant:
    """A tenant with group `rg1` holding collection `jc1`, both made through Resource
    Manager."""
    response = tenant.arm("PUT", JC, collection_body())
    assert response.status_code == 201, response.data
    return tenant


# --- collections ---------------------------------------------------------------------------

def test_a_collection_put_into_a_new_group_makes_the_group_and_answers_the_resource(
        arm_collection: Tenant) -> None:
    got = arm_collection.arm("GET", JC).get_json()
    assert got == {
        "id": f"/subscriptions/{arm_collection.subscription_id}{JC}",
        "type": "Microsoft.Scheduler/jobCollections", "name": "jc1", "location": "West US",
        "tags": {"team": "ops"},
        "properties": {"sku": {"name": "Standard"}, "state": "Enabled"}}
    service = arm_collection.call("GET", "/cloudservices/rg1")
    assert service.status_code == 200 and b"<GeoRegion>West US</GeoRegion>" in service.data
    assert arm_collection.arm("PUT", JC, collection_body()).status_code == 200


def test_collections_are_listed_by_subscription_and_by_group(arm_collection: Tenant) -> None:
    assert arm_collection.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert arm_collection.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc2",
                               collection_xml(plan="P10Premium")).status_code == 202
    everything = arm_collection.arm("GET", f"/{PROVIDER}/jobCollections").get_json()
    assert [c["id"].split("/")[4] + "/" + c["name"] for c in everything["value"]] == [
        "cs1/jc2", "rg1/jc1"]
    assert everything["nextLink"] is None
    in_group = arm_collection.arm("GET", group("cs1")).get_json()["value"]
    assert [(c["name"], c["location"], c["properties"]["sku"]["name"]) for c in in_group] == [
        ("jc2", "West Europe", "P10Premium")]
    older = arm_collection.arm("GET", group("cs1"), version="api-version=2016-01-01")
    assert older.get_json()["value"][0]["properties"]["sku"]["name"] == "Premium"
    missing = arm_collection.arm("GET", group("nowhere"))
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "ResourceGroupNotFound"


def test_a_quota_reads_back_as_given_and_a_patch_merges_into_it(arm_collection: Tenant) -> None:
    quota = {"maxJobCount": 5, "maxJobOccurrence": 10,
             "maxRecurrence": {"frequency": "hour", "interval": 2}}
    put = arm_collection.arm("PUT", JC, collection_body(quota=quota))
    assert put.status_code == 200
    assert put.get_json()["properties"]["quota"] == {
        **quota, "maxRecurrence": {"frequency": "Hour", "interval": 2}}
    patched = arm_collection.arm("PATCH", JC, {"properties": {"quota": {"maxJobCount": 7}},
                                               "tags": {"team": None, "owner": "me"}})
    assert patched.status_code == 200, patched.data
    body = patched.get_json()
    assert body["properties"]["quota"]["maxJobCount"] == 7
    assert body["properties"]["quota"]["maxJobOccurrence"] == 10
    assert body["tags"] == {"owner": "me"}
    assert arm_collection.arm("GET", JC).get_json() == body


def test_a_collection_made_through_asm_is_read_through_resource_manager(
        collection: Tenant) -> None:
    got = collection.arm("GET", group("cs1") + "/jc1").get_json()
    assert (got["name"], got["location"], got["properties"]["state"]) == (
        "jc1", "West Europe", "Enabled")
    suspended = collection_xml(state="Suspended")
    assert collection.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                           suspended).status_code == 202
    assert collection.arm("GET", group("cs1") + "/jc1").get_json()["properties"]["state"] == \
        "Suspended"


def test_disable_is_a_long_operation_that_disables_every_job_and_enable_undoes_it(
        arm_collection: Tenant) -> None:
    for name in ("a", "b"):
        assert arm_collection.arm("PUT", f"{JC}/jobs/{name}", arm_job()).status_code == 201
    disabled = arm_collection.arm("POST", f"{JC}/disable")
    assert disabled.status_code == 202
    assert disabled.headers["Retry-After"] == "1"
    poll = urlsplit(disabled.headers["Azure-AsyncOperation"])
    assert parse_qs(poll.query) == {"api-version": ["2016-03-01"]}
    status = arm_collection.client.get(f"{poll.path}?{poll.query}")
    assert status.status_code == 200 and status.get_json()["status"] == "Succeeded"
    assert arm_collection.arm("GET", JC).get_json()["properties"]["state"] == "Disabled"
    states = [j["properties"]["state"] for j in
              arm_collection.arm("GET", f"{JC}/jobs").get_json()["value"]]
    assert states == ["Disabled", "Disabled"]
    asm_jobs = arm_collection.call(
        "GET", "/cloudservices/rg1/resources/scheduler/~/jobcollections/jc1/jobs")
    assert [j["state"] for j in asm_jobs.get_json()] == ["disabled", "disabled"]
    assert arm_collection.arm("POST", f"{JC}/disable").status_code == 200  # nothing to do
    assert arm_collection.arm("POST", f"{JC}/enable").status_code == 202
    assert arm_collection.arm("GET", JC).get_json()["properties"]["state"] == "Enabled"
    assert {j["properties"]["state"] for j in
            arm_collection.arm("GET", f"{JC}/jobs").get_json()["value"]} == {"Enabled"}


def test_a_collection_put_disabled_disables_its_jobs(arm_collection: Tenant) -> None:
    assert arm_collection.arm("PUT", f"{JC}/jobs/a", arm_job()).status_code == 201
    put = arm_collection.arm("PUT", JC, collection_body(state="Disabled"))
    assert put.get_json()["properties"]["state"] == "Disabled"
    assert arm_collection.arm("GET", f"{JC}/jobs/a").get_json()["properties"]["state"] == \
        "Disabled"


def test_a_deleted_collection_is_gone_at_once_and_its_operation_succeeds(
        arm_collection: Tenant) -> None:
    deleted = arm_collection.arm("DELETE", JC)
    assert deleted.status_code == 202
    poll = urlsplit(deleted.headers["Azure-AsyncOperation"])
    assert arm_collection.client.get(f"{poll.path}?{poll.query}").get_json()["status"] == \
        "Succeeded"
    assert error_of(arm_collection.arm("GET", JC))["code"] == "ResourceNotFound"


def test_older_versions_answer_long_operations_when_they_are_done(
        arm_collection: Tenant) -> None:
    assert arm_collection.arm("PUT", f"{JC}/jobs/a", arm_job()).status_code == 201
    older = "api-version=2014-08-01-preview"
    disabled = arm_collection.arm("POST", f"{JC}/disable", version=older)
    assert disabled.status_code == 200 and "Azure-AsyncOperation" not in disabled.headers
    assert arm_collection.arm("GET", JC).get_json()["properties"]["state"] == "Disabled"
    assert arm_collection.arm("DELETE", JC, version=older).status_code == 200
    assert arm_collection.arm("GET", JC).status_code == 404


def test_a_collection_document_that_does_not_hold_is_a_400_naming_the_member(
        arm_collection: Tenant) -> None:
    cases = {
        "properties.sku.name": collection_body(sku={"name": "Gold"}),
        "properties.state": collection_body(state="Deleted"),
        "properties.quota.maxJobCount": collection_body(quota={"maxJobCount": 0}),
        "properties.quota.maxRecurrence.frequency": collection_body(
            quota={"maxRecurrence": {"frequency": "fortnight", "interval": 1}}),
        "tags": {**collection_body(), "tags": ["not", "a", "map"]},
        "name": {**collection_body(), "name": "another"},
    }
    for member, body in cases.items():
        answer = arm_collection.arm("PUT", JC, body)
        assert answer.status_code == 400, (member, answer.data)
        assert error_of(answer)["code"] == "BadRequest"
        assert error_of(answer)["message"].startswith(member), answer.data
    assert arm_collection.arm("GET", JC).get_json()["properties"]["sku"]["name"] == "Standard"
    no_group = arm_collection.arm("PUT", group("other") + "/jc1",
                                  {"properties": {"sku": {"name": "Standard"}}})
    assert no_group.status_code == 404
    assert arm_collection.arm("GET", f"/{PROVIDER}/jobCollections").get_json()["value"][0][
        "name"] == "jc1"


# --- jobs ----------------------------------------------------------------------------------

def test_a_job_reads_back_in_resource_managers_spelling_without_its_secrets(
        arm_collection: Tenant) -> None:
    put = arm_collection.arm("PUT", f"{JC}/jobs/nightly", arm_job())
    assert put.status_code == 201, put.data
    got = arm_collection.arm("GET", f"{JC}/jobs/nightly").get_json()
    assert put.get_json() == got
    assert (got["id"], got["type"], got["name"]) == (
        f"/subscriptions/{arm_collection.subscription_id}{JC}/jobs/nightly",
        "Microsoft.Scheduler/jobCollections/jobs", "jc1/nightly")
    properties = got["properties"]
    assert properties["action"]["type"] == "Http"
    assert properties["action"]["request"]["authentication"] == {"type": "Basic",
                                                                 "username": "u"}
    assert properties["action"]["request"]["headers"] == {"type": "kept as written"}
    assert properties["action"]["retryPolicy"] == {"retryType": "Fixed",
                                                   "retryInterval": "PT30S", "retryCount": 4}
    assert properties["action"]["errorAction"]["type"] == "StorageQueue"
    assert "sasToken" not in properties["action"]["errorAction"]["queueMessage"]
    assert properties["recurrence"]["frequency"] == "Month"
    assert properties["recurrence"]["schedule"]["monthlyOccurrences"] == [
        {"day": "Monday", "Occurrence": 1}]
    assert properties["state"] == "Enabled"
    assert properties["status"]["executionCount"] == 0
    assert "id" not in properties


def test_a_timespan_is_read_and_answered_as_an_iso_duration(arm_collection: Tenant) -> None:
    job = arm_job()
    job["properties"]["action"]["retryPolicy"]["retryInterval"] = "00:01:30"
    answer = arm_collection.arm("PUT", f"{JC}/jobs/j", job)
    assert answer.get_json()["properties"]["action"]["retryPolicy"]["retryInterval"] == "PT1M30S"


def test_a_job_made_through_asm_reads_through_resource_manager_with_its_extensions(
        collection: Tenant) -> None:
    asm_job = http_job(recurrence={"frequency": "minute", "interval": 30,
                                   "timeZone": "Europe/Paris"})
    asm_job["action"]["retryPolicy"] = {"retryType": "exponential", "retryInterval": "00:00:10",
                                        "retryCount": 3}
    assert collection.call("PUT", f"{JOBS}/ext", asm_job).status_code == 201
    got = collection.arm("GET", group("cs1") + "/jc1/jobs/ext").get_json()["properties"]
    assert got["recurrence"] == {"frequency": "Minute", "interval": 30,
                                 "timeZone": "Europe/Paris"}
    assert got["action"]["retryPolicy"] == {"retryType": "Exponential", "retryInterval": "PT10S",
                                            "retryCount": 3}
    asm_view = collection.call("GET", f"{JOBS}/ext").get_json()
    assert asm_view["state"] == "enabled" and got["state"] == "Enabled"
    assert collection.arm("DELETE", group("cs1") + "/jc1/jobs/ext").status_code == 200
    assert collection.call("GET", f"{JOBS}/ext").status_code == 404


def test_a_signed_job_shows_its_signature_but_never_its_secrets(
        arm_collection: Tenant) -> None:
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    previous = "whsec_" + base64.b64encode(b"p" * 24).decode()
    job = arm_job()
    job["properties"]["action"]["request"]["authentication"] = {
        "type": "Signature", "secret": secret, "previousSecret": previous}
    put = arm_collection.arm("PUT", f"{JC}/jobs/signed", job)
    assert put.status_code == 201, put.data
    for response in (put, arm_collection.arm("GET", f"{JC}/jobs/signed"),
                     arm_collection.arm("GET", f"{JC}/jobs")):
        text = response.get_data(as_text=True)
        assert secret[6:] not in text and previous[6:] not in text
    assert put.get_json()["properties"]["action"]["request"]["authentication"] == {
        "type": "Signature"}
    job["properties"]["action"]["request"]["authentication"]["secret"] = "whsec_short"
    refused = arm_collection.arm("PUT", f"{JC}/jobs/signed", job)
    assert refused.status_code == 400
    assert "action.request.authentication.secret" in error_of(refused)["message"]


def test_a_job_made_through_resource_manager_reads_through_asm(arm_collection: Tenant) -> None:
    assert arm_collection.arm("PUT", f"{JC}/jobs/j", arm_job()).status_code == 201
    asm_view = arm_collection.call(
        "GET", "/cloudservices/rg1/resources/scheduler/~/jobcollections/jc1/jobs/j").get_json()
    assert asm_view["recurrence"]["schedule"]["monthlyOccurrences"] == [
        {"day": "monday", "occurrence": 1}]
    assert asm_view["action"]["retryPolicy"]["retryInterval"] == "PT30S"


def test_a_patch_changes_only_what_it_names(arm_collection: Tenant) -> None:
    assert arm_collection.arm("PUT", f"{JC}/jobs/j", arm_job()).status_code == 201
    patched = arm_collection.arm("PATCH", f"{JC}/jobs/j", {"properties": {"state": "Disabled"}})
    assert patched.status_code == 200, patched.data
    properties = patched.get_json()["properties"]
    assert properties["state"] == "Disabled"
    assert properties["recurrence"]["schedule"]["monthlyOccurrences"] == [
        {"day": "Monday", "Occurrence": 1}]
    assert properties["action"]["request"]["authentication"]["username"] == "u"


def test_a_put_replaces_the_job_whole(arm_collection: Tenant) -> None:
    assert arm_collection.arm("PUT", f"{JC}/jobs/j", arm_job()).status_code == 201
    bare = arm_job()
    del bare["properties"]["action"]["retryPolicy"], bare["properties"]["action"]["errorAction"]
    replaced = arm_collection.arm("PUT", f"{JC}/jobs/j", bare)
    assert replaced.status_code == 200
    assert "errorAction" not in replaced.get_json()["properties"]["action"]


def test_a_run_answers_200_and_starts_an_execution(arm_collection: Tenant) -> None:
    assert arm_collection.arm("PUT", f"{JC}/jobs/j", arm_job()).status_code == 201
    run = arm_collection.arm("POST", f"{JC}/jobs/j/run")
    assert run.status_code == 200, run.data
    assert run.get_json()["trigger"] == "manual"
    executions = arm_collection.call(
        "GET", "/cloudservices/rg1/resources/scheduler/~/jobcollections/jc1/jobs/j/executions")
    assert [e["id"] for e in executions.get_json()] == [run.get_json()["id"]]


def test_jobs_are_listed_page_by_page_with_links_that_carry_the_query(
        arm_collection: Tenant) -> None:
    for number in range(5):
        state = "Disabled" if number % 2 else "Enabled"
        assert arm_collection.arm("PUT", f"{JC}/jobs/j{number}",
                                  arm_job(state=state)).status_code == 201
    seen: list[str] = []
    link: str | None = (f"/subscriptions/{arm_collection.subscription_id}{JC}/jobs"
                        f"?{V}&$top=2")
    while link:
        answer = arm_collection.client.get(link)
        assert answer.status_code == 200, answer.data
        body = answer.get_json()
        seen += [job["name"] for job in body["value"]]
        link = body["nextLink"]
        if link:
            query = parse_qs(urlsplit(link).query)
            assert query["api-version"] == ["2016-03-01"] and query["$top"] == ["2"]
            link = link.split("://", 1)[1].split("/", 1)[1].join(["/", ""])
    assert seen == [f"jc1/j{n}" for n in range(5)]
    filtered = arm_collection.arm("GET", f"{JC}/jobs?$filter=state eq 'Disabled'&$top=1")
    body = filtered.get_json()
    assert [job["name"] for job in body["value"]] == ["jc1/j1"]
    assert parse_qs(urlsplit(body["nextLink"]).query)["$filter"] == ["state eq 'Disabled'"]


def test_a_job_that_does_not_hold_is_a_400_naming_its_member(arm_collection: Tenant) -> None:
    bad = arm_job()
    bad["properties"]["action"]["request"]["uri"] = "not a uri"
    answer = arm_collection.arm("PUT", f"{JC}/jobs/bad", bad)
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["code"] == "BadRequest"
    assert error["message"].startswith("properties.action.request.uri")
    no_action = arm_collection.arm("PUT", f"{JC}/jobs/bad", {"properties": {}})
    assert error_of(no_action)["message"].startswith("properties.action: ")
    assert arm_collection.arm("PUT", f"{JC}/jobs/bad", {"state": "Enabled"}).status_code == 400
    assert arm_collection.arm("GET", f"{JC}/jobs/bad").status_code == 404


def test_a_full_collection_refuses_one_more_job_with_a_409_conflict(
        arm_collection: Tenant) -> None:
    assert arm_collection.arm("PUT", JC,
                              collection_body(quota={"maxJobCount": 1})).status_code == 200
    assert arm_collection.arm("PUT", f"{JC}/jobs/one", arm_job()).status_code == 201
    refused = arm_collection.arm("PUT", f"{JC}/jobs/two", arm_job())
    assert refused.status_code == 409
    assert error_of(refused)["code"] == "Conflict"


def test_a_missing_or_unknown_api_version_is_a_400_saying_so(arm_collection: Tenant) -> None:
    missing = arm_collection.arm("GET", JC, version=None)
    assert missing.status_code == 400
    assert error_of(missing)["code"] == "MissingApiVersionParameter"
    unknown = arm_collection.arm("GET", JC, version="api-version=2014-04-01")
    assert unknown.status_code == 400
    assert error_of(unknown)["code"] == "InvalidApiVersionParameter"


# --- who may call --------------------------------------------------------------------------

def test_without_a_certificate_or_token_the_answer_is_401_with_a_bearer_challenge(
        app: Flask, arm_collection: Tenant) -> None:
    anonymous = app.test_client().get(
        f"/subscriptions/{arm_collection.subscription_id}{JC}?{V}")
    assert anonymous.status_code == 401
    assert error_of(anonymous)["code"] == "AuthenticationFailed"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    wrong = app.test_client().get(f"/subscriptions/{arm_collection.subscription_id}{JC}?{V}",
                                  headers={"Authorization": "Bearer made-up"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_another_tenants_certificate_gets_403_authorization_failed(
        arm_collection: Tenant, other_tenant: Tenant) -> None:
    answer = other_tenant.client.get(
        f"/subscriptions/{arm_collection.subscription_id}{JC}?{V}")
    assert answer.status_code == 403
    assert error_of(answer)["code"] == "AuthorizationFailed"


def issued_token(app: Flask, client_id: str, secret: str) -> str:
    """A token from the service's own token endpoint."""
    answer = app.test_client().post("/any-tenant/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
        "scope": "https://management.azure.com/.default"})
    assert answer.status_code == 200, answer.data
    token: str = answer.get_json()["access_token"]
    return token


def test_a_service_principals_token_works_on_its_subscription_only_until_it_is_deleted(
        app: Flask, db: Database, clock: FrozenClock, arm_collection: Tenant,
        other_tenant: Tenant) -> None:
    with db.transaction() as session:
        principal = create_principal(session, arm_collection.subscription_id, "deployer",
                                     clock.now())
    token = issued_token(app, principal.client_id, principal.secret)
    bearer = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    own = client.get(f"/subscriptions/{arm_collection.subscription_id}{JC}?{V}", headers=bearer)
    assert own.status_code == 200
    made = client.put(f"/subscriptions/{arm_collection.subscription_id}{JC}/jobs/j?{V}",
                      json=arm_job(), headers=bearer)
    assert made.status_code == 201
    elsewhere = client.get(f"/subscriptions/{other_tenant.subscription_id}/{PROVIDER}/"
                           f"jobCollections?{V}", headers=bearer)
    assert elsewhere.status_code == 403
    assert error_of(elsewhere)["code"] == "AuthorizationFailed"
    clock.advance(timedelta(minutes=59))
    assert client.get(f"/subscriptions/{arm_collection.subscription_id}{JC}?{V}",
                      headers=bearer).status_code == 200
    with db.transaction() as session:
        delete_principal(session, arm_collection.subscription_id, principal.client_id)
    revoked = client.get(f"/subscriptions/{arm_collection.subscription_id}{JC}?{V}",
                         headers=bearer)
    assert revoked.status_code == 401
    assert error_of(revoked)["code"] == "AuthenticationFailed"


def test_a_token_expires_after_an_hour(app: Flask, db: Database, clock: FrozenClock,
                                       arm_collection: Tenant) -> None:
    with db.transaction() as session:
        principal = create_principal(session, arm_collection.subscription_id, "ci",
                                     clock.now())
    token = issued_token(app, principal.client_id, principal.secret)
    bearer = {"Authorization": f"Bearer {token}"}
    clock.advance(timedelta(hours=1, seconds=1))
    expired = app.test_client().get(f"/subscriptions/{arm_collection.subscription_id}{JC}?{V}",
                                    headers=bearer)
    assert expired.status_code == 401


# --- the nodes a job runs on ---------------------------------------------------------------

def test_a_resource_manager_job_with_a_bad_run_on_gets_400_naming_it(
        arm_collection: Tenant, db: Database) -> None:
    response = arm_collection.arm("PUT", f"{JC}/jobs/j", arm_job(runOn=["a", "A"]))
    assert response.status_code == 400, response.data
    assert "runOn.1: names A again" in response.get_data(as_text=True)
    with db.snapshot() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_run_on_is_carried_by_the_resource_manager_api(arm_collection: Tenant) -> None:
    put = arm_collection.arm("PUT", f"{JC}/jobs/j", arm_job(runOn=["Rack-2"]))
    assert put.status_code in (200, 201), put.data
    assert put.get_json()["properties"]["runOn"] == ["rack-2"]
    got = arm_collection.arm("GET", f"{JC}/jobs/j").get_json()
    assert got["properties"]["runOn"] == ["rack-2"]
    run = arm_collection.arm("POST", f"{JC}/jobs/j/run")
    assert run.status_code == 200, run.data
    assert (run.get_json()["runOn"], run.get_json()["waitingForNodes"]) == (["rack-2"], True)
