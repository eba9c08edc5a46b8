"""Wire compatibility: the PyPI client `azure-mgmt-scheduler` 7.0.0, unmodified, against a
real `scheduler serve` over its Resource Manager API.

Each lifecycle runs twice: authenticated by the management certificate over TLS (no bearer
token at all), and by a service principal's secret exchanged for a token at the service's
own authority by azure-identity's `ClientSecretCredential`. Every answer is read by the
client itself, so a member the service names otherwise shows up as None. The tests share one
server, each as a subscription of its own; a job made through one API is read, fired and
deleted through the other, and through the legacy ASM client.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.common import AzureMissingResourceHttpError  # type: ignore[import-untyped]
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.identity import ClientSecretCredential
from azure.mgmt.scheduler import SchedulerManagementClient
from azure.mgmt.scheduler import models as m
from azure.servicemanagement import SchedulerManagementService  # type: ignore[import-untyped]

from tests.e2e.support import BIN, ServerProcess, as_new_subscription, wait_for
from tests.engine.harness import Receiver

REGION = "South Central US"
# The engine calls the receiver on loopback, which outbound calls refuse unless allowed.
SERVER_ENV = {"SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true"}
# How long a job may take to fire or a run to finish: the wait ends as soon as it has, and
# only bounds a failing test on a busy machine.
PATIENCE = 60
AUTHENTICATIONS = ("certificate", "service principal")
# The client as the tests hold it: 7.0.0's type comments are not what it does (a list is
# typed as an iterable of its pages, an operation given `cls=` as returning the model, every
# member read back as optional), so its answers are read as Any.
ArmClient = Any
# Variables that would make a client trust a CA, or use a proxy, without being told.
AMBIENT_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "HTTPS_PROXY",
                     "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


# --- servers, principals and clients -------------------------------------------------------

@pytest.fixture(scope="module")
def arm_server(shared_server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """The module's one server, whose engine may call a receiver on loopback."""
    return shared_server_factory(SERVER_ENV)


@pytest.fixture
def tenant(arm_server: ServerProcess, tmp_path: Path) -> ServerProcess:
    """The module's server as a subscription of the test's own sees it."""
    return as_new_subscription(arm_server, tmp_path)


@pytest.fixture(autouse=True)
def no_ambient_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing but the `connection_verify=` a test passes tells a client whom to trust."""
    for name in AMBIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class Principal:
    """A service principal as `scheduler principals create` printed it."""

    client_id: str
    secret: str
    authority: str


def scheduler_command(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a `scheduler` server command on the server's home; it must succeed."""
    done = subprocess.run([str(BIN), *args, "--home", str(server.home)], capture_output=True,
                          text=True, env=server.env, check=False, timeout=PATIENCE)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def create_principal(server: ServerProcess, name: str = "deployer") -> Principal:
    """A new service principal of the server's subscription, made by the CLI."""
    made = json.loads(scheduler_command(
        server, "principals", "create", "--subscription", server.subscription_id,
        "--name", name, "--output", "json").stdout)
    assert made["subscriptionId"] == server.subscription_id
    # The authority it tells users to give is this server, by a name its certificate holds.
    authority = urlsplit(made["authority"])
    assert (authority.scheme, authority.hostname, authority.port) in {
        ("https", host, server.port) for host in ("127.0.0.1", "localhost")}
    return Principal(made["clientId"], made["clientSecret"], made["authority"])


def delete_principal(server: ServerProcess, principal: Principal) -> None:
    """Delete a service principal with the CLI."""
    scheduler_command(server, "principals", "delete", "--subscription", server.subscription_id,
                      principal.client_id)


def ca_file(server: ServerProcess) -> str:
    """The home CA's certificate, which signed the server's."""
    return str(server.info["caCert"])


class NoToken:
    """A credential that is never asked: with the management certificate, the client sends
    no bearer token."""

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        """Fail: a certificate client has no bearer policy that could call this."""
        raise AssertionError("the management certificate authenticates; no token is asked")


def certificate_client(server: ServerProcess) -> SchedulerManagementClient:
    """The client authenticated by the admin certificate (and key, one PEM) over TLS."""
    return SchedulerManagementClient(
        NoToken(), server.subscription_id, base_url=server.base_url,
        connection_verify=ca_file(server), connection_cert=str(server.info["clientCert"]),
        authentication_policy=SansIOHTTPPolicy())


