"""Leases: a row held by one node until a time, taken over by another once that time passed.

Operations and executions are both leased this way: the node that holds a row extends its
lease while it works and releases it when done; a node that dies leaves a lease that runs out,
and any other node may then take the row over. Rows carry `lease_owner` and `lease_until`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, Update, and_, or_, update

from scheduler.db.bulk import among

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
