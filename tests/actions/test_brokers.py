"""`amqp` and `redis` actions against the machine's RabbitMQ and Redis: jobs made through the
API, run by an engine driven by hand, the messages read back from the brokers."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import aiormq
import pytest
import redis

from tests.actions.brokers import (
    MakeService,
    RedisServer,
    Service,
    declare_queue,
    delete_queue,
    free_port,
    take_messages,
)
from tests.support import JOBS

EVERY_MINUTE = {"frequency": "minute", "interval": 1}


@pytest.fixture
def stream() -> str:
    """A stream name no other test uses."""
    return f"test-{uuid.uuid4().hex}"


def redis_action(broker: str, stream: str, message: str = "hello") -> dict[str, Any]:
    """A `redis` action without retries."""
    return {"type": "redis", "retryPolicy": {"retryType": "none"},
            "redisMessage": {"broker": broker, "stream": stream, "message": message}}


def read_stream(url: str, stream: str) -> list[dict[str, str]]:
    """Every entry of the stream, oldest first; the stream is deleted afterwards."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        entries = client.xrange(stream)
        client.delete(stream)
    finally:
        client.close()
    return [fields for _id, fields in entries]


# --- redis -------------------------------------------------------------------------------

def test_a_redis_action_appends_to_the_stream_with_the_execution_tag(
    redis_url: str, stream: str, make_service: MakeService,
) -> None:
    service = make_service({"cache": redis_url})
    service.put("events", redis_action("cache", stream, "hi {{parameters.who}}"),
                parameters={"who": "ops"})
    assert service.fire() == 1
    [entry] = read_stream(redis_url, stream)
    [execution] = service.executions("events")
    assert entry["message"] == "hi ops"
    assert entry["x-ms-execution-tag"] == execution["id"]
    assert entry["x-ms-scheduler-jobid"] == "events"
    assert entry["x-ms-scheduler-expected-execution-time"] == "2026-03-01T12:00:10Z"
    assert execution["status"] == "completed"
    assert execution["outputParameters"]["stream"] == stream
    [history] = service.history("events")
    assert history["status"] == "completed"
    assert history["message"].startswith(f"Redis Action - Message added to stream '{stream}'")


def test_redis_connections_are_reused_and_come_back_after_the_server_restarts(
    own_redis: RedisServer, stream: str, make_service: MakeService,
) -> None:
    service = make_service({"own": own_redis.url})
    watcher = redis.Redis.from_url(own_redis.url)
    try:
        service.put("ticks", redis_action("own", stream), recurrence=EVERY_MINUTE)
        assert service.fire() == 1
        connections = watcher.info("stats")["total_connections_received"]
        assert service.fire(60) == 1
        # The second message went over the connection the first one opened.
        assert watcher.info("stats")["total_connections_received"] == connections
        assert len(read_stream(own_redis.url, stream)) == 2
        watcher.close()
        own_redis.restart()  # every connection the engine held is gone
        assert service.fire(60) == 1
        entries = read_stream(own_redis.url, stream)
    finally:
        watcher.close()
    assert len(entries) == 1, [h["message"] for h in service.history("ticks")]
    assert [h["status"] for h in service.history("ticks")] == ["completed"] * 3


def test_a_redis_broker_that_is_down_fails_the_attempt_and_names_why(
    stream: str, make_service: MakeService,
) -> None:
    service = make_service({"gone": f"redis://127.0.0.1:{free_port()}/0"})
    service.put("events", redis_action("gone", stream))
    assert service.fire() == 1
    [history] = service.history("events")
    assert history["status"] == "failed"
    assert history["message"].startswith(
        f"Redis Action - Message to stream '{stream}' on broker 'gone' failed: ")
    assert "Connect" in history["message"] or "refused" in history["message"]


# --- amqp --------------------------------------------------------------------------------

