"""CompiledSelect reads what SQLAlchemy's own execution reads, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    select,
)

from scheduler.db.compiled import CompiledSelect
from scheduler.db.models import UTCDateTime
from scheduler.db.session import Database

metadata = MetaData()
things = Table(
    "compiled_select_things", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20)),
    Column("kind", String(10)),
    Column("due", UTCDateTime, nullable=True),
    Column("flag", Boolean),
    Column("blob", LargeBinary, nullable=True),
)
BASE = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
# Literal values in the statement become bound constants; the caller binds the rest.
BY_KIND = (select(things).where(things.c.kind == bindparam("kind"), things.c.name != "hidden")
           .order_by(things.c.id).limit(bindparam("top")).offset(bindparam("skip")))
DUE_BEFORE = select(things.c.id, things.c.due).where(things.c.due < bindparam("before")) \
    .order_by(things.c.id)


@pytest.fixture
def table(db: Database) -> Iterator[Database]:
    """The test table with five rows, one without a date or blob, one hidden."""
    metadata.create_all(db.engine)
    rows: list[dict[str, Any]] = [
        {"id": n, "name": "hidden" if n == 3 else f"thing {n}", "kind": "odd" if n % 2 else "even",
         "due": None if n == 4 else BASE + timedelta(hours=n, microseconds=n),
         "flag": n % 2 == 0, "blob": None if n == 4 else bytes([n]) * 3}
        for n in range(1, 6)
    ]
    with db.engine.begin() as conn:
        conn.execute(things.insert(), rows)
    yield db
    metadata.drop_all(db.engine)


def _expected(db: Database, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with db.read_engine.connect() as conn:
        return [tuple(row) for row in conn.execute(statement, params)]


@pytest.mark.parametrize("params", [
    {"kind": "odd", "top": 10, "skip": 0},
    {"kind": "even", "top": 10, "skip": 0},
    {"kind": "odd", "top": 1, "skip": 1},
    {"kind": "none", "top": 10, "skip": 0},
])
def test_rows_equal_sqlalchemys_own(table: Database, params: dict[str, Any]) -> None:
    """Same rows, same values and types: aware datetimes, booleans, bytes and NULLs."""
    compiled = CompiledSelect(BY_KIND)
    with table.read_engine.connect() as conn:
        rows = compiled.all(conn, params)
        first = compiled.first(conn, params)
    expected = _expected(table, BY_KIND, params)
    assert [tuple(row) for row in rows] == expected
    assert [type(value) for row in rows for value in row] == \
        [type(value) for row in expected for value in row]
    assert (tuple(first) if first is not None else None) == (expected[0] if expected else None)


def test_columns_are_attributes(table: Database) -> None:
    """A row's columns are read by name, as on SQLAlchemy's rows."""
    with table.read_engine.connect() as conn:
        row = CompiledSelect(BY_KIND).first(conn, {"kind": "even", "top": 10, "skip": 0})
    assert row is not None
    assert (row.id, row.name, row.flag, row.blob) == (2, "thing 2", True, b"\x02\x02\x02")
    assert row.due == BASE + timedelta(hours=2, microseconds=2)
    assert row.due.tzinfo is not None


def test_bound_datetimes_are_converted(table: Database) -> None:
    """An aware datetime parameter compares as the column type stores it."""
    before = BASE + timedelta(hours=3, microseconds=3)
    with table.read_engine.connect() as conn:
        rows = CompiledSelect(DUE_BEFORE).all(conn, {"before": before})
    assert [row.id for row in rows] == [1, 2]
    assert [tuple(row) for row in rows] == _expected(table, DUE_BEFORE, {"before": before})


def test_missing_row_is_none(table: Database) -> None:
    """No row: `first` answers None and `all` an empty list."""
    compiled = CompiledSelect(BY_KIND)
    params = {"kind": "odd", "top": 10, "skip": 5}
    with table.read_engine.connect() as conn:
        assert compiled.first(conn, params) is None
        assert compiled.all(conn, params) == []


def test_parameters_rendered_at_execution_are_refused(table: Database) -> None:
    """IN lists expand when executed; such a statement is refused, not run wrongly."""
    statement = select(things.c.id).where(things.c.id.in_(bindparam("ids", expanding=True)))
    with table.read_engine.connect() as conn, pytest.raises(ValueError, match="execution"):
        CompiledSelect(statement).all(conn, {"ids": [1, 2]})
