"""What identifies an execution is the service's alone, and a Service Bus message goes only to
a namespace and entity of the endpoint: a job cannot set an identification header (in any
letter case) beside the real one, nor name a namespace or queue that reaches another host or
path. Refused with 400 naming the field when the job is made; a job stored before the rules
held does not get past them when it fires."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from scheduler.actions.base import ExecutionContext
from scheduler.actions.http import HttpCaller
from scheduler.actions.registry import standard_actions
from scheduler.actions.tags import identification
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.models import Job
from scheduler.db.session import Database
from scheduler.domain.outbound import is_identification_header
from scheduler.settings import BrokerSettings, Settings
from tests.engine.harness import MakeDriver, Receiver
from tests.support import CLOUD_SERVICE_XML, JOBS, Tenant, collection_xml, new_tenant

COLLECTION = "/cloudservices/cs1/resources/scheduler/jobcollections/jc1"
# The names the service sets, each in a case other than its own, and one it may set later.
FORGED_NAMES = ["X-MS-Execution-Tag", "x-ms-Scheduler-JobId", "X-MS-SCHEDULER-JOBCOLLECTIONID",
                "X-Ms-Scheduler-Expected-Execution-Time", "X-MS-CLIENT-REQUEST-ID",
                "x-ms-scheduler-region", "x-ms-execution-tag"]
SAS = {"sasKeyName": "RootManageSharedAccessKey", "sasKey": "c2VjcmV0", "type": "SharedAccessKey"}


@pytest.fixture
def brokered(settings: Settings, clock: FrozenClock, db: Database) -> Tenant:
    """A tenant with collection jc1 on an API that knows an AMQP broker named `rabbit`."""
    with_broker = replace(settings, brokers={
        "rabbit": BrokerSettings("amqp://guest:guest@127.0.0.1:5672/")})
    app: Flask = create_app(with_broker, clock, db=db, background=False)
    tenant = new_tenant(app, db, clock, "brokered")
    assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
    assert tenant.call("PUT", COLLECTION, collection_xml()).status_code == 202
    return tenant


def http_action(headers: dict[str, str]) -> dict[str, Any]:
    """An HTTP action sending these headers."""
    return {"type": "http", "request": {"uri": "http://example.com/hook", "method": "POST",
                                        "headers": headers, "body": "hi"}}


def bus_action(kind: str = "serviceBusQueue", namespace: str = "shop-bus",
               entity: str = "orders", **extra: Any) -> dict[str, Any]:
    """A Service Bus queue or topic action."""
    target = "topicPath" if kind == "serviceBusTopic" else "queueName"
    return {"type": kind, f"{kind}Message": {
        "namespace": namespace, target: entity, "message": "hi", "authentication": SAS,
        **extra}}


def amqp_action(headers: dict[str, str]) -> dict[str, Any]:
    """An AMQP action publishing with these headers."""
    return {"type": "amqp", "amqpMessage": {"broker": "rabbit", "routingKey": "orders",
                                            "message": "hi", "headers": headers}}


def put_job(tenant: Tenant, action: dict[str, Any], job_id: str = "j") -> Any:
    """Create a job with this action, far in the future."""
    return tenant.call("PUT", f"{JOBS}/{job_id}",
                       {"startTime": "2030-01-01T00:00:00Z", "action": action})


def assert_refused(tenant: Tenant, action: dict[str, Any], field: str, *words: str) -> None:
    """The job is refused with 400 naming the field (and the words), and nothing is stored."""
    response = put_job(tenant, action)
    assert response.status_code == 400, response.data
    message = response.get_json()["error"]["message"]
    assert message.startswith(f"{field}:"), message
    for word in words:
        assert word in message, message
    assert tenant.call("GET", JOBS).get_json() == []


@pytest.mark.parametrize("name", FORGED_NAMES)
def test_an_identification_header_of_a_request_is_refused_in_any_case(
        collection: Tenant, name: str) -> None:
    assert_refused(collection, http_action({"Content-Type": "text/plain", name: "forged"}),
                   f"action.request.headers.{name}", "reserved")


@pytest.mark.parametrize("name", FORGED_NAMES)
@pytest.mark.parametrize("kind", ["serviceBusQueue", "serviceBusTopic"])
def test_an_identification_custom_property_of_a_service_bus_message_is_refused(
        collection: Tenant, name: str, kind: str) -> None:
    action = bus_action(kind, customMessageProperties={"tenant": "acme", name: "forged"})
    assert_refused(collection, action, f"action.{kind}Message.customMessageProperties.{name}",
                   "reserved")


@pytest.mark.parametrize("name", FORGED_NAMES)
def test_an_identification_header_of_an_amqp_message_is_refused(brokered: Tenant,
                                                                 name: str) -> None:
    assert_refused(brokered, amqp_action({"x-team": "ops", name: "forged"}),
                   f"action.amqpMessage.headers.{name}", "reserved")


def test_error_actions_and_steps_are_checked_too(collection: Tenant) -> None:
    main = http_action({})
    assert_refused(collection, {**main, "errorAction": http_action({"X-MS-Execution-Tag": "x"})},
                   "action.errorAction.request.headers.X-MS-Execution-Tag", "reserved")
    steps = [{"name": "first", "action": main},
             {"name": "second", "action": bus_action(customMessageProperties={
                 "x-ms-scheduler-jobid": "x"})}]
    assert_refused(collection, {"type": "sequence", "steps": steps},
                   "action.steps.1.action.serviceBusQueueMessage.customMessageProperties."
                   "x-ms-scheduler-jobid", "reserved")


def test_exactly_the_names_the_service_sets_are_reserved(collection: Tenant) -> None:
    """Other x-ms- headers are the job's to send (Azure services read several); the service's
    own names, and every x-ms-scheduler- one, are not."""
    for name in identification_names():
        assert is_identification_header(name.upper())
    allowed = {"x-ms-version": "2020-04-08", "x-ms-date": "Sun, 01 Mar 2026 12:00:00 GMT",
               "X-MS-Correlation": "c-1"}
    assert put_job(collection, http_action(allowed), "others").status_code == 201
    assert_refused_beside(collection, "x-ms-scheduler-anything")


def identification_names() -> list[str]:
    """The headers an attempt is sent with, as the service makes them."""
    context = ExecutionContext("job", "jc1", "e" * 32, datetime(2026, 3, 1, tzinfo=UTC), {})
    return list(identification(context))


def assert_refused_beside(tenant: Tenant, name: str) -> None:
    """A job with the name among its headers is refused, whatever else it holds."""
    response = put_job(tenant, http_action({"x-ms-version": "1", name: "x"}), "beside")
    assert response.status_code == 400, response.data
    assert name in response.get_json()["error"]["message"]


@pytest.mark.parametrize("name", ["BrokerProperties", "content-type", "Authorization"])
def test_a_custom_property_that_would_replace_a_send_message_header_is_refused(
        collection: Tenant, name: str) -> None:
    assert_refused(collection, bus_action(customMessageProperties={name: "x"}),
                   f"action.serviceBusQueueMessage.customMessageProperties.{name}",
                   "writes itself")


@pytest.mark.parametrize("namespace", [
    "127.0.0.1:8443/x?", "evil.example.com", "shop-bus.evil.example.com", "shop/bus",
    "shop-bus#", "shop bus", "short", "-shopbus", "shopbus-", "1shopbus", "shop_bus",
    "a" * 51, "shöpbus", "shop%2Fbus",
])
@pytest.mark.parametrize("kind", ["serviceBusQueue", "serviceBusTopic"])
def test_a_namespace_that_is_not_a_service_bus_name_is_refused(
        collection: Tenant, namespace: str, kind: str) -> None:
    assert_refused(collection, bus_action(kind, namespace=namespace),
                   f"action.{kind}Message.namespace", "6-50 letters, digits and hyphens")


@pytest.mark.parametrize("entity", [
    "orders?x=1", "orders#x", "a/../b", "..", "/orders", "orders/", "a//b", "a/./b",
    "orders x", "orders%2F..", "x" * 261, "örders", "a\\b", "-orders",
])
@pytest.mark.parametrize("kind", ["serviceBusQueue", "serviceBusTopic"])
def test_a_queue_or_topic_name_that_service_bus_does_not_allow_is_refused(
        collection: Tenant, entity: str, kind: str) -> None:
    target = "topicPath" if kind == "serviceBusTopic" else "queueName"
    assert_refused(collection, bus_action(kind, entity=entity),
                   f"action.{kind}Message.{target}", "1-260 letters, digits")


def test_service_bus_names_as_azure_allows_them_are_accepted(collection: Tenant) -> None:
    """The longest names, paths and every allowed character pass; the rule is not a wall."""
    fine = [("shop-bus", "orders"), ("a" * 50, "x" * 260), ("Shop-Bus-2", "app/orders.v2_x-y"),
            ("shop-bus", "1")]
    for index, (namespace, entity) in enumerate(fine):
        response = put_job(collection, bus_action("serviceBusTopic", namespace, entity),
                           f"ok{index}")
        assert response.status_code == 201, response.data
    assert_refused_beside(collection, "x-ms-execution-tag")


# --- jobs stored before the rules held -----------------------------------------------------

def store_behind_the_api(db: Database, job_id: str, change: Any) -> None:
    """Change a stored job's Service Bus action as an earlier version could have stored it."""
    with db.transaction() as session:
        job = session.query(Job).filter_by(job_id=job_id).one()
        definition = json.loads(job.definition)
        change(definition["action"])
        session.execute(update(Job).where(Job.id == job.id)
                        .values(definition=json.dumps(definition), etag=str(uuid.uuid4())))