@pytest.fixture
def queue(rabbitmq: str) -> Iterator[str]:
    """A durable queue of the test's own on the machine's RabbitMQ, deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    asyncio.run(declare_queue(rabbitmq, name))
    yield name
    asyncio.run(delete_queue(rabbitmq, name))


def amqp_action(broker: str, routing_key: str, exchange: str = "") -> dict[str, Any]:
    """An `amqp` action without retries."""
    return {"type": "amqp", "retryPolicy": {"retryType": "none"},
            "amqpMessage": {"broker": broker, "exchange": exchange, "routingKey": routing_key,
                            "message": "run {{execution.id}}",
                            "headers": {"x-team": "{{parameters.team}}"}}}


def test_an_amqp_action_is_published_confirmed_and_tagged(
    rabbitmq: str, queue: str, make_service: MakeService,
) -> None:
    service = make_service({"rabbit": rabbitmq})
    service.put("publish", amqp_action("rabbit", queue), parameters={"team": "ops"})
    assert service.fire() == 1
    [message] = take_messages(rabbitmq, queue)
    [execution] = service.executions("publish")
    properties = message.header.properties
    assert message.body == f"run {execution['id']}".encode()
    assert properties.message_id == execution["id"]
    assert properties.delivery_mode == 2  # persistent
    assert properties.headers["x-ms-execution-tag"] == execution["id"]
    assert properties.headers["x-team"] == "ops"
    assert execution["status"] == "completed"
    [history] = service.history("publish")
    assert history["message"].endswith("was confirmed by the broker")


def test_an_amqp_message_no_queue_takes_fails_the_attempt(
    rabbitmq: str, make_service: MakeService,
) -> None:
    service = make_service({"rabbit": rabbitmq})
    nowhere = f"nowhere-{uuid.uuid4().hex}"
    service.put("lost", amqp_action("rabbit", nowhere), parameters={"team": "ops"})
    assert service.fire() == 1
    [history] = service.history("lost")
    assert history["status"] == "failed"
    assert f"routing key '{nowhere}'" in history["message"]
    assert "no queue is bound to take it" in history["message"]


def test_an_amqp_message_the_broker_refuses_to_confirm_fails_the_attempt(
    rabbitmq: str, make_service: MakeService,
) -> None:
    full = f"full-{uuid.uuid4().hex}"  # holds nothing, and nacks what it cannot take
    asyncio.run(declare_queue(rabbitmq, full, {"x-max-length": 0,
                                               "x-overflow": "reject-publish"}))
    service = make_service({"rabbit": rabbitmq})
    try:
        service.put("refused", amqp_action("rabbit", full), parameters={"team": "ops"})
        assert service.fire() == 1
    finally:
        asyncio.run(delete_queue(rabbitmq, full))
    [history] = service.history("refused")
    assert history["status"] == "failed"
    assert f"routing key '{full}'" in history["message"] and "Nack" in history["message"]


def test_an_amqp_exchange_that_does_not_exist_fails_the_attempt_and_the_next_one_runs(
    rabbitmq: str, queue: str, make_service: MakeService,
) -> None:
    service = make_service({"rabbit": rabbitmq})
    service.put("bad", amqp_action("rabbit", queue, exchange=f"none-{uuid.uuid4().hex}"),
                parameters={"team": "ops"})
    service.put("good", amqp_action("rabbit", queue), startTime="2026-03-01T12:00:20Z",
                parameters={"team": "ops"})
    assert service.fire() == 1
    assert service.fire() == 1  # the channel the broker closed is opened again
    [bad] = service.history("bad")
    assert bad["status"] == "failed" and "NOT_FOUND" in bad["message"]
    assert [h["status"] for h in service.history("good")] == ["completed"]
    assert len(take_messages(rabbitmq, queue)) == 1


def rabbitmq_connections() -> set[str]:
    """The names (client address and port) of the broker's open connections."""
    listed = subprocess.run(["rabbitmqctl", "list_connections", "-q", "name"], check=True,
                            capture_output=True, text=True, timeout=120)
    return {line.strip() for line in listed.stdout.splitlines() if "->" in line}


