"""`storageQueue` actions against Azurite: the message put through the REST API with a SAS
token, read back with the Azure SDK."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.queue import QueueSasPermissions, QueueServiceClient, generate_queue_sas
from defusedxml import ElementTree

from tests.actions.brokers import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, MakeService, Service
from tests.support import JOBS

# Where the collection takes runs of inline definitions.
EXECUTIONS = JOBS.removesuffix("/jobs") + "/executions"


@pytest.fixture
def queue(azurite: Azurite) -> Iterator[str]:
    """A queue of the test's own, deleted afterwards."""
    name = f"q{uuid.uuid4().hex[:20]}"
    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    service.create_queue(name)
    yield name
    service.delete_queue(name)


def sas_for(queue: str, permission: QueueSasPermissions | None = None) -> str:
    """A SAS token that lets its holder add messages to the queue for an hour."""
    return generate_queue_sas(AZURITE_ACCOUNT, queue, AZURITE_KEY,
                              permission=permission or QueueSasPermissions(add=True),
                              expiry=datetime.now(UTC) + timedelta(hours=1))


def storage_action(queue: str, sas: str, message: str = "hello") -> dict[str, Any]:
    """A `storageQueue` action without retries."""
    return {"type": "storageQueue", "retryPolicy": {"retryType": "none"},
            "queueMessage": {"storageAccount": AZURITE_ACCOUNT, "queueName": queue,
                             "sasToken": sas, "message": message}}


def queue_service(make_service: MakeService, azurite: Azurite) -> Service:
    """The API and an engine that put storage queue messages on Azurite."""
    return make_service(storage_queue_endpoint=azurite.endpoint)


def received(azurite: Azurite, queue: str) -> list[str]:
    """The text of every message on the queue."""
    client = QueueServiceClient.from_connection_string(azurite.connection_string) \
        .get_queue_client(queue)
    return [message.content for message in client.receive_messages(max_messages=32)]


def test_a_message_is_put_in_azure_schedulers_envelope(
    azurite: Azurite, queue: str, make_service: MakeService,
) -> None:
    service = queue_service(make_service, azurite)
    service.put("enqueue", storage_action(queue, sas_for(queue), "<b>{{parameters.x}}</b>"),
                parameters={"x": "1 & 2"})
    assert service.fire() == 1
    [text] = received(azurite, queue)
    [execution] = service.executions("enqueue")
    root = ElementTree.fromstring(text.encode("utf-16"))
    assert root.tag == "StorageQueueMessage"
    fields = {child.tag: child.text or "" for child in root}
    assert fields["ExecutionTag"] == execution["id"]
    assert fields["Message"] == "<b>1 & 2</b>"
    assert fields["SchedulerJobId"] == "enqueue"
    assert fields["ExpectedExecutionTime"] == "2026-03-01T12:00:10"
    assert fields["Region"] == "West Europe"  # the cloud service's GeoRegion
    assert len(fields["ClientRequestId"]) == 36
    assert execution["status"] == "completed"
    [history] = service.history("enqueue")
    assert history["message"] == (f"StorageQueue Action - The message was put on queue "
                                  f"'{queue}' of storage account '{AZURITE_ACCOUNT}'")
    # The token is a secret: neither the job nor the execution shows it.
    assert "sasToken" not in str(service.tenant.call("GET", "/cloudservices/cs1/resources/"
                                                     "scheduler/~/jobcollections/jc1/jobs/"
                                                     "enqueue").get_json())


def test_an_inline_run_s_message_names_its_cloud_service_s_region(
    azurite: Azurite, queue: str, make_service: MakeService,
) -> None:
    service = queue_service(make_service, azurite)
    response = service.tenant.call("POST", EXECUTIONS,
                                   {"action": storage_action(queue, sas_for(queue))})
    assert response.status_code == 202, response.data
    assert service.driver.step() == 1
    [text] = received(azurite, queue)
    fields = {child.tag: child.text or "" for child in ElementTree.fromstring(
        text.encode("utf-16"))}
    assert fields["Region"] == "West Europe"
    assert fields["SchedulerJobCollectionId"] == "jc1" and fields["SchedulerJobId"] == ""


def test_a_missing_queue_fails_the_attempt_with_azures_message(
    azurite: Azurite, make_service: MakeService,
) -> None:
    service = queue_service(make_service, azurite)
    service.put("lost", storage_action("nosuchqueue", sas_for("nosuchqueue")))
    assert service.fire() == 1
    [history] = service.history("lost")
    assert history["status"] == "failed"
    assert history["message"].startswith(
        "StorageQueue Action - The message could not be put on queue 'nosuchqueue' of "
        f"storage account '{AZURITE_ACCOUNT}': 404 ")
    assert "The specified queue does not exist." in history["message"]


@pytest.mark.parametrize("token", ["sv=2018-03-28&sig=bm90IGEgc2lnbmF0dXJl&se=2099-01-01",
                                   "read-only"])
def test_a_bad_sas_token_fails_the_attempt_and_nothing_is_put(
    azurite: Azurite, queue: str, token: str, make_service: MakeService,
) -> None:
    sas = sas_for(queue, QueueSasPermissions(read=True)) if token == "read-only" else token
    service = queue_service(make_service, azurite)
    service.put("denied", storage_action(queue, sas))
    assert service.fire() == 1
    [history] = service.history("denied")
    assert history["status"] == "failed"
    assert ": 403 " in history["message"]
    assert received(azurite, queue) == []
