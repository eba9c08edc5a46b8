"""Delivering alerts: each due alert leased to this node, sent to every channel its rules
name that has not taken it yet, and stored with each channel's outcome; a channel that
refused it is tried again with backoff, up to the last try.

The courier works beside the firing loop and never in its way: its sends run on threads of
their own (an SMTP server may take its whole timeout), its reads and writes are short
transactions of their own, and nothing the loop does waits for it. It looks for due alerts
when this node made some, and otherwise every `POLL` (alerts of other nodes that stopped
before delivering theirs, retries falling due).

An alert is made once, but a node that stops between sending and storing the outcome leaves
its lease to run out, and another node sends it again: a webhook carries the alert's id as
`webhook-id` (the same on every try), so that a receiver can tell a repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from scheduler.clock import Clock
from scheduler.db.alerts import DeliveryResult, DueAlert
from scheduler.db.outage import Outage, is_unavailable
from scheduler.domain.alerts import (
    MAX_DELIVERY_ATTEMPTS,
    AlertEvent,
    AlertStatus,
    alert_subject,
    alert_text,
    retry_after,
    wire_facts,
)
from scheduler.domain.durations import format_datetime
from scheduler.domain.notifications import Channel, Delivery, Notification
from scheduler.engine.metrics import EngineMetrics
from scheduler.services.notifications import ChannelSender

log = logging.getLogger(__name__)

# How often a node looks for due alerts when it made none itself.
POLL = timedelta(seconds=5)
# How long a node holds the alerts it took: past it, another node may send them again.
LEASE = timedelta(minutes=2)
BATCH = 50
SENDERS = 4  # threads that send: a slow channel holds one of them, never the loop
# Executions not started in time a round reads at most, the longest overdue first.
UNSTARTED_READ = 1000


@dataclass(frozen=True, slots=True)
class Parcel:
    """A due alert with its channels opened, by name in lower case; a channel that cannot
    be used is the reason why."""

    alert: DueAlert
    channels: Mapping[str, Channel | str]


class AlertNode(Protocol):
    """What the courier asks of its engine node: database steps, run in a thread."""

    def take_alerts(self, now: datetime, until: datetime, limit: int) -> list[Parcel]:
        """Lease the alerts due for delivery, their channels opened."""
        ...

    def alert_unstarted(self, now: datetime, limit: int) -> int:
        """Make the `late` alerts of executions not started in time; how many."""
        ...

    def finish_alerts(self, results: list[DeliveryResult]) -> None:
        """Store what the tries came to."""
        ...

    def next_alert_time(self) -> datetime | None:
        """When the next alert is due for delivery."""
        ...


class Timers(Protocol):
    """Where the courier sets its timer: the loop's."""

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Any:
        """Run `callback(*args)` in `delay` seconds."""
        ...