def rabbitmq_drops_every_connection() -> None:
    """Have the broker close every client connection, as a restart does."""
    subprocess.run(["rabbitmqctl", "close_all_connections", "test restart"], check=True,
                   capture_output=True, timeout=120)


def test_amqp_connections_are_reused_and_come_back_after_the_broker_drops_them(
    rabbitmq: str, queue: str, make_service: MakeService,
) -> None:
    service = make_service({"rabbit": rabbitmq})
    service.put("ticks", amqp_action("rabbit", queue), recurrence=EVERY_MINUTE,
                parameters={"team": "ops"})
    assert service.fire() == 1
    opened = rabbitmq_connections()
    assert service.fire(60) == 1
    assert rabbitmq_connections() == opened  # the second message used the same one
    rabbitmq_drops_every_connection()
    assert service.fire(60) == 1
    assert [h["status"] for h in service.history("ticks")] == ["completed"] * 3
    assert len(take_messages(rabbitmq, queue)) == 3


# --- as error actions and sequence steps ---------------------------------------------------

def test_queue_actions_run_as_an_error_action_and_as_sequence_steps(
    redis_url: str, rabbitmq: str, queue: str, stream: str, make_service: MakeService,
) -> None:
    service = make_service({
        "cache": redis_url, "rabbit": rabbitmq, "gone": f"redis://127.0.0.1:{free_port()}/0"})
    failing = redis_action("gone", stream)
    failing["errorAction"] = amqp_action("rabbit", queue)
    first = {"name": "append", "action": redis_action("cache", stream, "step one")}
    second = {"name": "announce", "action": amqp_action("rabbit", queue)}
    second["action"]["amqpMessage"]["message"] = "after {{steps.append.output.id}}"
    service.put("fails", failing, parameters={"team": "ops"})
    service.put("steps", {"type": "sequence", "steps": [first, second]},
                parameters={"team": "ops"}, startTime="2026-03-01T12:00:20Z")
    assert service.fire() == 1  # the failed redis attempt, then its error action
    service.driver.step()
    assert service.fire() == 1  # the first step, then the second
    service.driver.step()
    assert [h["status"] for h in service.history("fails")] == ["failed", "completed"]
    [entry] = read_stream(redis_url, stream)
    assert entry["message"] == "step one"
    [execution] = service.executions("steps")
    assert execution["status"] == "completed"
    entry_id = execution["steps"][0]["output"]["id"]
    bodies = sorted(message.body.decode() for message in take_messages(rabbitmq, queue))
    [fails] = service.executions("fails")
    assert bodies == sorted([f"run {fails['id']}", f"after {entry_id}"])


# --- refused at creation -----------------------------------------------------------------

@pytest.mark.parametrize(("action", "expected"), [
    (redis_action("nope", "s"), "no broker named 'nope' is configured"),
    (redis_action("rabbit", "s"), "the broker 'rabbit' takes amqp messages, not redis"),
    (amqp_action("cache", "q"), "the broker 'cache' takes redis messages, not amqp"),
])
def test_a_job_naming_a_broker_it_cannot_use_gets_400(
    action: dict[str, Any], expected: str, make_service: MakeService,
) -> None:
    service = make_service({"rabbit": RABBIT_URL_UNUSED, "cache": REDIS_URL_UNUSED})
    job = {"startTime": "2026-03-01T12:00:10Z", "action": action}
    response = service.tenant.call("PUT", f"{JOBS}/refused", job)
    assert response.status_code == 400
    assert expected in response.get_json()["error"]["message"]
    assert service.tenant.call("GET", f"{JOBS}/refused").status_code == 404


RABBIT_URL_UNUSED = "amqp://guest:guest@127.0.0.1:1/"  # never connected to
REDIS_URL_UNUSED = "redis://127.0.0.1:1/0"


