"""`amqp` actions: a message published to RabbitMQ (AMQP 0-9-1) with publisher confirms.

Each broker (`[brokers.NAME]`, an `amqp://` or `amqps://` URL) gets one connection, and on
it one channel in confirm mode that the messages of every job naming the broker share,
pipelined. A message counts as sent only when the broker confirms it; a nack, a message no
queue took (it is published `mandatory`) or no confirmation within the timeout fails the
attempt. A connection found closed (the broker restarted) is opened again before the next
message.

The broker answers some bad publishes by closing the channel, and then every message in
flight on it fails with that one publish's error (and a publish still queued for the closed
channel can make the broker close the whole connection). So that one job's mistake stays
its own:
- an exchange is looked up (a passive declare, on a channel of its own) before the first
  message to it goes on the shared channel: a message to a missing exchange fails alone,
  and the exchange is looked up again for the next one;
- a header RabbitMQ reads as a list of routing keys (`CC`, `BCC`) is refused before
  anything is sent: a text there makes the broker close the channel;
- a message whose channel or connection closed under it before it was confirmed, for
  whatever reason, is published once more alone, on a channel of its own (on a new
  connection if the old one is gone, and once more if that one is lost too), with the same
  message id: the broker may then hold it twice, and receivers de-duplicate by its
  execution tag. A message the broker refuses that way fails alone, with the broker's
  reason; the others are confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiormq
from aiormq.abc import AbstractConnection, ConfirmationFrameType
from aiormq.channel import Channel
from pamqp.commands import Basic

from scheduler.actions.base import ExecutionContext, Outcome
from scheduler.actions.placeholders import fill_header, fill_text
from scheduler.actions.tags import identification
from scheduler.domain.jobs import Action, AmqpAction

PERSISTENT = 2  # AMQP delivery mode: the broker writes the message to disk
# RabbitMQ routes a message to the queues these headers list as well (sender-selected
# distribution), and closes the channel when one holds anything but a list.
ROUTING_HEADERS = ("CC", "BCC")
# Channels of their own (a lookup, a message published alone) open at once, per broker: after
# a channel closed under thousands of messages, they go again alone without opening
# thousands of channels at once.
OWN_CHANNELS_AT_ONCE = 64
# A publish failed because its channel or connection closed under it, for its own sake or
# another message's, or the channel was closed before it went.
CLOSED_UNDER_IT = (aiormq.exceptions.AMQPChannelError, aiormq.exceptions.AMQPConnectionError,
                   aiormq.exceptions.ChannelInvalidStateError, ConnectionError)
# On a channel of its own, only the connection's loss is another's doing.
CONNECTION_LOST = (aiormq.exceptions.AMQPConnectionError,
                   aiormq.exceptions.ChannelInvalidStateError, ConnectionError)
DEFAULT_EXCHANGE = ""


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


async def _send(channel: Channel, message: AmqpMessage) -> ConfirmationFrameType | None:
    """Publish the message on the channel; returns the broker's answer to it."""
    return await channel.basic_publish(
        message.body, exchange=message.exchange, routing_key=message.routing_key,
        mandatory=True,
        properties=Basic.Properties(headers=dict(message.headers),
                                    message_id=message.message_id, delivery_mode=PERSISTENT),
        # Not waiting for the frame to reach the socket before the next publish may go:
        # the confirmation is what counts.
        wait=False)