class AlertCourier:
    """Delivers the alerts due, through `sender`; links point into the dashboard at
    `public_url` when there is one."""

    def __init__(self, sender: ChannelSender, clock: Clock, metrics: EngineMetrics,
                 public_url: str | None = None, poll: timedelta = POLL,
                 batch: int = BATCH) -> None:
        self.sender, self.clock, self.metrics = sender, clock, metrics
        self.public_url = public_url.rstrip("/") if public_url else None
        self.poll, self.batch = poll, batch
        self._node: AlertNode | None = None
        self._timers: Timers | None = None
        self._run: Callable[[Coroutine[Any, Any, None]], None] | None = None
        self._timer: Any = None
        self._next_delay = 0.0
        self._busy = self._again = self._running = False
        self._outage = Outage(log, "alert delivery")
        self._threads = ThreadPoolExecutor(SENDERS, thread_name_prefix="alerts")

    # --- its life beside the loop --------------------------------------------------------

    def start(self, node: AlertNode, timers: Timers,
              run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        """Begin: a round at once, then one per `poll` or as `poke` asks; `run` keeps a
        round going in the background (the loop's own checks)."""
        self._node, self._timers, self._run = node, timers, run
        self._running = True
        run(self._round())

    @property
    def next_round_in(self) -> float | None:
        """In how many seconds the next round is set (None: none is, as while one runs)."""
        return self._next_delay if self._timer is not None else None

    def poke(self) -> None:
        """This node made alerts: deliver them now."""
        if not self._running or self._run is None:
            return
        if self._busy:
            self._again = True
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._run(self._round())

    def stop(self) -> None:
        """Set no more rounds; sends under way end on their own timeouts."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._threads.shutdown(wait=False)

    async def _round(self) -> None:
        """Deliver what is due until nothing more is, then set the next round."""
        if self._busy:
            self._again = True
            return
        self._busy = True
        tried = 0
        try:
            # Executions no node has started: the `late` alerts of those overdue are made
            # here, as no recording of theirs makes them.
            await asyncio.to_thread(self._node_or_fail().alert_unstarted, self.clock.now(),
                                    UNSTARTED_READ)
            again = True
            while again:
                self._again = False
                done = await self.deliver_due()
                tried += done
                again = done >= self.batch or self._again
            self._outage.succeeded()
        except Exception as exc:  # the next round tries again
            if is_unavailable(exc):
                self._outage.failed(exc)
            else:
                log.exception("alert delivery failed; trying again in %g s",
                              self.poll.total_seconds())
        finally:
            self._busy = False
        await self._set_next(tried)

    async def _set_next(self, tried: int = 0) -> None:
        """Set the next round: when the next alert is due, at most `poll` away; never at
        once after a round that found nothing to try, lest a due alert another node holds
        keep this one busy."""
        if not self._running or self._timers is None or self._node is None:
            return
        delay = self.poll.total_seconds()
        try:
            due = await asyncio.to_thread(self._node.next_alert_time)
        except Exception:
            due = None
        if due is not None and (tried or due > self.clock.now()):
            delay = min(delay, max(0.0, (due - self.clock.now()).total_seconds()))
        if self._running:
            self._next_delay = delay
            self._timer = self._timers.call_later(delay, self._wake)

    def _wake(self) -> None:
        self._timer = None
        if self._running and self._run is not None:
            self._run(self._round())

    # --- one round ---------------------------------------------------------------------------

    def _node_or_fail(self) -> AlertNode:
        assert self._node is not None, "start the courier first"
        return self._node

    async def deliver_due(self) -> int:
        """Take the alerts due, try each channel that has not taken them, store the
        outcomes; returns how many alerts were tried."""
        node = self._node_or_fail()
        now = self.clock.now()
        parcels = await asyncio.to_thread(node.take_alerts, now, now + LEASE, self.batch)
        if not parcels:
            return 0
        results = await asyncio.gather(*(self._deliver(parcel) for parcel in parcels))
        await asyncio.to_thread(node.finish_alerts, list(results))
        return len(parcels)

    async def _deliver(self, parcel: Parcel) -> DeliveryResult:
        """Try an alert's channels that have not taken it yet, one after another."""
        alert = parcel.alert
        deliveries: dict[str, dict[str, Any]] = json.loads(alert.deliveries or "{}")
        notification = self.notification(alert)
        events = asyncio.get_running_loop()
        for name in json.loads(alert.channels):
            if deliveries.get(name, {}).get("delivered"):
                continue
            channel = parcel.channels.get(name.lower())
            if channel is None:
                outcome = Delivery(False, f"the job collection has no channel named {name}")
            elif isinstance(channel, str):
                outcome = Delivery(False, channel)
            else:
                outcome = await events.run_in_executor(self._threads, self._send, channel,
                                                       notification)
            if not outcome.delivered:
                self.metrics.alert_tries_failed.inc()
            deliveries[name] = {"delivered": outcome.delivered, "error": outcome.error,
                                "at": format_datetime(self.clock.now())}
        return self._result(alert, deliveries)

    def _send(self, channel: Channel, notification: Notification) -> Delivery:
        try:
            return self.sender.send(channel, notification)
        except Exception as exc:  # a sender's own fault is that channel's failure
            return Delivery(False, f"{type(exc).__name__}: {exc}")

    def _result(self, alert: DueAlert, deliveries: dict[str, dict[str, Any]]
                ) -> DeliveryResult:
        """What an alert's try comes to: sent when every channel took it, failed when one
        still refused it after the last try, else due again after a backoff."""
        now = self.clock.now()
        attempts = alert.attempts + 1
        text = json.dumps(deliveries, separators=(",", ":"))
        if all(entry.get("delivered") for entry in deliveries.values()):
            self.metrics.alerts_sent.inc()
            return DeliveryResult(alert.id, AlertStatus.SENT, text, attempts, None, now)
        if attempts >= MAX_DELIVERY_ATTEMPTS:
            self.metrics.alerts_failed.inc()
            log.warning("alert %s of job %s could not be delivered after %d tries: %s",
                        alert.id, alert.job_id, attempts, _errors(deliveries))
            return DeliveryResult(alert.id, AlertStatus.FAILED, text, attempts, None, now)
        return DeliveryResult(alert.id, AlertStatus.PENDING, text, attempts,
                              now + retry_after(attempts), None)

    # --- the message -------------------------------------------------------------------------

    def notification(self, alert: DueAlert) -> Notification:
        """The message of an alert: its words, its facts and a link to what it is about."""
        event = AlertEvent(alert.event)
        facts: dict[str, object] = json.loads(alert.facts)
        fields: dict[str, object] = {"event": event.value, "job": alert.job_id,
                                     "cloudService": alert.cloud_service,
                                     **wire_facts(facts)}
        if alert.execution_id is not None:
            fields["executionId"] = alert.execution_id
        return Notification(
            id=alert.id, kind=f"alert.{event.value}", collection=alert.collection,
            time=alert.created_at, subject=alert_subject(event, alert.job_id, alert.collection),
            text=alert_text(event, alert.job_id, facts), fields=fields, link=self.link(alert))

    def link(self, alert: DueAlert) -> str | None:
        """The dashboard's page of the alert's execution (of its job, when it has none)."""
        if self.public_url is None:
            return None
        page = (f"{self.public_url}/ui/{alert.subscription_id}/cloudservices/"
                f"{alert.cloud_service}/resources/scheduler/~/jobcollections/"
                f"{alert.collection}/jobs/{alert.job_id}")
        if alert.execution_id is not None:
            page += f"/executions/{alert.execution_id}"
        return page


def _errors(deliveries: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(f"{name}: {entry.get('error')}" for name, entry in deliveries.items()
                     if not entry.get("delivered"))