def secret_credential(server: ServerProcess, principal: Principal) -> ClientSecretCredential:
    """Stock azure-identity, getting its tokens from the service's own authority."""
    return ClientSecretCredential(
        server.subscription_id, principal.client_id, principal.secret,
        authority=server.base_url, disable_instance_discovery=True,
        connection_verify=ca_file(server))


def principal_client(server: ServerProcess, principal: Principal) -> SchedulerManagementClient:
    """The client authenticated by a bearer token for the service principal's secret; it
    presents no client certificate."""
    return SchedulerManagementClient(
        secret_credential(server, principal), server.subscription_id,
        base_url=server.base_url, connection_verify=ca_file(server))


@pytest.fixture(params=AUTHENTICATIONS)
def arm(request: pytest.FixtureRequest, tenant: ServerProcess) -> Iterator[ArmClient]:
    """The ARM client of the test's subscription, authenticated each way in turn."""
    if request.param == "certificate":
        client = certificate_client(tenant)
    else:
        client = principal_client(tenant, create_principal(tenant))
    with client:
        yield client


@pytest.fixture
def legacy(tenant: ServerProcess, monkeypatch: pytest.MonkeyPatch
           ) -> SchedulerManagementService:
    """The legacy ASM client, which trusts the CA the environment names."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file(tenant))
    monkeypatch.setenv("SSL_CERT_FILE", ca_file(tenant))
    return SchedulerManagementService(subscription_id=tenant.subscription_id,
                                      cert_file=str(tenant.info["clientCert"]),
                                      host=f"127.0.0.1:{tenant.port}")


# --- documents -----------------------------------------------------------------------------

def collection(sku: str = "Standard", max_job_count: int | None = None,
               tags: dict[str, str] | None = None) -> m.JobCollectionDefinition:
    """A collection document in the region; a quota only if a job count is given."""
    quota = None
    if max_job_count is not None:
        quota = m.JobCollectionQuota(
            max_job_count=max_job_count,
            max_recurrence=m.JobMaxRecurrence(frequency=m.RecurrenceFrequency.MINUTE,
                                              interval=1))
    return m.JobCollectionDefinition(
        location=REGION, tags=tags,
        properties=m.JobCollectionProperties(sku=m.Sku(name=sku), quota=quota))


def tomorrow() -> datetime:
    """A start no test waits for: the engine leaves such a job alone."""
    return (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)


def http_job(uri: str, start: datetime | None = None, state: str = m.JobState.ENABLED
             ) -> m.JobDefinition:
    """A job that POSTs `ping` to `uri`, once, not retried."""
    return m.JobDefinition(properties=m.JobProperties(
        start_time=start or tomorrow(), state=state,
        action=m.JobAction(
            type=m.JobActionType.HTTP,
            request=m.HttpRequest(uri=uri, method="POST", body="ping",
                                  headers={"Content-Type": "text/plain"}),
            retry_policy=m.RetryPolicy(retry_type=m.RetryType.NONE))))


def full_job(uri: str, start: datetime) -> m.JobDefinition:
    """A job with every part the client can set: Basic authentication, a fixed retry
    policy, a storage-queue error action, and a monthly recurrence on the first Monday and
    the last Friday at 09:00 and 09:30."""
    return m.JobDefinition(properties=m.JobProperties(
        start_time=start, state=m.JobState.ENABLED,
        action=m.JobAction(
            type=m.JobActionType.HTTP,
            request=m.HttpRequest(
                uri=uri, method="POST", body="full", headers={"X-Team": "ops"},
                authentication=m.BasicAuthentication(username="u", password="p")),
            retry_policy=m.RetryPolicy(retry_type=m.RetryType.FIXED,
                                       retry_interval=timedelta(seconds=30), retry_count=4),
            error_action=m.JobErrorAction(
                type=m.JobActionType.STORAGE_QUEUE,
                queue_message=m.StorageQueueMessage(
                    storage_account="account", queue_name="failures", sas_token="?sv=x",
                    message="it failed"))),
        recurrence=m.JobRecurrence(
            frequency=m.RecurrenceFrequency.MONTH, interval=1, count=12,
            schedule=m.JobRecurrenceSchedule(
                hours=[9], minutes=[0, 30],
                monthly_occurrences=[
                    m.JobRecurrenceScheduleMonthlyOccurrence(day=m.JobScheduleDay.MONDAY,
                                                             occurrence=1),
                    m.JobRecurrenceScheduleMonthlyOccurrence(day=m.JobScheduleDay.FRIDAY,
                                                             occurrence=-1)]))))


def with_status(pipeline_response: PipelineResponse[Any, Any], deserialized: Any,
                _headers: Any) -> tuple[int, Any]:
    """A `cls=` for an operation: its HTTP status with what the client read."""
    return pipeline_response.http_response.status_code, deserialized


def with_date(pipeline_response: PipelineResponse[Any, Any], deserialized: Any,
              _headers: Any) -> tuple[datetime, Any]:
    """A `cls=` for an operation: the server's clock (its `Date` header) with what the
    client read."""
    return parsedate_to_datetime(pipeline_response.http_response.headers["Date"]), deserialized


def names(items: Any) -> list[str]:
    """The names of listed resources, in order."""
    return [item.name for item in items]


def history_of(arm: ArmClient, group: str, collection_name: str, job: str,
               **query: Any) -> list[Any]:
    """A job's history through the client, every page."""
    return list(arm.jobs.list_job_history(group, collection_name, job, **query))


