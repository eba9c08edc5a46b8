"""Queue actions through a running `scheduler serve`: brokers named in `scheduler.toml`, jobs
made over HTTPS, messages read back from the machine's Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis

from tests.actions.brokers import (
    RABBITMQ_URL,
    REDIS_URL,
    declare_queue,
    delete_queue,
    require,
    take_messages,
)
from tests.e2e.support import ServerProcess, create_collection, wait_for

BROKERS = (f'\n[brokers.cache]\nurl = "{REDIS_URL}"\n'
           f'\n[brokers.rabbit]\nurl = "{RABBITMQ_URL}"\n')


def test_a_served_engine_posts_to_the_brokers_its_configuration_names(
    server_factory: Any,
) -> None:
    require("Redis", 6379)
    require("RabbitMQ", 5672)
    stream, queue = f"e2e-{uuid.uuid4().hex}", f"e2e-{uuid.uuid4().hex}"
    asyncio.run(declare_queue(RABBITMQ_URL, queue))
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    server: ServerProcess = server_factory(start=False)
    with (server.home / "scheduler.toml").open("a") as config:
        config.write(BROKERS)
    server.start()
    try:
        session, jobs = create_collection(server, "Standard")
        redis_job = {"action": {"type": "redis", "redisMessage": {
            "broker": "cache", "stream": stream, "message": "from {{execution.id}}"}}}
        amqp_job = {"action": {"type": "amqp", "amqpMessage": {
            "broker": "rabbit", "routingKey": queue, "message": "hello"}}}
        assert session.put(f"{jobs}/to-redis", json=redis_job).status_code == 201
        assert session.put(f"{jobs}/to-rabbit", json=amqp_job).status_code == 201
        assert wait_for(lambda: client.xlen(stream) == 1, 60), "no entry in the stream"
        [(_id, fields)] = client.xrange(stream)
        executions = session.get(f"{jobs}/to-redis/executions").json()
        assert fields["message"] == f"from {executions[0]['id']}"
        assert wait_for(lambda: session.get(f"{jobs}/to-rabbit/history").json(), 60)
        [entry] = session.get(f"{jobs}/to-rabbit/history").json()
        assert entry["status"] == "completed", entry["message"]
        [message] = take_messages(RABBITMQ_URL, queue)
        assert message.body == b"hello"
    finally:
        client.delete(stream)
        client.close()
        asyncio.run(delete_queue(RABBITMQ_URL, queue))
