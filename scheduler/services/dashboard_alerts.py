"""Alerts and notification channels as the dashboard shows them: a job's alert rules and
where they come from, each alert's delivery to each of its channels, a collection's channels
with what each does and how its last test message went."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from scheduler.db.models import AuditEvent
from scheduler.domain.alerts import AlertRules, AlertStatus
from scheduler.services import alerts, notifications
from scheduler.services.alerts import SentAlert

# The alerts a job's page lists, and a collection's alerts page.
JOB_ALERTS_SHOWN = 20
COLLECTION_ALERTS_SHOWN = 50
# How many of a collection's latest test messages are read for the last of each channel: a
# collection holds at most 20 channels.
TESTS_READ = 200
TEST_KIND = "channel.test"


@dataclass(frozen=True, slots=True)
class RulesShown:
    """A job's alert rules in words, and whose they are: `own`, `default` (its
    collection's, as the job sets none) or `none`."""

    source: str
    words: str | None


@dataclass(frozen=True, slots=True)
class ChannelDelivery:
    """Where an alert's delivery to one channel stands: taken, refused (with why), or not
    tried yet; and when it is tried again, while the alert is pending."""

    channel: str
    delivered: bool
    tried: bool
    error: str | None
    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertLine:
    """An alert as a row of the dashboard: the alert and its delivery per channel."""

    alert: SentAlert
    deliveries: tuple[ChannelDelivery, ...]

    @property
    def gave_up(self) -> bool:
        """Whether its delivery is over and some channel never took it."""
        return self.alert.status == AlertStatus.FAILED.value


@dataclass(frozen=True, slots=True)
class ChannelLine:
    """A channel as the dashboard lists it: name, type, what it does (no secret), and its
    last test message."""

    name: str
    type: str
    summary: str
    last_test: ChannelTest | None


@dataclass(frozen=True, slots=True)
class ChannelTest:
    """A test message sent to a channel: when, by whom, and whether it arrived."""

    at: datetime
    actor: str
    delivered: bool
    error: str | None


def job_rules(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
              own: AlertRules | None) -> RulesShown:
    """A job's alert rules in words: its `own`, else its collection's default, else none."""
    if own is not None:
        return RulesShown("own", alerts.summary(own))
    default = alerts.read_default_rules(conn, subscription_id, cloud_service, collection)
    return default_rules(default)


def default_rules(default: AlertRules | None) -> RulesShown:
    """A collection's default alert rules in words; `none` when it has none."""
    if default is None:
        return RulesShown("none", None)
    return RulesShown("default", alerts.summary(default))


def alert_lines(found: Sequence[SentAlert]) -> list[AlertLine]:
    """The alerts as rows, each with its delivery to each channel it names (in their
    order), then to any other channel it was tried on."""
    return [AlertLine(alert, tuple(_deliveries(alert))) for alert in found]


def _deliveries(alert: SentAlert) -> list[ChannelDelivery]:
    names = list(alert.channels) + [name for name in alert.deliveries
                                    if name not in alert.channels]
    retry_at = alert.next_attempt_at if alert.status == AlertStatus.PENDING.value else None
    shown = []
    for name in names:
        entry = alert.deliveries.get(name)
        if not isinstance(entry, dict):
            shown.append(ChannelDelivery(name, False, False, None, retry_at))
            continue
        delivered = bool(entry.get("delivered"))
        error = entry.get("error")
        shown.append(ChannelDelivery(name, delivered, True,
                                     None if delivered or error is None else str(error),
                                     None if delivered else retry_at))
    return shown


def job_alerts(conn: Connection, subscription_id: str, cloud_service: str, collection: str,
               job_id: str, top: int = JOB_ALERTS_SHOWN) -> list[AlertLine]:
    """A job's latest alerts as rows, newest first."""
    return alert_lines(alerts.list_alerts(conn, subscription_id, cloud_service, collection,
                                          job_id=job_id, top=top))


def collection_alerts(conn: Connection, subscription_id: str, cloud_service: str,
                      collection: str, top: int = COLLECTION_ALERTS_SHOWN
                      ) -> list[AlertLine]:
    """The latest alerts of a collection's jobs as rows, newest first."""
    return alert_lines(alerts.list_alerts(conn, subscription_id, cloud_service, collection,
                                          top=top))


def channel_lines(conn: Connection, subscription_id: str, cloud_service: str,
                  collection: str) -> list[ChannelLine]:
    """A collection's channels by name, each with what it does in words that hold no
    secret and its last test message. `cloud_service` and `collection` are spelled as the
    resources spell them, as the audit keeps them."""
    tests = last_tests(conn, subscription_id, cloud_service, collection)
    return [ChannelLine(channel.name, channel.type, notifications.summary(channel),
                        tests.get(channel.name.lower()))
            for channel in notifications.list_channels(conn, subscription_id, cloud_service,
                                                       collection)]


def last_tests(conn: Connection, subscription_id: str, cloud_service: str,
               collection: str) -> dict[str, ChannelTest]:
    """The last test message of each channel of a collection (by its name in lower case),
    as the audit recorded it."""
    rows = conn.execute(
        select(AuditEvent.at, AuditEvent.actor, AuditEvent.detail)
        .where(AuditEvent.subscription_id == subscription_id,
               AuditEvent.cloud_service == cloud_service,
               AuditEvent.collection == collection, AuditEvent.job_id.is_(None),
               AuditEvent.kind == TEST_KIND)
        .order_by(AuditEvent.id.desc()).limit(TESTS_READ))
    found: dict[str, ChannelTest] = {}
    for at, actor, detail in rows:
        read = read_test(detail or "")
        if read is not None and read[0].lower() not in found:
            found[read[0].lower()] = ChannelTest(at, actor, read[1], read[2])
    return found


def read_test(detail: str) -> tuple[str, bool, str | None] | None:
    """A test's channel, whether it arrived and why not, from the detail the audit keeps
    (`channel NAME: delivered`, `channel NAME: not delivered: WHY`); None for another."""
    head, colon, outcome = detail.partition(": ")
    if not colon or not head.startswith("channel ") or " " in head[8:] or not head[8:]:
        return None
    if outcome == "delivered":
        return head[8:], True, None
    prefix = "not delivered: "
    if outcome.startswith(prefix):
        return head[8:], False, outcome[len(prefix):]
    return None
