"""Which executor runs which action type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.actions.amqp import AmqpExecutor
from scheduler.actions.base import ActionExecutor, ExecutionContext, Outcome, ReadyAction
from scheduler.actions.http import HttpCaller, HttpExecutor
from scheduler.actions.redis import RedisExecutor
from scheduler.actions.service_bus import DEFAULT_ENDPOINT as SERVICE_BUS_ENDPOINT
from scheduler.actions.service_bus import ServiceBusExecutor
from scheduler.actions.storage_queue import DEFAULT_ENDPOINT as STORAGE_QUEUE_ENDPOINT
from scheduler.actions.storage_queue import StorageQueueExecutor
from scheduler.clock import Clock, SystemClock
from scheduler.domain.jobs import Action


class ActionRegistry:
    """Executors keyed by the action types they run (`http`, `https`, ...)."""

    def __init__(self) -> None:
        self._executors: dict[str, ActionExecutor[Any]] = {}

    def register(self, executor: ActionExecutor[Any], *types: str) -> None:
        """Let `executor` run actions of these types, in place of any registered before."""
        for kind in types:
            self._executors[kind] = executor

    def executor(self, kind: str) -> ActionExecutor[Any] | None:
        """The executor of an action type, if one is registered."""
        return self._executors.get(kind)

    def prepare(self, action: Action, context: ExecutionContext) -> ReadyAction | Outcome:
        """The action made ready by its type's executor; an action that cannot run (no
        executor for its type included) is its failed outcome already."""
        kind = action.kind
        executor = self._executors.get(kind)
        if executor is None:
            return Outcome(False, f"{kind} actions are not supported by this version of the "
                                  "engine")
        prepared = executor.prepare(action, context)
        if isinstance(prepared, Outcome):
            return prepared
        return ReadyAction(executor, prepared)

    async def close(self) -> None:
        """Close every registered executor once."""
        for executor in {id(e): e for e in self._executors.values()}.values():
            await executor.close()


def standard_actions(http: HttpCaller, *, amqp_brokers: Mapping[str, str] | None = None,
                     redis_brokers: Mapping[str, str] | None = None,
                     storage_queue_endpoint: str = STORAGE_QUEUE_ENDPOINT,
                     service_bus_endpoint: str = SERVICE_BUS_ENDPOINT,
                     clock: Clock | None = None) -> ActionRegistry:
    """Every action type this version runs, each with its executor: the RabbitMQ and Redis
    brokers jobs may name (name -> URL), and the endpoints as templates of a storage
    account's and a Service Bus namespace's name."""
    registry = ActionRegistry()
    registry.register(HttpExecutor(http), *HttpExecutor.TYPES)
    registry.register(StorageQueueExecutor(http, storage_queue_endpoint),
                      *StorageQueueExecutor.TYPES)
    registry.register(ServiceBusExecutor(http, clock or SystemClock(), service_bus_endpoint),
                      *ServiceBusExecutor.TYPES)
    registry.register(AmqpExecutor(amqp_brokers or {}), *AmqpExecutor.TYPES)
    registry.register(RedisExecutor(redis_brokers or {}), *RedisExecutor.TYPES)
    return registry
