"""Which executor runs which action type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from scheduler.actions.amqp import AMQP_SCHEMES, AmqpExecutor
from scheduler.actions.base import ActionExecutor, ExecutionContext, Outcome, ReadyAction
from scheduler.actions.http import HttpCaller, HttpExecutor
from scheduler.actions.redis import REDIS_SCHEMES, RedisExecutor
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


def standard_actions(http: HttpCaller, brokers: Mapping[str, str] | None = None, *,
                     storage_queue_endpoint: str = STORAGE_QUEUE_ENDPOINT,
                     service_bus_endpoint: str = SERVICE_BUS_ENDPOINT,
                     clock: Clock | None = None) -> ActionRegistry:
    """Every action type this version runs, each with its executor; `brokers` are the
    message brokers jobs may name (name -> URL; the URL's scheme says which kind), and the
    endpoints are templates of a storage account's and a Service Bus namespace's name."""
    brokers = brokers or {}
    registry = ActionRegistry()
    registry.register(HttpExecutor(http), *HttpExecutor.TYPES)
    registry.register(StorageQueueExecutor(http, storage_queue_endpoint),
                      *StorageQueueExecutor.TYPES)
    registry.register(ServiceBusExecutor(http, clock or SystemClock(), service_bus_endpoint),
                      *ServiceBusExecutor.TYPES)
    registry.register(AmqpExecutor(_of_kind(brokers, AMQP_SCHEMES)), *AmqpExecutor.TYPES)
    registry.register(RedisExecutor(_of_kind(brokers, REDIS_SCHEMES)), *RedisExecutor.TYPES)
    return registry


def _of_kind(brokers: Mapping[str, str], schemes: tuple[str, ...]) -> dict[str, str]:
    return {name: url for name, url in brokers.items()
            if urlsplit(url).scheme.lower() in schemes}