def bus_driver(make_driver: MakeDriver, template: str) -> Any:
    """An engine node whose Service Bus endpoint is `template`."""
    return make_driver(actions=standard_actions(HttpCaller(allow_private_networks=True),
                                                service_bus_endpoint=template))


def fire_bus_job(collection: Tenant, db: Database, clock: FrozenClock, driver: Any,
                 change: Any) -> dict[str, Any]:
    """Make a Service Bus job due at 12:00:10, change it behind the API, fire it; its one
    history entry."""
    job = {"startTime": "2026-03-01T12:00:10Z",
           "action": {**bus_action(), "retryPolicy": {"retryType": "none"}}}
    assert collection.call("PUT", f"{JOBS}/stored", job).status_code == 201
    store_behind_the_api(db, "stored", change)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    [entry] = collection.call("GET", f"{JOBS}/stored/history").get_json()
    return dict(entry)


def test_a_stored_namespace_cannot_send_the_message_and_its_token_to_another_host(
        collection: Tenant, db: Database, clock: FrozenClock, receiver: Receiver,
        make_driver: MakeDriver) -> None:
    driver = bus_driver(make_driver, "http://{namespace}.servicebus.invalid")
    entry = fire_bus_job(collection, db, clock, driver, lambda message: message.update(
        namespace=f"127.0.0.1:{receiver.port}/x?"))
    assert receiver.requests == []
    assert entry["status"] == "failed"
    assert "the namespace is 6-50 letters, digits and hyphens" in entry["message"]


