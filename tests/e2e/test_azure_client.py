"""Wire compatibility: the PyPI client `azure-servicemanagement-legacy` against a real server.

Every answer below is parsed by the client itself (its minidom models for XML, `json.loads`
for jobs), so an element the service names differently from Azure shows up as an empty field.
The tests share one server, each as a subscription of its own: what one makes, no other sees.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.common import AzureConflictHttpError, AzureHttpError, AzureMissingResourceHttpError
from azure.servicemanagement import SchedulerManagementService, ServiceManagementService

from scheduler.security import pki
from tests.e2e.support import ServerProcess

REGION = "South Central US"
# How long the client's loop waits for an operation: it ends as soon as the operation does,
# and only bounds a failing test.
OPERATION_PATIENCE = 60


# --- fixtures and helpers ------------------------------------------------------------------

@pytest.fixture
def server(own_subscription: ServerProcess) -> ServerProcess:
    """The module's shared server, as a subscription of the test's own sees it."""
    return own_subscription


@pytest.fixture
def ca_environment(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's requests session trusts the CA named by the environment."""
    ca = str(server.info["caCert"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def client_kwargs(server: ServerProcess, cert_file: str | None = None) -> dict[str, Any]:
    """How a user points the client at this service."""
    return {
        "subscription_id": server.subscription_id,
        "cert_file": cert_file or str(server.info["clientCert"]),
        "host": f"127.0.0.1:{server.port}",
    }


@pytest.fixture
def sms(server: ServerProcess, ca_environment: None) -> SchedulerManagementService:
    """The scheduler client, authenticated with the admin certificate."""
    return SchedulerManagementService(**client_kwargs(server))


@pytest.fixture
def asm(server: ServerProcess, ca_environment: None) -> ServiceManagementService:
    """The general service management client (operations, certificates)."""
    return ServiceManagementService(**client_kwargs(server))


def wait(client: Any, request_id: str) -> Any:
    """Wait for an operation with the client's own loop; it raises on failure or timeout."""
    assert request_id, "the 202 carried no x-ms-request-id"
    return client.wait_for_operation_status(
        request_id, wait_for_status="Succeeded", timeout=OPERATION_PATIENCE, sleep_interval=0.2,
        progress_callback=None, success_callback=None,
    )


def make_cloud_service(client: SchedulerManagementService, name: str = "cs1") -> None:
    result = client.create_cloud_service(name, f"{name} label", f"{name} description", REGION)
    wait(client, result.request_id)


def make_job_collection(client: SchedulerManagementService, cs: str = "cs1", jc: str = "jc1",
                        plan: str = "Standard") -> None:
    result = client.create_job_collection(cs, jc, plan)
    wait(client, result.request_id)


def http_job(minutes: int = 1) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    return {
        "startTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": {
            "type": "http",
            "request": {
                "uri": "http://example.com/ping",
                "method": "POST",
                "headers": {"Content-Type": "text/plain"},
                "body": "hello",
            },
            "retryPolicy": {"retryType": "none"},
        },
        "recurrence": {"frequency": "minute", "interval": minutes, "count": 10},
    }


# --- cloud services ------------------------------------------------------------------------

def test_cloud_services_list_create_get_delete(sms: SchedulerManagementService) -> None:
    assert len(sms.list_cloud_services()) == 0

    created = sms.create_cloud_service("cs1", "my label", "my description", REGION)
    assert created.request_id and len(created.request_id) == 32
    done = wait(sms, created.request_id)
    assert done.status == "Succeeded"
    assert done.http_status_code == "200"
    assert done.error is None

    services = sms.list_cloud_services()
    assert [s.name for s in services] == ["cs1"]
    listed = services[0]
    assert (listed.label, listed.description, listed.geo_region) == (
        "my label", "my description", REGION)
    assert len(listed.resources) == 0

    got = sms.get_cloud_service("cs1")
    assert (got.name, got.label, got.description, got.geo_region) == (
        "cs1", "my label", "my description", REGION)
    assert len(got.resources) == 0

    with pytest.raises(AzureConflictHttpError):
        sms.create_cloud_service("cs1", "again", "again", REGION)

    deleted = sms.delete_cloud_service("cs1")
    assert deleted.request_id and deleted.request_id != created.request_id
    assert wait(sms, deleted.request_id).status == "Succeeded"
    assert len(sms.list_cloud_services()) == 0
    with pytest.raises(AzureMissingResourceHttpError):
        sms.get_cloud_service("cs1")


def test_cloud_service_lists_its_job_collections_as_resources(
    sms: SchedulerManagementService,
) -> None:
    make_cloud_service(sms, "cs1")
    make_job_collection(sms, "cs1", "jc-b", "Standard")
    make_job_collection(sms, "cs1", "jc-a", "Free")

    service = sms.get_cloud_service("cs1")
    assert [r.name for r in service.resources] == ["jc-a", "jc-b"]
    first = service.resources[0]
    assert first.type == "jobcollections"
    assert first.resource_provider_namespace == "Scheduler"
    assert first.state == "Started"
    assert first.e_tag
    assert first.intrinsic_settings.plan == "Free"
    assert first.operation_status.result == "Succeeded"
    assert service.resources[1].intrinsic_settings.plan == "Standard"

    listed = sms.list_cloud_services()
    assert [r.name for r in listed[0].resources] == ["jc-a", "jc-b"]


# --- job collections -----------------------------------------------------------------------

def test_job_collection_name_check_create_get_delete(sms: SchedulerManagementService) -> None:
    make_cloud_service(sms, "cs1")

    free = sms.check_job_collection_name("cs1", "jc1")
    assert free.result is True

    created = sms.create_job_collection("cs1", "jc1", "Free")
    assert created.request_id
    assert wait(sms, created.request_id).status == "Succeeded"

    taken = sms.check_job_collection_name("cs1", "jc1")
    assert taken.result is False
    assert taken.reason  # the client reads <Reason> as a bool: a message is there

    resource = sms.get_job_collection("cs1", "jc1")
    assert resource.name == "jc1"
    assert resource.type == "jobcollections"
    assert resource.resource_provider_namespace == "Scheduler"
    assert resource.schema_version
    assert resource.state == "Started"
    assert resource.e_tag
    assert resource.intrinsic_settings.plan == "Free"
    assert resource.intrinsic_settings.quota.max_job_count == 5
    assert resource.intrinsic_settings.quota.max_recurrence.frequency == "Hour"
    assert resource.intrinsic_settings.quota.max_recurrence.interval == 1
    assert resource.operation_status.type == "Create"
    assert resource.operation_status.result == "Succeeded"

    standard = sms.create_job_collection("cs1", "jc2")  # the client's default plan
    wait(sms, standard.request_id)
    quota = sms.get_job_collection("cs1", "jc2").intrinsic_settings
    assert quota.plan == "Standard"
    assert quota.quota.max_job_count == 50
    assert (quota.quota.max_recurrence.frequency, quota.quota.max_recurrence.interval) == (
        "Minute", 1)

    deleted = sms.delete_job_collection("cs1", "jc1")
    assert deleted.request_id
    assert wait(sms, deleted.request_id).status == "Succeeded"
    with pytest.raises(AzureMissingResourceHttpError):
        sms.get_job_collection("cs1", "jc1")
    assert sms.check_job_collection_name("cs1", "jc1").result is True
    assert [r.name for r in sms.get_cloud_service("cs1").resources] == ["jc2"]


def test_job_collection_in_missing_cloud_service_is_404(sms: SchedulerManagementService) -> None:
    with pytest.raises(AzureMissingResourceHttpError):
        sms.create_job_collection("nowhere", "jc1")
    with pytest.raises(AzureMissingResourceHttpError):
        sms.get_job_collection("nowhere", "jc1")


# --- jobs ----------------------------------------------------------------------------------

def test_jobs_create_get_list_delete(sms: SchedulerManagementService) -> None:
    make_cloud_service(sms, "cs1")
    make_job_collection(sms, "cs1", "jc1", "Standard")

    document = http_job(minutes=5)
    created = sms.create_job("cs1", "jc1", "job1", document)
    assert created.request_id
    status = sms.get_operation_status(created.request_id)
    assert status.status == "Succeeded"
    assert status.http_status_code == "201"

    job = sms.get_job("cs1", "jc1", "job1")
    assert job["id"] == "job1"
    assert job["startTime"] == document["startTime"]
    assert job["state"] == "enabled"
    assert job["action"]["type"] == "http"
    assert job["action"]["request"]["uri"] == "http://example.com/ping"
    assert job["action"]["request"]["method"] == "POST"
    assert job["action"]["request"]["body"] == "hello"
    assert job["action"]["request"]["headers"] == {"Content-Type": "text/plain"}
    assert job["action"]["retryPolicy"]["retryType"] == "none"
    assert job["recurrence"]["frequency"] == "minute"
    assert job["recurrence"]["interval"] == 5
    assert job["recurrence"]["count"] == 10
    assert job["status"]["executionCount"] == 0
    assert job["status"]["failureCount"] == 0
    assert job["status"]["faultedCount"] == 0

    second = sms.create_job("cs1", "jc1", "job2", http_job(minutes=2))
    assert sms.get_operation_status(second.request_id).http_status_code == "201"
    replaced = sms.create_job("cs1", "jc1", "job2", http_job(minutes=3))
    replaced_status = sms.wait_for_operation_status(
        replaced.request_id, timeout=OPERATION_PATIENCE, sleep_interval=0.2, progress_callback=None,
        success_callback=None)
    assert replaced_status.http_status_code == "200"

    jobs = sms.get_all_jobs("cs1", "jc1")
    assert isinstance(jobs, list)
    assert sorted(j["id"] for j in jobs) == ["job1", "job2"]
    assert {j["id"]: j["recurrence"]["interval"] for j in jobs} == {"job1": 5, "job2": 3}

    deleted = sms.delete_job("cs1", "jc1", "job1")
    assert deleted.request_id
    assert sms.get_operation_status(deleted.request_id).status == "Succeeded"
    assert [j["id"] for j in sms.get_all_jobs("cs1", "jc1")] == ["job2"]
    with pytest.raises(AzureMissingResourceHttpError):
        sms.get_job("cs1", "jc1", "job1")


def test_job_over_quota_is_409(sms: SchedulerManagementService) -> None:
    make_cloud_service(sms, "cs1")
    make_job_collection(sms, "cs1", "jc1", "Free")
    with pytest.raises(AzureConflictHttpError) as caught:
        sms.create_job("cs1", "jc1", "too-often", http_job(minutes=1))
    assert caught.value.status_code == 409


# --- operations ----------------------------------------------------------------------------

def test_operation_status_of_async_and_unknown_operations(
    sms: SchedulerManagementService, asm: ServiceManagementService,
) -> None:
    created = sms.create_cloud_service("cs1", "label", "description", REGION)
    first = sms.get_operation_status(created.request_id)
    assert first.status in ("InProgress", "Succeeded")

    done = sms.wait_for_operation_status(created.request_id, timeout=OPERATION_PATIENCE,
                                         sleep_interval=0.2, progress_callback=None,
                                         success_callback=None)
    assert done.status == "Succeeded"
    assert done.http_status_code == "200"
    assert done.error is None

    # The general client reads the same operation the same way.
    again = asm.get_operation_status(created.request_id)
    assert (again.status, again.http_status_code) == ("Succeeded", "200")
    # Azure shows request ids as GUIDs too.
    dashed = "-".join((created.request_id[:8], created.request_id[8:12],
                       created.request_id[12:16], created.request_id[16:20],
                       created.request_id[20:]))
    assert asm.get_operation_status(dashed).status == "Succeeded"

    with pytest.raises(AzureMissingResourceHttpError):
        asm.get_operation_status("0" * 32)


# --- management certificates ---------------------------------------------------------------

def test_management_certificates_add_list_get_delete(
    server: ServerProcess, asm: ServiceManagementService, tmp_path: Path,
) -> None:
    admin_thumbprint = pki.thumbprint(
        pki.load_certificate(Path(server.info["clientCert"]).read_bytes()))
    before = asm.list_management_certificates()
    assert [c.subscription_certificate_thumbprint for c in before] == [admin_thumbprint]

    issued = pki.issue_client_certificate(None, "client-made", datetime.now(UTC))
    public_key = base64.b64encode(pki.public_key_der(issued.certificate)).decode()
    data = base64.b64encode(pki.der_bytes(issued.certificate)).decode()
    assert asm.add_management_certificate(public_key, issued.thumbprint, data) is None

    with pytest.raises(AzureConflictHttpError):
        asm.add_management_certificate(public_key, issued.thumbprint, data)

    listed = asm.list_management_certificates()
    assert sorted(c.subscription_certificate_thumbprint for c in listed) == sorted(
        [admin_thumbprint, issued.thumbprint])

    got = asm.get_management_certificate(issued.thumbprint)
    assert got.subscription_certificate_thumbprint == issued.thumbprint
    assert got.subscription_certificate_public_key == public_key
    assert got.subscription_certificate_data == data
    assert got.created

    # The new certificate works at once, through the client.
    pem = tmp_path / "client-made.pem"
    pem.write_bytes(issued.bundle_pem)
    as_new = SchedulerManagementService(**client_kwargs(server, str(pem)))
    assert len(as_new.list_cloud_services()) == 0

    assert asm.delete_management_certificate(issued.thumbprint) is None
    with pytest.raises(AzureMissingResourceHttpError):
        asm.get_management_certificate(issued.thumbprint)
    assert [c.subscription_certificate_thumbprint
            for c in asm.list_management_certificates()] == [admin_thumbprint]

    # ...and stops working at once: refused in the handshake or with 403.
    refused = SchedulerManagementService(**client_kwargs(server, str(pem)))
    try:
        refused.list_cloud_services()
    except AzureHttpError as exc:
        assert exc.status_code == 403
        assert "ForbiddenError" in str(exc)
    except (requests.exceptions.SSLError, requests.exceptions.ConnectionError):
        pass
    else:
        pytest.fail("a deleted certificate was still accepted")
