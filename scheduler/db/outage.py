"""Database outages as the service's background work meets them: telling one from other
errors, logging it once, not once a try, and waiting longer between tries while it lasts."""

from __future__ import annotations

import logging
import sqlite3

import psycopg
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

FIRST_DELAY, LONGEST_DELAY = 0.5, 10.0  # seconds between tries while the database is away


# SQLAlchemy's errors of that kind, and the drivers' own: statements run on the raw cursor
# raise those as they are, not wrapped.
_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout,
                sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError)


def is_unavailable(exc: BaseException) -> bool:
    """Whether an error means the database cannot be used now (unreachable, restarting,
    refusing connections, locked by another process, no pooled connection free), not that
    the statement was wrong: trying again later is the cure."""
    return isinstance(exc, _UNAVAILABLE)


class Outage:
    """One piece of background work's view of the database: while its tries fail, the
    failure is logged once, with the reason, and each wait is twice the last (up to
    `LONGEST_DELAY`); the first try that succeeds logs that the database is back."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log, self.what = log, what
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        """Note a failed try; returns how long to wait before the next."""
        if self.failures == 0:
            self.log.warning("%s: the database is unavailable (%s: %s); trying again until "
                             "it is back", self.what, type(exc).__name__,
                             str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        self.failures += 1
        delay: float = min(FIRST_DELAY * 2.0 ** (self.failures - 1), LONGEST_DELAY)
        return delay

    def succeeded(self) -> None:
        """Note a try that worked."""
        if self.failures:
            self.log.warning("%s: the database is back after %d failed tries", self.what,
                             self.failures)
        self.failures = 0