def test_a_stored_queue_path_cannot_climb_out_of_the_namespace(
        collection: Tenant, db: Database, clock: FrozenClock, receiver: Receiver,
        make_driver: MakeDriver) -> None:
    driver = bus_driver(make_driver, receiver.url("/{namespace}"))
    entry = fire_bus_job(collection, db, clock, driver, lambda message: message.update(
        entity="../../admin"))
    assert receiver.requests == []
    assert entry["status"] == "failed"
    assert "the queue or topic path is 1-260 letters, digits" in entry["message"]


def test_a_stored_forged_custom_property_is_not_sent_beside_the_real_one(
        collection: Tenant, db: Database, clock: FrozenClock, receiver: Receiver,
        make_driver: MakeDriver) -> None:
    receiver.answers["/shop-bus/orders/messages"] = (201, {}, b"")
    driver = bus_driver(make_driver, receiver.url("/{namespace}"))
    entry = fire_bus_job(collection, db, clock, driver, lambda message: message.update(
        custom_properties={"X-MS-Execution-Tag": "forged", "BrokerProperties": "{}",
                                 "tenant": "acme"}))
    [request] = receiver.requests
    tags = [value for name, value in request.headers.items()
            if name.lower() == "x-ms-execution-tag"]
    [execution] = collection.call("GET", f"{JOBS}/stored/executions").get_json()
    assert tags == [json.dumps(execution["id"])]
    assert json.loads(request.header("BrokerProperties"))["MessageId"] == execution["id"]
    assert json.loads(request.header("tenant")) == "acme"
    assert entry["status"] == "completed"