def wait_for_history(arm: ArmClient, group: str, collection_name: str,
                     job: str, count: int) -> list[Any]:
    """A job's history once it has `count` entries."""
    assert wait_for(lambda: len(history_of(arm, group, collection_name, job)) >= count,
                    PATIENCE), f"{job} has no {count} history entries"
    return history_of(arm, group, collection_name, job)


# --- job collections -----------------------------------------------------------------------

def test_collection_is_created_read_listed_patched_disabled_enabled_and_deleted(
    arm: ArmClient, receiver: Receiver,
) -> None:
    status, made = arm.job_collections.create_or_update(
        "rg1", "jc1", collection(max_job_count=10, tags={"env": "test"}), cls=with_status)
    assert status == 201
    assert made.id.endswith("/resourceGroups/rg1/providers/Microsoft.Scheduler/"
                            "jobCollections/jc1")
    assert (made.type, made.name, made.location) == (
        "Microsoft.Scheduler/jobCollections", "jc1", REGION)
    assert made.tags == {"env": "test"}
    assert made.properties.sku.name == m.SkuDefinition.STANDARD
    assert made.properties.state == m.JobCollectionState.ENABLED
    assert made.properties.quota.max_job_count == 10
    assert made.properties.quota.max_recurrence.frequency == m.RecurrenceFrequency.MINUTE
    assert made.properties.quota.max_recurrence.interval == 1

    status, replaced = arm.job_collections.create_or_update(
        "rg1", "jc1", collection(max_job_count=10, tags={"env": "test"}), cls=with_status)
    assert status == 200
    assert replaced.as_dict() == made.as_dict()
    assert arm.job_collections.get("rg1", "jc1").as_dict() == made.as_dict()

    arm.job_collections.create_or_update("rg2", "jc2", collection(sku="Free"))
    assert names(arm.job_collections.list_by_resource_group("rg1")) == ["jc1"]
    assert sorted(names(arm.job_collections.list_by_subscription())) == ["jc1", "jc2"]
    assert arm.job_collections.get("rg2", "jc2").properties.sku.name == m.SkuDefinition.FREE

    patched = arm.job_collections.patch("rg1", "jc1", m.JobCollectionDefinition(
        tags={"env": "prod"}))
    assert patched.tags == {"env": "prod"}
    assert patched.properties.quota.max_job_count == 10  # what the patch left out is kept

    arm.jobs.create_or_update("rg1", "jc1", "job1", http_job(receiver.url("/ping")))
    arm.job_collections.begin_disable("rg1", "jc1").result()
    assert arm.job_collections.get("rg1", "jc1").properties.state == \
        m.JobCollectionState.DISABLED
    assert arm.jobs.get("rg1", "jc1", "job1").properties.state == m.JobState.DISABLED

    arm.job_collections.begin_enable("rg1", "jc1").result()
    assert arm.job_collections.get("rg1", "jc1").properties.state == \
        m.JobCollectionState.ENABLED
    assert arm.jobs.get("rg1", "jc1", "job1").properties.state == m.JobState.ENABLED

    arm.job_collections.begin_delete("rg1", "jc1").result()
    with pytest.raises(ResourceNotFoundError) as caught:
        arm.job_collections.get("rg1", "jc1")
    assert caught.value.status_code == 404
    with pytest.raises(ResourceNotFoundError):
        arm.jobs.get("rg1", "jc1", "job1")
    assert names(arm.job_collections.list_by_resource_group("rg1")) == []
    assert names(arm.job_collections.list_by_subscription()) == ["jc2"]


