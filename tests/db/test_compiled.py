"""CompiledStatement reads and writes what SQLAlchemy's own execution does, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

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
    func,
    select,
    update,
)

from scheduler.db.bulk import among_bound, among_values
from scheduler.db.compiled import CompiledStatement
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
    compiled = CompiledStatement(BY_KIND)
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
        row = CompiledStatement(BY_KIND).first(conn, {"kind": "even", "top": 10, "skip": 0})
    assert row is not None
    assert (row.id, row.name, row.flag, row.blob) == (2, "thing 2", True, b"\x02\x02\x02")
    assert row.due == BASE + timedelta(hours=2, microseconds=2)
    assert row.due.tzinfo is not None


class Due(NamedTuple):
    """A row of DUE_BEFORE, typed."""

    id: int
    due: datetime | None


def test_rows_are_of_the_type_given(table: Database) -> None:
    """Given a row type, each row is one, with the values the untyped rows hold."""
    before = BASE + timedelta(hours=3, microseconds=3)
    with table.read_engine.connect() as conn:
        rows = CompiledStatement(DUE_BEFORE, Due).all(conn, {"before": before})
    assert rows == [Due(n, BASE + timedelta(hours=n, microseconds=n)) for n in (1, 2)]
    assert all(type(row) is Due for row in rows)


def test_a_row_type_that_is_not_the_statements_columns_is_refused(table: Database) -> None:
    """Fields that are not the columns, in their order, are refused when first run, rather
    than read into the wrong names."""

    class Swapped(NamedTuple):
        due: datetime | None
        id: int

    with table.read_engine.connect() as conn, pytest.raises(ValueError, match="columns"):
        CompiledStatement(DUE_BEFORE, Swapped).all(conn, {"before": BASE})


def test_bound_datetimes_are_converted(table: Database) -> None:
    """An aware datetime parameter compares as the column type stores it."""
    before = BASE + timedelta(hours=3, microseconds=3)
    with table.read_engine.connect() as conn:
        rows = CompiledStatement(DUE_BEFORE).all(conn, {"before": before})
    assert [row.id for row in rows] == [1, 2]
    assert [tuple(row) for row in rows] == _expected(table, DUE_BEFORE, {"before": before})


def test_missing_row_is_none(table: Database) -> None:
    """No row: `first` answers None and `all` an empty list."""
    compiled = CompiledStatement(BY_KIND)
    params = {"kind": "odd", "top": 10, "skip": 5}
    with table.read_engine.connect() as conn:
        assert compiled.first(conn, params) is None
        assert compiled.all(conn, params) == []


def test_parameters_rendered_at_execution_are_refused(table: Database) -> None:
    """IN lists expand when executed; such a statement is refused, not run wrongly."""
    statement = select(things.c.id).where(things.c.id.in_(bindparam("ids", expanding=True)))
    with table.read_engine.connect() as conn, pytest.raises(ValueError, match="execution"):
        CompiledStatement(statement).all(conn, {"ids": [1, 2]})


RENAME = CompiledStatement(
    update(things).where(things.c.kind == bindparam("kind"))
    .values(name=bindparam("new_name", type_=String()), due=bindparam("due", type_=UTCDateTime))
    .returning(things.c.id, things.c.name, things.c.due))
RENAME_QUIETLY = CompiledStatement(update(things).where(things.c.kind == bindparam("kind"))
                                   .values(name=bindparam("new_name", type_=String())))
ADD = CompiledStatement(things.insert().values(
    {name: bindparam(name, type_=things.c[name].type) for name in ("id", "name", "kind", "flag")}))


def test_an_update_returns_its_rows_converted(table: Database) -> None:
    """UPDATE ... RETURNING: the changed rows, their values as the column types read them."""
    due = BASE + timedelta(days=1)
    with table.engine.begin() as conn:
        rows = RENAME.all(conn, {"kind": "even", "new_name": "renamed", "due": due})
    assert sorted(tuple(row) for row in rows) == [(2, "renamed", due), (4, "renamed", due)]
    with table.read_engine.connect() as conn:
        names = dict(conn.execute(select(things.c.id, things.c.name)).all())
    assert names == {1: "thing 1", 2: "renamed", 3: "hidden", 4: "renamed", 5: "thing 5"}


def test_execute_counts_and_execute_many_writes_every_row(table: Database) -> None:
    """`execute` answers how many rows changed; `execute_many` writes each parameter set."""
    with table.engine.begin() as conn:
        ADD.execute_many(conn, [{"id": n, "name": f"new {n}", "kind": "new", "flag": True}
                                for n in (6, 7)])
        ADD.execute_many(conn, [])
        changed = RENAME_QUIETLY.execute(conn, {"kind": "new", "new_name": "newer"})
    assert changed == 2
    with table.read_engine.connect() as conn:
        rows = conn.execute(select(things.c.id, things.c.name, things.c.flag)
                            .where(things.c.id > 5).order_by(things.c.id)).all()
    assert [tuple(row) for row in rows] == [(6, "newer", True), (7, "newer", True)]


BY_IDS = CompiledStatement(lambda dialect: select(things.c.id).where(
    among_bound(dialect, things.c.id, "ids")).order_by(things.c.id))
BY_NAMES = CompiledStatement(lambda dialect: select(func.count()).where(
    among_bound(dialect, things.c.name, "names")))


@pytest.mark.parametrize("ids", [[], [2], [5, 1, 4], list(range(-500, 500))])
def test_among_bound_matches_the_values_given(table: Database, ids: list[int]) -> None:
    """One statement for any number of values: it finds exactly those given."""
    with table.read_engine.connect() as conn:
        rows = BY_IDS.all(conn, {"ids": among_values(conn, things.c.id, ids)})
    assert [row.id for row in rows] == sorted(set(ids) & {1, 2, 3, 4, 5})


def test_among_bound_takes_strings_that_need_quoting(table: Database) -> None:
    """Quotes, backslashes, commas and braces in a value are matched as they are."""
    odd = 'a "b", {c} \\ d'
    with table.engine.begin() as conn:
        ADD.execute(conn, {"id": 9, "name": odd, "kind": "odd", "flag": False})
    with table.read_engine.connect() as conn:
        found = BY_NAMES.first(conn, {"names": among_values(conn, things.c.name,
                                                            [odd, "NULL", "thing 1"])})
    assert found is not None and tuple(found) == (2,)
