"""The engines' dead man's switch: a call to an outside monitor (`engine.heartbeat_url`,
such as a Healthchecks or Cronitor check) once per interval for the whole cluster, and to
its `/fail` variant while occurrences are being missed, so that the monitor raises the alarm
when the calls stop: every engine down, stuck, or cut off from the database.

Which node calls is decided in the database (`Engine.take_ping`): the node that moves the
cluster's last ping time on, once an interval has passed since it last moved, calls. So a
node that cannot reach the database never calls, and a cluster whose nodes all lost it goes
silent, which is what the monitor notices. The call goes out in a task of its own: a monitor
that does not answer delays nothing else, and its failure never touches firing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from scheduler.settings import EngineSettings

log = logging.getLogger(__name__)

# An occurrence still not made this long after its time is being missed: no node makes it.
# A job's occurrences are made ahead of their time (`engine.lookahead_seconds`), so a
# working cluster is never this late; a stuck one is, before it records the occurrence as
# missed (which it does only once a later occurrence of the job is due too).
LATE_AFTER = timedelta(minutes=1)
# How long a call to the monitor may take, at most (and no longer than the interval).
PING_TIMEOUT = 10.0

# Makes one call: GET the URL within the timeout; None when a 2xx answer came, else why not.
Pinger = Callable[[str, float], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class PingReport:
    """What the ping of one interval tells the monitor, as the node that took it found the
    database: the occurrences recorded as missed since the last ping, and the earliest fire
    time of a job that fires, not made yet (None: no job is due)."""

    taken_at: datetime
    missed: int
    earliest_due: datetime | None

    @property
    def late(self) -> timedelta:
        """How long the earliest occurrence not made yet is past its time (zero if none)."""
        if self.earliest_due is None or self.earliest_due >= self.taken_at:
            return timedelta(0)
        return self.taken_at - self.earliest_due

    @property
    def missing(self) -> bool:
        """Whether occurrences are being missed: some were recorded as missed since the last
        ping, or one is still not made `LATE_AFTER` past its time."""
        return self.missed > 0 or self.late > LATE_AFTER

    def why_failing(self) -> str:
        """The reason for a `/fail` call, in words."""
        reasons = []
        if self.missed:
            reasons.append(f"{self.missed} occurrences recorded as missed since the last ping")
        if self.late > LATE_AFTER:
            reasons.append(f"an occurrence still not made {self.late.total_seconds():.0f} s "
                           "after its time")
        return "; ".join(reasons)


def fail_url(url: str) -> str:
    """The URL's `/fail` variant (Healthchecks' convention): `/fail` appended to its path,
    its query kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


class DeadMansSwitch:
    """The monitor's URL, how often the cluster calls it, and the calls under way; each
    kind of failure (the database, the call) is logged once per streak."""

    def __init__(self, url: str, interval: timedelta, pinger: Pinger,
                 timeout: float = PING_TIMEOUT) -> None:
        self.url, self.interval, self.pinger = url, interval, pinger
        self.timeout = min(timeout, interval.total_seconds())
        self._host = urlsplit(url).hostname or url  # the URL may hold the check's secret
        self._sending: set[asyncio.Future[None]] = set()
        self._call_failing = False
        self._database_failing = False

    def send(self, report: PingReport) -> None:
        """Call the monitor for this interval, in a task of its own: the URL, or its `/fail`
        variant while occurrences are being missed."""
        url = self.url
        if report.missing:
            url = fail_url(url)
            log.warning("dead man's switch: calling %s's /fail: %s", self._host,
                        report.why_failing())
        task = asyncio.ensure_future(self._call(url))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _call(self, url: str) -> None:
        """Make one call; log a failure once per streak, and the first success after one."""
        try:
            problem = await self.pinger(url, self.timeout)
        except Exception as exc:  # a pinger's own fault must not end the heartbeat
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            if self._call_failing:
                log.warning("dead man's switch: %s answered again", self._host)
            self._call_failing = False
            return
        if not self._call_failing:
            log.warning("dead man's switch: the call to %s failed (%s); trying every %g s",
                        self._host, problem, self.interval.total_seconds())
        self._call_failing = True

    def database_failed(self, exc: BaseException) -> None:
        """The database could not say whether this node calls: no call this time."""
        if not self._database_failing:
            log.warning("dead man's switch: no call while the database cannot be used "
                        "(%s: %s)", type(exc).__name__,
                        (str(exc).strip().splitlines() or [""])[0])
        self._database_failing = True

    def database_answered(self) -> None:
        """The database said whether this node calls."""
        if self._database_failing:
            log.warning("dead man's switch: the database is back")
        self._database_failing = False

    async def sent(self) -> None:
        """Wait for the calls under way to end."""
        while self._sending:
            await asyncio.wait(list(self._sending))

    def close(self) -> None:
        """Abandon the calls under way: the node stops."""
        for task in self._sending:
            task.cancel()


def dead_mans_switch(settings: EngineSettings, pinger: Pinger) -> DeadMansSwitch | None:
    """The switch the settings ask for, its calls made by `pinger`; None when
    `engine.heartbeat_url` is not set."""
    if not settings.heartbeat_url:
        return None
    return DeadMansSwitch(settings.heartbeat_url,
                          timedelta(seconds=settings.heartbeat_interval_seconds), pinger)