def test_missing_group_collection_and_job_raise_resource_not_found(
    arm: ArmClient,
) -> None:
    with pytest.raises(ResourceNotFoundError):
        arm.job_collections.get("nowhere", "jc1")
    with pytest.raises(ResourceNotFoundError):
        list(arm.job_collections.list_by_resource_group("nowhere"))
    arm.job_collections.create_or_update("rg1", "jc1", collection())
    with pytest.raises(ResourceNotFoundError):
        arm.job_collections.get("rg1", "other")
    with pytest.raises(ResourceNotFoundError) as caught:
        arm.jobs.get("rg1", "jc1", "ghost")
    assert caught.value.error is not None and caught.value.error.code
    with pytest.raises(ResourceNotFoundError):
        arm.jobs.delete("rg1", "jc1", "ghost")
    with pytest.raises(ResourceNotFoundError):
        arm.jobs.run("rg1", "jc1", "ghost")


# --- jobs ----------------------------------------------------------------------------------

def test_job_is_created_read_patched_run_and_deleted_with_every_part_read_back(
    arm: ArmClient, receiver: Receiver,
) -> None:
    arm.job_collections.create_or_update("rg1", "jc1", collection())
    start = tomorrow()
    sent = full_job(receiver.url("/full"), start)
    status, made = arm.jobs.create_or_update("rg1", "jc1", "full", sent, cls=with_status)
    assert status == 201
    assert made.id.endswith("/jobCollections/jc1/jobs/full")
    assert (made.type, made.name) == ("Microsoft.Scheduler/jobCollections/jobs", "jc1/full")

    job = arm.jobs.get("rg1", "jc1", "full")
    assert job.as_dict() == made.as_dict()
    properties = job.properties
    assert properties.start_time == start
    assert properties.state == m.JobState.ENABLED
    action = properties.action
    assert action.type == m.JobActionType.HTTP
    assert (action.request.uri, action.request.method, action.request.body) == (
        receiver.url("/full"), "POST", "full")
    assert action.request.headers == {"X-Team": "ops"}
    assert isinstance(action.request.authentication, m.BasicAuthentication)
    assert action.request.authentication.username == "u"
    assert action.request.authentication.password is None  # a secret is never echoed
    assert action.retry_policy.retry_type == m.RetryType.FIXED
    assert action.retry_policy.retry_interval == timedelta(seconds=30)
    assert action.retry_policy.retry_count == 4
    error = action.error_action
    assert error.type == m.JobActionType.STORAGE_QUEUE
    assert (error.queue_message.storage_account, error.queue_message.queue_name,
            error.queue_message.message) == ("account", "failures", "it failed")
    assert error.queue_message.sas_token is None
    recurrence = properties.recurrence
    assert (recurrence.frequency, recurrence.interval, recurrence.count) == (
        m.RecurrenceFrequency.MONTH, 1, 12)
    assert recurrence.schedule.hours == [9] and recurrence.schedule.minutes == [0, 30]
    assert [(o.day, o.occurrence) for o in recurrence.schedule.monthly_occurrences] == [
        (m.JobScheduleDay.MONDAY, 1), (m.JobScheduleDay.FRIDAY, -1)]
    assert properties.status.execution_count == 0
    assert properties.status.next_execution_time is not None

    status, _ = arm.jobs.create_or_update("rg1", "jc1", "full", sent, cls=with_status)
    assert status == 200

    arm.jobs.run("rg1", "jc1", "full")
    [entry] = wait_for_history(arm, "rg1", "jc1", "full", 1)
    assert entry.type == "Microsoft.Scheduler/jobCollections/jobs/history"
    assert entry.name.startswith("jc1/full/")
    assert entry.id.startswith(job.id + "/history/")
    assert entry.properties.status == m.JobExecutionStatus.COMPLETED
    assert entry.properties.action_name == m.JobHistoryActionName.MAIN_ACTION
    assert entry.properties.retry_count == 0
    assert entry.properties.start_time <= entry.properties.end_time
    [call] = receiver.requests
    assert (call.method, call.path, call.body) == ("POST", "/full", b"full")
    assert call.header("Authorization") == "Basic dTpw"  # u:p, sent though never shown
    assert call.header("X-Team") == "ops"

    patched = arm.jobs.patch("rg1", "jc1", "full", m.JobDefinition(
        properties=m.JobProperties(state=m.JobState.DISABLED)))
    assert patched.properties.state == m.JobState.DISABLED
    assert patched.properties.recurrence.schedule.monthly_occurrences[1].occurrence == -1
    assert patched.properties.action.retry_policy.retry_count == 4
    assert arm.jobs.get("rg1", "jc1", "full").properties.state == m.JobState.DISABLED

    arm.jobs.delete("rg1", "jc1", "full")
    with pytest.raises(ResourceNotFoundError):
        arm.jobs.get("rg1", "jc1", "full")
    with pytest.raises(ResourceNotFoundError):
        history_of(arm, "rg1", "jc1", "full")
    with pytest.raises(ResourceNotFoundError):
        arm.jobs.delete("rg1", "jc1", "full")


