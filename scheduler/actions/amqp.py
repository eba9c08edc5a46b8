"""`amqp` actions: a message published to RabbitMQ (AMQP 0-9-1) with publisher confirms.

Each broker (`[brokers.NAME]`, an `amqp://` or `amqps://` URL) gets one connection and one
channel in confirm mode, shared by every job that names it. A message counts as sent only
when the broker confirms it; a nack, a message no queue took (it is published `mandatory`)
or no confirmation within the timeout fails the attempt. A connection found closed (the
broker restarted) is opened again before the next message, and a publish that fails
because the connection went away under it is made once more on a new connection (the
broker may then hold it twice; receivers de-duplicate by its execution tag).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiormq
from aiormq.abc import AbstractConnection
from aiormq.channel import Channel
from pamqp.commands import Basic

from scheduler.actions.base import ExecutionContext, Outcome
from scheduler.actions.placeholders import fill_header, fill_text
from scheduler.actions.tags import identification
from scheduler.domain.jobs import Action, OtherAction

PERSISTENT = 2  # AMQP delivery mode: the broker writes the message to disk


@dataclass(frozen=True, slots=True)
class AmqpMessage:
    """One message to publish: where, what, and its headers."""

    broker: str
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, str]
    message_id: str


class NotConfirmed(Exception):
    """The broker answered a publish with something other than a confirmation."""


class _BrokerLink:
    """One broker's connection and confirming channel, opened when first needed and again
    once found closed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: AbstractConnection | None = None
        self._channel: Channel | None = None
        self._opening = asyncio.Lock()

    async def channel(self) -> Channel:
        """The open channel, opening the connection first if it is closed or never was."""
        channel = self._open_channel()
        if channel is not None:  # the usual case: no lock for thousands of messages at once
            return channel
        async with self._opening:
            channel = self._open_channel()
            if channel is None:
                await self.close()
                self._connection = await aiormq.connect(self.url)
                # The concrete channel: its `basic_publish` takes `wait`, the abstract's not.
                opened = await self._connection.channel(publisher_confirms=True)
                assert isinstance(opened, Channel)
                self._channel = channel = opened
            return channel

    def _open_channel(self) -> Channel | None:
        connection, channel = self._connection, self._channel
        if connection is None or connection.is_closed or channel is None or channel.is_closed:
            return None
        return channel

    async def drop(self, channel: Channel) -> None:
        """Forget a channel that failed, so that the next message opens a new connection."""
        async with self._opening:
            if self._channel is channel:
                await self.close()

    async def close(self) -> None:
        """Close the connection, if open."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(aiormq.exceptions.AMQPError, OSError):
                await connection.close()  # a link that is gone already


class AmqpExecutor:
    """Runs `amqp` actions on the brokers configured by name (name -> URL)."""

    TYPES = ("amqp",)

    def __init__(self, brokers: Mapping[str, str]) -> None:
        self.urls = dict(brokers)
        self._links: dict[str, _BrokerLink] = {}

    def prepare(self, action: Action, context: ExecutionContext) -> AmqpMessage | Outcome:
        """The message to publish; one naming a broker this node does not know fails."""
        if not isinstance(action, OtherAction):
            return Outcome(False, f"AMQP Action - a {action.kind} action is not a message")
        fields = action.fields
        broker = str(fields["broker"])
        if broker not in self.urls:
            return Outcome(False, f"AMQP Action - no broker named '{broker}' is configured "
                                  "on this engine node")
        headers = {name: fill_header(str(value), context)
                   for name, value in (fields.get("headers") or {}).items()}
        headers.update(identification(context))
        body = fill_text(str(fields["message"]), context).encode()
        return AmqpMessage(broker, str(fields.get("exchange") or ""),
                           fill_text(str(fields["routingKey"]), context), body, headers,
                           context.execution_id)

    def submit(self, message: AmqpMessage, timeout: float) -> asyncio.Future[Any]:
        """Publish the message; the future is done once the broker confirmed it."""
        return asyncio.ensure_future(self._publish(message, timeout))

    async def _publish(self, message: AmqpMessage, timeout: float) -> None:
        link = self._links.get(message.broker)
        if link is None:
            link = self._links[message.broker] = _BrokerLink(self.urls[message.broker])
        async with asyncio.timeout(timeout):
            for last_try in (False, True):
                channel = await link.channel()
                try:
                    confirmation = await channel.basic_publish(
                        message.body, exchange=message.exchange,
                        routing_key=message.routing_key, mandatory=True,
                        properties=Basic.Properties(
                            headers=dict(message.headers), message_id=message.message_id,
                            delivery_mode=PERSISTENT),
                        # Not waiting for the frame to reach the socket before the next
                        # publish may go: the confirmation is what counts.
                        wait=False)
                except (aiormq.exceptions.AMQPConnectionError,
                        aiormq.exceptions.ChannelInvalidStateError, ConnectionError) as exc:
                    await link.drop(channel)
                    if last_try:
                        raise ConnectionError(f"the connection to the broker was lost: "
                                              f"{exc or type(exc).__name__}") from exc
                    continue
                if not isinstance(confirmation, Basic.Ack):
                    raise NotConfirmed(f"the broker answered {type(confirmation).__name__}"
                                       " instead of confirming it")
                return

    def outcome(self, message: AmqpMessage, done: asyncio.Future[Any], timeout: float
                ) -> Outcome:
        """Confirmed, or why not."""
        where = (f"exchange '{message.exchange}' with routing key '{message.routing_key}' "
                 f"on broker '{message.broker}'")
        if done.cancelled():
            return Outcome(False, f"AMQP Action - Message to {where} failed: the attempt "
                                  "was cancelled")
        exc = done.exception()
        if isinstance(exc, TimeoutError):
            return Outcome(False, f"AMQP Action - Message to {where} failed: not confirmed "
                                  f"within {timeout:g} s")
        if isinstance(exc, aiormq.exceptions.PublishError):
            return Outcome(False, f"AMQP Action - Message to {where} failed: the broker "
                                  f"returned it ({exc.args[0] if exc.args else exc}): no "
                                  "queue is bound to take it")
        if exc is not None:
            return Outcome(False, f"AMQP Action - Message to {where} failed: "
                                  f"{str(exc) or type(exc).__name__}")
        return Outcome(True, f"AMQP Action - Message to {where} was confirmed by the broker",
                       {"broker": message.broker, "exchange": message.exchange,
                        "routingKey": message.routing_key, "messageId": message.message_id})

    def describe(self, message: AmqpMessage) -> Mapping[str, Any]:
        """The message as published."""
        return {"broker": message.broker, "exchange": message.exchange,
                "routingKey": message.routing_key, "headers": dict(message.headers),
                "message": message.body.decode(errors="replace")}

    async def close(self) -> None:
        """Close every broker's connection."""
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()
