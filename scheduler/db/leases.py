"""Leases: a row held by one node until a time, taken over by another once that time passed.

Operations and executions are both leased this way: the node that holds a row extends its
lease while it works and releases it when done; a node that dies leaves a lease that runs out,
and any other node may then take the row over. Rows carry `lease_owner` and `lease_until`.

Engine nodes also keep a heartbeat row (`Heartbeats`): a node whose heartbeat stopped is dead,
and the rows it held are released for another node at once, long before their leases run out.
The row also carries the node's count of the attempts it could not make in the last minute,
which `/readyz`, served by other processes, sums over the live nodes.

The statements here are those both the engine's store and the services run.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Update,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from scheduler.db.bulk import among
from scheduler.db.models import ENGINE_NODES

# A value, or a parameter bound when a statement built once is run.
Moment = datetime | ColumnElement[datetime]
Owner = str | ColumnElement[str]


class Leases:
    """The leases on the rows of one table, while their status is `held_status`."""

    def __init__(self, table: Table, held_status: str) -> None:
        self.table, self.held_status = table, held_status
        self.owner_column = table.c.lease_owner
        self.until_column = table.c.lease_until

    def lapsed(self, now: Moment) -> ColumnElement[bool]:
        """Rows held by nobody any more: released, or their lease ran out."""
        until = self.until_column
        return and_(self.table.c.status == self.held_status,
                    or_(until.is_(None), until < now))

    def held_by(self, owner: Owner) -> ColumnElement[bool]:
        """Rows `owner` holds."""
        return and_(self.owner_column == owner, self.table.c.status == self.held_status)

    def taken(self, owner: Owner, until: Moment) -> dict[str, Any]:
        """The column values of a row leased to `owner` until `until`."""
        return {"lease_owner": owner, "lease_until": until}

    @staticmethod
    def released() -> dict[str, Any]:
        """The column values of a row nobody holds."""
        return {"lease_owner": None, "lease_until": None}

    def extend(self, dialect: str, ids: Collection[Any], owner: str, until: datetime
               ) -> Update:
        """Extend the leases `owner` still holds on these rows."""
        return update(self.table).where(among(dialect, self.table.c.id, ids),
                                        self.held_by(owner)).values(lease_until=until)

    def release_all(self, owner: str) -> Update:
        """Hand back every row `owner` holds, for another node to take at once."""
        return update(self.table).where(self.held_by(owner)).values(**self.released())

    def release(self, dialect: str, ids: Collection[Any], owner: str) -> Update:
        """Hand back these rows, those of them `owner` still holds."""
        return update(self.table).where(among(dialect, self.table.c.id, ids),
                                        self.held_by(owner)).values(**self.released())

    def release_owners(self, dialect: str, owners: Collection[str]) -> Update:
        """Hand back every row these owners hold, for another node to take at once."""
        return update(self.table).where(
            self.table.c.status == self.held_status,
            among(dialect, self.owner_column, owners)).values(**self.released())

    def release_unless_owned_by(self, owners: Select[tuple[str]]) -> Update:
        """Hand back every held row whose owner is not one of `owners`."""
        return update(self.table).where(
            self.table.c.status == self.held_status, self.owner_column.is_not(None),
            self.owner_column.not_in(owners.scalar_subquery())).values(**self.released())


class Heartbeats:
    """The heartbeat rows of engine nodes: a node renews its own every second or so, and a
    node whose heartbeat is older than a few seconds is dead."""

    table = ENGINE_NODES

    def beat(self, session: Session, node: str, now: datetime,
             unrunnable: Mapping[str, int] | None = None, name: str | None = None) -> None:
        """Record that `node`, named `name`, is alive at `now`, and the attempts it could not
        make in the minute before, by reason."""
        table = self.table
        figures = json.dumps(dict(sorted(unrunnable.items()))) if unrunnable else None
        renewed = session.execute(update(table).where(table.c.id == node).values(
            heartbeat_at=now, unrunnable_last_minute=figures, name=name))
        if not renewed.rowcount:  # type: ignore[attr-defined]
            session.execute(insert(table).values(id=node, started_at=now, heartbeat_at=now,
                                                 unrunnable_last_minute=figures, name=name))

    def holder(self, session: Session, name: str, since: datetime, besides: str
               ) -> str | None:
        """A node other than `besides`, named `name`, whose heartbeat came at `since` or
        later; None if there is none. On PostgreSQL, nodes starting under one name at once
        wait here for each other (a lock until the transaction ends), so that the second
        sees the first."""
        table = self.table
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))
        return session.scalar(select(table.c.id).where(
            table.c.name == name, table.c.heartbeat_at >= since, table.c.id != besides)
            .limit(1))

    def live_names(self, since: datetime) -> Select[str | None]:
        """The names of the nodes whose heartbeat came at `since` or later."""
        table = self.table
        return select(table.c.name).where(table.c.heartbeat_at >= since)

    def live(self, since: datetime) -> Select[tuple[str]]:
        """The nodes whose heartbeat came at `since` or later."""
        return select(self.table.c.id).where(self.table.c.heartbeat_at >= since)

    def live_unrunnable(self, since: datetime) -> Select[str | None]:
        """What each node whose heartbeat came at `since` or later last said of the attempts
        it could not make (see `unrunnable_total`): a row per live node."""
        table = self.table
        return select(table.c.unrunnable_last_minute).where(table.c.heartbeat_at >= since)

    def dead(self, session: Session, before: datetime, besides: str) -> list[str]:
        """The nodes other than `besides` whose last heartbeat came before `before`."""
        table = self.table
        return list(session.scalars(select(table.c.id).where(
            table.c.heartbeat_at < before, table.c.id != besides)))

    def forget(self, session: Session, nodes: Collection[str]) -> None:
        """Remove the rows of these nodes."""
        if nodes:
            dialect = session.get_bind().dialect.name
            session.execute(delete(self.table).where(among(dialect, self.table.c.id, nodes)))

    def forget_all_but(self, session: Session, node: str) -> None:
        """Remove every row but that of `node`."""
        session.execute(delete(self.table).where(self.table.c.id != node))
