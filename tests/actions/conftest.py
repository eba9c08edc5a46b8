"""The real brokers queue actions are tested against: the machine's RabbitMQ and Redis, a
Redis server of the test's own that it can restart, and Azurite, the Azure Storage emulator
(installed from the npm registry by `make test`); and the API and an engine node that know
them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from scheduler.actions.http import HttpCaller
from scheduler.actions.registry import standard_actions
from scheduler.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db.session import Database
from scheduler.settings import BrokerSettings, Settings, running_in_ci
from tests.actions.brokers import (
    AZURITE,
    RABBITMQ_URL,
    REDIS_URL,
    START_SECONDS,
    Azurite,
    MakeService,
    RedisServer,
    Service,
    free_port,
    require,
    wait_for_output,
)
from tests.engine.harness import MakeDriver
from tests.support import CLOUD_SERVICE_XML, collection_xml, new_tenant


@pytest.fixture
def rabbitmq() -> str:
    """The machine's RabbitMQ."""
    require("RabbitMQ", 5672)
    return RABBITMQ_URL


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis."""
    require("Redis", 6379)
    return REDIS_URL


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server the test may restart."""
    if shutil.which("redis-server") is None:
        if running_in_ci():
            pytest.fail("redis-server is not installed and CI=true")
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's queue service on a port of its own, keeping everything in memory. Started
    with `--skipApiVersionCheck`: Azurite 3 refuses the SDK's newer API version otherwise."""
    if not AZURITE.exists():
        message = f"Azurite is not installed at {AZURITE} (make test installs it)"
        if running_in_ci():
            pytest.fail(f"{message} and CI=true")
        pytest.skip(message)
    port = free_port()
    workspace = tmp_path_factory.mktemp("azurite")  # where it writes its debug log, if any
    process = subprocess.Popen(
        [str(AZURITE), "--queueHost", "127.0.0.1", "--queuePort", str(port),
         "--inMemoryPersistence", "--skipApiVersionCheck", "--silent"],
        cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # Node starts slowly on a busy machine.
        wait_for_output(process, b"successfully listens", START_SECONDS * 3)
        yield Azurite(port)
    finally:
        process.kill()  # it keeps nothing, and takes its time over SIGTERM
        process.wait(10)


@pytest.fixture
def make_service(settings: Settings, clock: FrozenClock, db: Database,
                 make_driver: MakeDriver) -> MakeService:
    """Make the API and an engine node that both know these brokers: `make_service(brokers,
    **options)`, `brokers` naming their URLs; `options` go to the node's `standard_actions`
    (endpoints, a caller's TLS trust by `tls_context`). The node is closed when the test
    ends."""
    def make(brokers: dict[str, str] | None = None, **options: Any) -> Service:
        brokers = brokers or {}
        configured = replace(settings,
                             brokers={n: BrokerSettings(u) for n, u in brokers.items()})
        app = create_app(configured, clock, db=db, background=False)
        tenant = new_tenant(app, db, clock)
        assert tenant.call("PUT", "/cloudservices/cs1", CLOUD_SERVICE_XML).status_code == 202
        assert tenant.call("PUT", "/cloudservices/cs1/resources/scheduler/jobcollections/jc1",
                           collection_xml()).status_code == 202
        tls = options.pop("tls_context", None)
        caller = HttpCaller(allow_private_networks=True,
                            **({"tls_context": tls} if tls else {}))
        actions = standard_actions(caller, amqp_brokers=configured.broker_urls("amqp"),
                                   redis_brokers=configured.broker_urls("redis"), clock=clock,
                                   **options)
        return Service(tenant, make_driver(actions=actions, app=app), clock)

    return make