class _BrokerLink:
    """One broker's connection and shared confirming channel, opened when first needed and
    again once found closed; and the exchanges known to exist."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: AbstractConnection | None = None
        self._channel: Channel | None = None
        self._opening = asyncio.Lock()
        self._exchanges = {DEFAULT_EXCHANGE}  # found on the broker since it was connected
        self._lookups: dict[str, asyncio.Future[None]] = {}
        self._own_channels = asyncio.Semaphore(OWN_CHANNELS_AT_ONCE)

    async def channel(self) -> Channel:
        """The shared channel, opening the connection first if it is closed or never was."""
        channel = self._open_channel()
        if channel is not None:  # the usual case: no lock for thousands of messages at once
            return channel
        async with self._opening:
            channel = self._open_channel()
            if channel is None:
                connection = await self._connected()
                # The concrete channel: its `basic_publish` takes `wait`, the abstract's not.
                opened = await connection.channel(publisher_confirms=True)
                assert isinstance(opened, Channel)
                self._channel = channel = opened
            return channel

    def _open_connection(self) -> AbstractConnection | None:
        connection = self._connection
        return None if connection is None or connection.is_closed else connection

    def _open_channel(self) -> Channel | None:
        channel = self._channel
        if self._open_connection() is None or channel is None or channel.is_closed:
            return None
        return channel

    async def _connected(self) -> AbstractConnection:
        """The open connection, a new one if it closed; the caller holds `_opening`."""
        connection = self._open_connection()
        if connection is None:
            await self.close()
            connection = self._connection = await aiormq.connect(self.url)
        return connection

    def drop(self, channel: Channel) -> None:
        """Forget a shared channel that failed: the next message opens another."""
        if self._channel is channel:
            self._channel = None

    @contextlib.asynccontextmanager
    async def own_channel(self, *, confirms: bool) -> AsyncIterator[Channel]:
        """A channel for one lookup or one message, closed afterwards: if the broker closes
        it, nothing else was on it."""
        async with self._own_channels:
            async with self._opening:
                connection = await self._connected()
            channel = await connection.channel(publisher_confirms=confirms)
            assert isinstance(channel, Channel)
            try:
                yield channel
            finally:
                if not channel.is_closed:
                    with contextlib.suppress(aiormq.exceptions.AMQPError, OSError):
                        await channel.close()

    async def check_exchange(self, exchange: str) -> None:
        """Raise the broker's refusal if the exchange does not exist. One lookup serves
        every message waiting for it; an exchange found is not looked up again."""
        if exchange in self._exchanges:
            return
        lookup = self._lookups.get(exchange)
        if lookup is None:
            lookup = self._lookups[exchange] = asyncio.ensure_future(self._look_up(exchange))
            lookup.add_done_callback(self._lookup_done)
        # Shielded: one message's timeout does not cancel the lookup others wait for.
        await asyncio.shield(lookup)

    async def _look_up(self, exchange: str) -> None:
        async with self.own_channel(confirms=False) as channel:
            await channel.exchange_declare(exchange, passive=True)
        self._exchanges.add(exchange)

    def _lookup_done(self, lookup: asyncio.Future[None]) -> None:
        for exchange, pending in list(self._lookups.items()):
            if pending is lookup:
                del self._lookups[exchange]
        if not lookup.cancelled():
            lookup.exception()  # read, lest every message waiting for it has timed out

    async def publish_alone(self, message: AmqpMessage) -> ConfirmationFrameType | None:
        """Publish the message on a channel of its own and wait for the broker's answer; once
        more on a new connection if the connection is lost meanwhile."""
        for last_try in (False, True):
            try:
                async with self.own_channel(confirms=True) as channel:
                    return await _send(channel, message)
            except aiormq.exceptions.ChannelNotFoundEntity:
                self._exchanges.discard(message.exchange)  # deleted since it was found
                raise
            except CONNECTION_LOST as exc:
                if last_try:
                    raise ConnectionError(f"the connection to the broker was lost: "
                                          f"{exc or type(exc).__name__}") from exc
        raise AssertionError("unreachable: the last try returns or raises")

    async def close(self) -> None:
        """Close the connection, if open, and forget what was found on the broker."""
        connection, self._connection, self._channel = self._connection, None, None
        self._exchanges = {DEFAULT_EXCHANGE}
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
        """The message to publish; one naming a broker this node does not know, or with a
        header the broker would close the channel over, fails."""
        if not isinstance(action, AmqpAction):
            return Outcome(False, f"AMQP Action - a {action.kind} action is not a message")
        broker = action.broker
        if broker not in self.urls:
            return Outcome(False, f"AMQP Action - no broker named '{broker}' is configured "
                                  "on this engine node")
        headers = {name: fill_header(str(value), context)
                   for name, value in action.headers.items()}
        for name in ROUTING_HEADERS:
            if name in headers:
                return Outcome(False, f"AMQP Action - the header '{name}' is not sent: "
                                      "RabbitMQ reads it as a list of queues to route to")
        headers.update(identification(context))
        body = fill_text(action.message, context).encode()
        return AmqpMessage(broker, action.exchange,
                           fill_text(action.routing_key, context), body, headers,
                           context.execution_id)

    def submit(self, message: AmqpMessage, timeout: float) -> asyncio.Future[Any]:
        """Publish the message; the future is done once the broker confirmed it."""
        return asyncio.ensure_future(self._publish(message, timeout))

    async def _publish(self, message: AmqpMessage, timeout: float) -> None:
        link = self._links.get(message.broker)
        if link is None:
            link = self._links[message.broker] = _BrokerLink(self.urls[message.broker])
        async with asyncio.timeout(timeout):
            await link.check_exchange(message.exchange)
            channel = await link.channel()
            try:
                confirmation = await _send(channel, message)
            except CLOSED_UNDER_IT:
                # Perhaps this message's fault, perhaps another's on the same channel: alone,
                # its own fault fails it and nothing else.
                link.drop(channel)
                confirmation = await link.publish_alone(message)
        if not isinstance(confirmation, Basic.Ack):
            raise NotConfirmed(f"the broker answered {type(confirmation).__name__} instead "
                               "of confirming it")

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