def test_jobs_and_history_are_listed_in_pages_and_filtered(
    arm: ArmClient, receiver: Receiver,
) -> None:
    arm.job_collections.create_or_update("rg1", "jc1", collection())
    disabled = ["job1", "job3"]
    for index in range(5):
        job_id = f"job{index}"
        state = m.JobState.DISABLED if job_id in disabled else m.JobState.ENABLED
        arm.jobs.create_or_update("rg1", "jc1", job_id, http_job(receiver.url("/"), state=state))

    everything = arm.jobs.list("rg1", "jc1", top=2)
    pages = [names(page) for page in everything.by_page()]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(name for page in pages for name in page) == [f"jc1/job{i}" for i in range(5)]
    assert sorted(names(arm.jobs.list("rg1", "jc1"))) == [f"jc1/job{i}" for i in range(5)]

    only_disabled = arm.jobs.list("rg1", "jc1", filter="state eq 'Disabled'")
    assert sorted(names(only_disabled)) == ["jc1/job1", "jc1/job3"]
    # The filter rides on the next page's link: a page of one, then the other.
    paged_disabled = arm.jobs.list("rg1", "jc1", top=1, filter="state eq 'Disabled'")
    assert sorted(name for page in paged_disabled.by_page() for name in names(page)) == [
        "jc1/job1", "jc1/job3"]
    assert all(job.properties.state == m.JobState.DISABLED
               for job in arm.jobs.list("rg1", "jc1", filter="state eq 'Disabled'"))

    receiver.answers["/down"] = (500, {}, b"down")
    arm.jobs.create_or_update("rg1", "jc1", "flaky", http_job(receiver.url("/up")))
    arm.jobs.run("rg1", "jc1", "flaky")
    wait_for_history(arm, "rg1", "jc1", "flaky", 1)
    arm.jobs.patch("rg1", "jc1", "flaky", m.JobDefinition(properties=m.JobProperties(
        action=m.JobAction(type=m.JobActionType.HTTP,
                           request=m.HttpRequest(uri=receiver.url("/down"), method="POST"),
                           retry_policy=m.RetryPolicy(retry_type=m.RetryType.NONE)))))
    arm.jobs.run("rg1", "jc1", "flaky")
    wait_for_history(arm, "rg1", "jc1", "flaky", 2)
    arm.jobs.run("rg1", "jc1", "flaky")
    history = wait_for_history(arm, "rg1", "jc1", "flaky", 3)

    assert [entry.properties.status for entry in history] == [
        m.JobExecutionStatus.FAILED, m.JobExecutionStatus.FAILED,
        m.JobExecutionStatus.COMPLETED]  # newest first
    history_pages = [names(page) for page in
                     arm.jobs.list_job_history("rg1", "jc1", "flaky", top=2).by_page()]
    assert history_pages == [names(history[:2]), names(history[2:])]
    failed = history_of(arm, "rg1", "jc1", "flaky", filter="status eq 'Failed'")
    assert names(failed) == names(history[:2])
    completed = history_of(arm, "rg1", "jc1", "flaky", filter="status eq 'Completed'")
    assert names(completed) == names(history[2:])


