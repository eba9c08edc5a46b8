"""The home a database belongs to.

A database serves one home: its subscriptions, its CA and the one secret key file that seals
every stored secret. The `home` table's one row holds a check of that key (a known text
sealed with it), so that a node started with another home's keys is refused before it
claims anything it could not open, and a second `init` on the database is refused before it
adds a subscription whose secrets the first home's nodes could not open.

`init` writes the row. A database made before the row existed gets it from the first node
that starts on it with its key: the row's fixed primary key lets only one insert in, so two
nodes started at once with different keys cannot both win; the other is refused.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, literal, select, table, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.db.models import HOME, Home
from scheduler.db.session import Database
from scheduler.security.secrets import SecretBox

HOME_ROW = 1  # the id of the table's one row
# The tables whose rows mean a home was made on the database, whatever its revision.
HOME_TABLES = ("home", "subscriptions")


class HomeKeyMismatch(Exception):
    """The key file opens nothing of what the database's home sealed: it is another
    home's."""


def holds_a_home(db: Database) -> bool:
    """Whether a home was made on this database: it has its row, or a subscription (made
    before the row existed). Only reads: a database of any revision is left as it is."""
    with db.read_engine.connect() as conn:
        found = any(_has_rows(conn, name) for name in HOME_TABLES)
        conn.rollback()
        return found


def _has_rows(conn: Connection, table_name: str) -> bool:
    """Whether the table exists and holds a row."""
    if not inspect(conn).has_table(table_name):
        return False
    return conn.execute(select(literal(1)).select_from(table(table_name)).limit(1)
                        ).first() is not None


def record_home_key(session: Session, box: SecretBox) -> None:
    """Write the home's row with the check of the box's key, in the caller's transaction;
    IntegrityError (at flush or commit) if the database already has one."""
    session.add(Home(id=HOME_ROW, key_check=box.key_check()))
    session.flush()


def check_home_key(db: Database, box: SecretBox) -> None:
    """Refuse (HomeKeyMismatch) a box whose keys do not open the database's key check; on a
    database without one yet, write the box's, unless another node wrote its own first."""
    check = _key_check(db)
    if check is None:
        try:
            with db.transaction() as session:
                record_home_key(session, box)
            return
        except IntegrityError:  # another node recorded its key meanwhile: check against it
            check = _key_check(db)
            assert check is not None
    if not box.opens_key_check(check):
        raise HomeKeyMismatch("the key file's keys do not open the key check of the home "
                              "this database belongs to")


def _key_check(db: Database) -> bytes | None:
    """The database's key check; None before a node or `init` wrote it."""
    with db.snapshot() as session:
        return session.scalar(select(Home.key_check).where(Home.id == HOME_ROW))


def reseal_home_key(session: Session, box: SecretBox) -> bool:
    """Seal the key check again with the box's newest key (key rotation); whether there was
    one to reseal."""
    check = session.scalar(select(Home.key_check).where(Home.id == HOME_ROW))
    if check is None:
        return False
    session.execute(update(HOME).where(HOME.c.id == HOME_ROW, HOME.c.key_check == check)
                    .values(key_check=box.rotate(check)))
    return True