async def declare_exchange(url: str, name: str, queue: str) -> None:
    """Declare a direct exchange that routes the queue's name to the queue."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.exchange_declare(name, exchange_type="direct")
        await channel.queue_bind(queue, name, routing_key=queue)
    finally:
        await connection.close()


async def delete_exchange(url: str, name: str) -> None:
    """Delete an exchange."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.exchange_delete(name)
    finally:
        await connection.close()


def put_good_jobs(service: Service, queue: str, **extra: Any) -> list[str]:
    """31 jobs that publish to the queue through the default exchange; their ids."""
    good = [f"good-{index:02d}" for index in range(31)]
    for job_id in good:
        service.put(job_id, amqp_action("rabbit", queue), parameters={"team": "ops"}, **extra)
    return good


def failures(service: Service, job_ids: list[str]) -> dict[str, str]:
    """The messages of the jobs' attempts that did not complete, by job."""
    return {job_id: entry["message"] for job_id in job_ids
            for entry in service.history(job_id) if entry["status"] != "completed"}


def execution_ids(service: Service, job_ids: list[str]) -> set[str]:
    """The ids of every execution of the jobs."""
    return {execution["id"] for job_id in job_ids for execution in service.executions(job_id)}


def published_ids(url: str, queue: str) -> set[str]:
    """The message ids on the queue (taken off it), each once however often it came."""
    return {str(message.header.properties.message_id)
            for message in take_messages(url, queue)}


def test_an_amqp_publish_to_a_missing_exchange_fails_alone_among_many_at_once(
    rabbitmq: str, queue: str, make_service: MakeService,
) -> None:
    service = make_service({"rabbit": rabbitmq})
    missing = f"none-{uuid.uuid4().hex}"
    # Its publish goes first of the 32, so that the others follow it on the broker's link.
    service.put("a-bad", amqp_action("rabbit", queue, exchange=missing),
                parameters={"team": "ops"})
    good = put_good_jobs(service, queue)
    assert service.fire() == 32
    [bad] = service.history("a-bad")
    assert bad["status"] == "failed" and f"no exchange '{missing}'" in bad["message"]
    assert failures(service, good) == {}
    assert published_ids(rabbitmq, queue) == execution_ids(service, good)


def test_an_amqp_exchange_deleted_after_its_first_message_fails_only_its_own_publish(
    rabbitmq: str, queue: str, make_service: MakeService,
) -> None:
    service = make_service({"rabbit": rabbitmq})
    exchange = f"gone-{uuid.uuid4().hex}"
    asyncio.run(declare_exchange(rabbitmq, exchange, queue))
    try:
        service.put("a-gone", amqp_action("rabbit", queue, exchange=exchange),
                    parameters={"team": "ops"}, recurrence=EVERY_MINUTE)
        good = put_good_jobs(service, queue, recurrence=EVERY_MINUTE)
        assert service.fire() == 32  # the exchange is there, and found
    finally:
        asyncio.run(delete_exchange(rabbitmq, exchange))
    # Its next message goes on the channel the others share, and the broker closes it.
    assert service.fire(60) == 32
    first, second = service.history("a-gone")
    assert first["status"] == "completed"
    assert second["status"] == "failed" and f"no exchange '{exchange}'" in second["message"]
    assert failures(service, good) == {}
    [delivered, _refused] = service.executions("a-gone")
    assert published_ids(rabbitmq, queue) == execution_ids(service, good) | {delivered["id"]}


def test_an_amqp_header_the_broker_would_close_the_channel_over_fails_alone(
    rabbitmq: str, queue: str, make_service: MakeService,
) -> None:
    service = make_service({"rabbit": rabbitmq})
    action = amqp_action("rabbit", queue)
    action["amqpMessage"]["headers"] = {"CC": "another-queue"}
    service.put("a-cc", action)
    good = put_good_jobs(service, queue)
    assert service.fire() == 32
    [refused] = service.history("a-cc")
    assert refused["status"] == "failed" and "the header 'CC' is not sent" in refused["message"]
    assert failures(service, good) == {}
    assert published_ids(rabbitmq, queue) == execution_ids(service, good)