def test_second_job_over_a_collection_quota_raises_resource_exists(
    arm: ArmClient, receiver: Receiver,
) -> None:
    arm.job_collections.create_or_update("rg1", "jc1", collection(max_job_count=1))
    arm.jobs.create_or_update("rg1", "jc1", "first", http_job(receiver.url("/")))
    with pytest.raises(ResourceExistsError) as caught:
        arm.jobs.create_or_update("rg1", "jc1", "second", http_job(receiver.url("/")))
    assert caught.value.status_code == 409
    assert caught.value.error is not None and caught.value.error.code
    assert names(arm.jobs.list("rg1", "jc1")) == ["jc1/first"]


def test_bad_job_raises_http_response_error_with_its_code_and_field(
    arm: ArmClient,
) -> None:
    arm.job_collections.create_or_update("rg1", "jc1", collection())
    with pytest.raises(HttpResponseError) as caught:
        arm.jobs.create_or_update("rg1", "jc1", "bad", http_job("not a uri"))
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "BadRequest"
    assert "uri" in caught.value.message
    with pytest.raises(ResourceNotFoundError):
        arm.jobs.get("rg1", "jc1", "bad")


# --- service principals --------------------------------------------------------------------

def test_revoked_principal_raises_client_authentication_error(tenant: ServerProcess) -> None:
    principal = create_principal(tenant)
    arm: ArmClient
    with principal_client(tenant, principal) as arm:
        arm.job_collections.create_or_update("rg1", "jc1", collection())
        assert names(arm.job_collections.list_by_subscription()) == ["jc1"]

        delete_principal(tenant, principal)
        with pytest.raises(ClientAuthenticationError) as caught:  # with its cached token
            arm.job_collections.get("rg1", "jc1")
    assert caught.value.status_code == 401
    with pytest.raises(ClientAuthenticationError):  # no new token either
        secret_credential(tenant, principal).get_token("https://management.azure.com/.default")
    with certificate_client(tenant) as admin:  # the collection is still there
        assert admin.job_collections.get("rg1", "jc1").name == "jc1"


def test_principal_acts_on_its_own_subscription_only(
    arm_server: ServerProcess, tenant: ServerProcess,
) -> None:
    principal = create_principal(tenant)
    elsewhere = SchedulerManagementClient(
        secret_credential(tenant, principal), arm_server.subscription_id,
        base_url=tenant.base_url, connection_verify=ca_file(tenant))
    with elsewhere, pytest.raises(HttpResponseError) as caught:
        list(elsewhere.job_collections.list_by_subscription())
    assert caught.value.status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "AuthorizationFailed"


# --- one store, two APIs -------------------------------------------------------------------

def asm_history_path(server: ServerProcess, cloud_service: str, collection_name: str,
                     job: str) -> str:
    """The ASM path of a job's history (JSON)."""
    return (f"/{server.subscription_id}/cloudservices/{cloud_service}/resources/scheduler/~/"
            f"jobcollections/{collection_name}/jobs/{job}/history")


def asm_history(server: ServerProcess, path: str) -> list[dict[str, Any]]:
    """A job's history through the ASM API, read with the management certificate."""
    with requests.Session() as session:
        session.trust_env = False
        answer = session.get(server.base_url + path, verify=ca_file(server),
                             cert=str(server.info["clientCert"]), timeout=PATIENCE)
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()
    return entries


def same_entry(arm_entry: Any, asm_entry: dict[str, Any]) -> bool:
    """Whether an ARM history entry and an ASM one tell the same run."""
    properties = arm_entry.properties
    return bool(parse_time(asm_entry["startTime"]) == properties.start_time
            and parse_time(asm_entry["endTime"]) == properties.end_time
            and asm_entry["status"].lower() == properties.status.lower()
            and asm_entry["actionName"] == properties.action_name
            and asm_entry["message"] == properties.message
            and asm_entry["retryCount"] == properties.retry_count
            and asm_entry["repeatCount"] == properties.repeat_count)


