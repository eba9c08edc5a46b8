"""Engines and sessions for SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import create_engine, event, make_url, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from scheduler.db.models import RegistryVersion


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    """WAL lets readers run beside the writer; foreign keys make cascades real."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Reads come straight from the operating system's page cache, shared by every
    # connection, instead of a cold private cache per pooled connection.
    cursor.execute("PRAGMA mmap_size=1073741824")
    cursor.close()


WRITE_LOCK_TIMEOUT = 30.0  # seconds a writer waits for SQLite's write lock
CONNECT_TIMEOUT = 5  # seconds a new PostgreSQL connection may take
_FIRST_RETRY, _LONGEST_RETRY = 0.0002, 0.002


def _begin_immediate(conn: Any, lock_timeout: float = WRITE_LOCK_TIMEOUT) -> None:
    """Take SQLite's write lock at BEGIN, so two writers never deadlock on an upgrade.

    Writers try again every millisecond or two until the lock is free, rather than in
    SQLite's busy handler, whose sleeps grow to 100 ms: a writer of another process (the
    engine beside the API) would otherwise wait long after the lock was released. Once a
    transaction holds the lock, nothing in it waits for another writer (WAL mode).
    """
    waited, delay = 0.0, _FIRST_RETRY
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if not _is_busy(exc) or waited > lock_timeout:
                raise
        time.sleep(delay)
        waited += delay
        delay = min(delay * 2, _LONGEST_RETRY)


def _is_busy(exc: OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock."""
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


def _no_busy_wait(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    """Writers wait for the lock in `_begin_immediate`, not in SQLite."""
    dbapi_connection.execute("PRAGMA busy_timeout=0")


def _sqlite_engine(url: str, immediate: bool, pool_size: int, max_overflow: int,
                   pool_timeout: float, lock_timeout: float = WRITE_LOCK_TIMEOUT) -> Engine:
    """A SQLite engine; `immediate` ones take the write lock when a transaction begins,
    waiting `lock_timeout` seconds at most for it."""
    # A pool as large as the thread count: an overflow connection would be opened (and its
    # pragmas run) and closed again for every request beyond the pool.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           pool_size=pool_size, max_overflow=max_overflow,
                           pool_timeout=pool_timeout, pool_use_lifo=True)
    event.listen(engine, "connect", _enable_sqlite_pragmas)
    # pysqlite's own transaction handling is replaced by explicit BEGINs.
    event.listen(engine, "connect", lambda conn, _rec: setattr(conn, "isolation_level", None))
    if immediate:
        event.listen(engine, "connect", _no_busy_wait)
        event.listen(engine, "begin", lambda conn: _begin_immediate(conn, lock_timeout))
    # Readers run each statement in its own implicit transaction: under WAL every one sees
    # a committed state, and a read never waits for a writer.
    return engine


class Database:
    """One database: an engine and the sessions made from it."""

    def __init__(self, url: str, pool_size: int = 10, *, max_overflow: int | None = None,
                 pool_timeout: float = 30.0, lock_timeout: float = WRITE_LOCK_TIMEOUT
                 ) -> None:
        """`pool_size` should cover the threads that use the database at once; `max_overflow`
        (default: `pool_size`) more connections may be opened for a while, and a thread waits
        `pool_timeout` seconds for one before PoolTimeout, and on SQLite `lock_timeout` for
        the write lock; a PostgreSQL server that does not answer a new connection within
        `CONNECT_TIMEOUT` seconds is taken as unavailable."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        overflow = pool_size if max_overflow is None else max_overflow
        if self.is_sqlite:
            self.engine: Engine = _sqlite_engine(url, True, pool_size, overflow, pool_timeout,
                                                 lock_timeout)
            self.read_engine: Engine = _sqlite_engine(url, False, pool_size, overflow,
                                                      pool_timeout)
        else:
            timeout = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT}
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=overflow,
                                        pool_timeout=pool_timeout, pool_pre_ping=True,
                                        connect_args=timeout)
            self.read_engine = self.engine
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Threads of one process queue for it here, in
        # order, instead of in SQLite's busy handler, which sleeps up to 100 ms between
        # tries and so left a writer waiting long after the lock was free.
        self._write_turn = threading.RLock() if self.is_sqlite else None

    @property
    def url_for_people(self) -> str:
        """The URL, its password hidden, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._write_turn or nullcontext(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def transaction_on(self, conn: Connection) -> Iterator[Session]:
        """A session in the transaction `conn` holds open on PostgreSQL, committed on success,
        rolled back on error. Under READ COMMITTED each statement reads what is committed
        when it runs, so a transaction that only read so far is as good as a new one, and
        carrying on with it saves three round trips (a ping, ROLLBACK and BEGIN)."""
        assert not self.is_sqlite, "SQLite's writers take the write lock when they begin"
        with Session(bind=conn, expire_on_commit=False,
                     join_transaction_mode="control_fully") as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session: never takes SQLite's write lock."""
        with self._read_sessions() as session:
            yield session  # closing the session rolls its transaction back

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A bare read-only connection, for hot read paths that skip the ORM."""
        with self.read_engine.connect() as conn:
            yield conn  # closing the connection rolls its transaction back

    def registry_version(self) -> int:
        """The current version of the certificate registry."""
        with self.read_engine.connect() as conn:
            version = conn.execute(
                select(RegistryVersion.version).where(RegistryVersion.id == 1)
            ).scalar_one()
            conn.rollback()
            return int(version)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        self.read_engine.dispose()