def parse_time(text: str) -> datetime:
    """A time as the ASM API writes it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_job_made_through_arm_is_fired_by_the_engine_and_seen_through_asm_and_legacy_client(
    tenant: ServerProcess, legacy: SchedulerManagementService, receiver: Receiver,
) -> None:
    arm: ArmClient
    with certificate_client(tenant) as arm:
        server_now, _ = arm.job_collections.create_or_update("cs1", "jc1", collection(),
                                                             cls=with_date)
        due = server_now + timedelta(seconds=2)
        arm.jobs.create_or_update("cs1", "jc1", "soon", http_job(receiver.url("/fired"), due))
        [arm_entry] = wait_for_history(arm, "cs1", "jc1", "soon", 1)
        arm_job = arm.jobs.get("cs1", "jc1", "soon").properties

    assert arm_entry.properties.status == m.JobExecutionStatus.COMPLETED
    assert arm_entry.properties.start_time >= due
    assert arm_entry.properties.expected_execution_time == due
    [call] = receiver.requests
    assert call.header("x-ms-scheduler-jobid") == "soon" and call.body == b"ping"
    assert arm_job.status.execution_count == 1
    assert arm_job.state == m.JobState.COMPLETED  # a one-shot job, done

    path = asm_history_path(tenant, "cs1", "jc1", "soon")
    [asm_entry] = asm_history(tenant, path)
    assert asm_entry["jobId"] == "soon"
    assert same_entry(arm_entry, asm_entry)

    # The legacy client sees the group as a cloud service holding the collection, and the
    # job and its history as the ASM API gives them.
    [service] = legacy.list_cloud_services()
    assert (service.name, service.geo_region) == ("cs1", REGION)
    assert [r.name for r in service.resources] == ["jc1"]
    legacy_job = legacy.get_job("cs1", "jc1", "soon")
    assert legacy_job["status"]["executionCount"] == 1
    assert parse_time(legacy_job["status"]["lastExecutionTime"]) == \
        arm_job.status.last_execution_time
    legacy_history = json.loads(legacy.perform_get(path + "?api-version=2014-04-01").body)
    assert legacy_history == [asm_entry]


def wait(legacy: SchedulerManagementService, started: Any) -> None:
    """Wait for an ASM operation with the legacy client's own loop, which raises unless it
    succeeds."""
    legacy.wait_for_operation_status(started.request_id, wait_for_status="Succeeded",
                                     timeout=PATIENCE, sleep_interval=0.2,
                                     progress_callback=None, success_callback=None)


def test_job_made_through_asm_is_read_and_deleted_through_arm(
    tenant: ServerProcess, legacy: SchedulerManagementService,
) -> None:
    wait(legacy, legacy.create_cloud_service("cs2", "label", "description", REGION))
    wait(legacy, legacy.create_job_collection("cs2", "jc2", "Standard"))
    start = tomorrow()
    legacy.create_job("cs2", "jc2", "asm-made", {
        "startTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": {"type": "http", "request": {"uri": "http://example.com/ping",
                                               "method": "PUT", "body": "hello"},
                   "retryPolicy": {"retryType": "fixed", "retryInterval": "00:01:00",
                                   "retryCount": 2}},
        "recurrence": {"frequency": "month", "interval": 1, "schedule": {
            "monthlyOccurrences": [{"day": "tuesday", "occurrence": 2}],
            "hours": [8], "minutes": [15]}}})

    arm: ArmClient
    with certificate_client(tenant) as arm:
        made = arm.job_collections.get("cs2", "jc2")
        assert (made.location, made.properties.sku.name) == (REGION, m.SkuDefinition.STANDARD)
        assert names(arm.jobs.list("cs2", "jc2")) == ["jc2/asm-made"]
        job = arm.jobs.get("cs2", "jc2", "asm-made").properties
        assert job.start_time == start
        assert job.state == m.JobState.ENABLED
        assert (job.action.type, job.action.request.method, job.action.request.uri) == (
            m.JobActionType.HTTP, "PUT", "http://example.com/ping")
        assert job.action.retry_policy.retry_type == m.RetryType.FIXED
        assert job.action.retry_policy.retry_interval == timedelta(minutes=1)
        assert job.recurrence.frequency == m.RecurrenceFrequency.MONTH
        [occurrence] = job.recurrence.schedule.monthly_occurrences
        assert (occurrence.day, occurrence.occurrence) == (m.JobScheduleDay.TUESDAY, 2)

        arm.jobs.delete("cs2", "jc2", "asm-made")
        with pytest.raises(AzureMissingResourceHttpError):
            legacy.get_job("cs2", "jc2", "asm-made")
        assert legacy.get_all_jobs("cs2", "jc2") == []

        arm.job_collections.begin_delete("cs2", "jc2").result()
        with pytest.raises(AzureMissingResourceHttpError):
            legacy.get_job_collection("cs2", "jc2")
