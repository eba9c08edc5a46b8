"""The batched writes of a tick and a recording: rows written with values some columns share
read back as written, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, bindparam, select

from scheduler.db.bulk import insert_rows, update_rows
from scheduler.db.compiled import CompiledStatement, all_same, convert_all
from scheduler.db.models import UTCDateTime
from scheduler.db.session import Database

metadata = MetaData()
rows_table = Table(
    "batch_write_rows", metadata,
    Column("id", Integer, primary_key=True),
    Column("status", String(16)),
    Column("due", UTCDateTime, nullable=True),
    Column("note", String(20), nullable=True),
    Column("flag", Boolean),
    Column("count", Integer),
)
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
# `count + 1` holds a value of its own, bound with those of each row.
BUMP = CompiledStatement(rows_table.update().where(rows_table.c.id == bindparam("b_id"))
                         .values(count=rows_table.c.count + 1, note=bindparam("b_note")))


@pytest.fixture
def table(db: Database) -> Iterator[Database]:
    """An empty table of its own."""
    metadata.create_all(db.engine)
    yield db
    metadata.drop_all(db.engine)


def read_back(db: Database) -> list[dict[str, Any]]:
    """Every row, by id."""
    with db.read_engine.connect() as conn:
        return [dict(row) for row in conn.execute(
            select(rows_table).order_by(rows_table.c.id)).mappings()]


def rows(count: int, **fixed: Any) -> list[dict[str, Any]]:
    """Rows whose id and due time differ, with `fixed` values for the other columns."""
    made = [{"id": n, "status": "running", "due": NOW + timedelta(microseconds=n),
             "note": None, "flag": True, "count": 0} for n in range(1, count + 1)]
    return [{**row, **fixed} for row in made]


@pytest.mark.parametrize("written", [
    rows(5),  # most columns shared, NULL among them
    rows(1),  # one row: nothing to share
    [{**row, "id": 1} for row in rows(1)] + [{**row, "note": "b"} for row in rows(2)[1:]],
    rows(4, due=NOW),  # every column shared but the key
])
def test_inserted_rows_read_back_as_written(table: Database,
                                            written: list[dict[str, Any]]) -> None:
    with table.transaction() as session:
        insert_rows(session.connection(), rows_table, written)
    assert read_back(table) == written


def test_identical_rows_without_a_key_all_go_in(table: Database) -> None:
    alike = [{"status": "missed", "due": NOW, "note": None, "flag": False, "count": 2}] * 3
    with table.transaction() as session:
        insert_rows(session.connection(), rows_table, alike)
    assert [{k: v for k, v in row.items() if k != "id"} for row in read_back(table)] == alike


def test_updated_rows_read_back_as_written_shared_values_or_not(table: Database) -> None:
    with table.transaction() as session:
        insert_rows(session.connection(), rows_table, rows(6))
    changes = [{"id": n, "status": "completed", "due": None, "note": f"n{n % 2}",
                "count": 1} for n in (2, 3, 5)]
    with table.transaction() as session:
        update_rows(session.connection(), rows_table, "id", changes)
        update_rows(session.connection(), rows_table, "id", [{"id": 6, "flag": False}])
    found = {row["id"]: row for row in read_back(table)}
    for change in changes:
        assert {k: found[change["id"]][k] for k in change} == change
    assert found[1] == rows(6)[0] and found[4] == rows(6)[3]
    assert found[6]["flag"] is False and found[6]["status"] == "running"


def test_execute_many_binds_each_rows_values_and_the_statements_own_and_counts(
        table: Database) -> None:
    with table.transaction() as session:
        insert_rows(session.connection(), rows_table, rows(3))
    with table.transaction() as session:
        changed = BUMP.execute_many(session.connection(), [
            {"b_id": 1, "b_note": "one"}, {"b_id": 3, "b_note": "one"},
            {"b_id": 9, "b_note": "none"}])
    assert changed == 2
    assert [(row["note"], row["count"]) for row in read_back(table)] == [
        ("one", 1), (None, 0), ("one", 1)]


def test_values_are_converted_once_only_when_all_are_alike() -> None:
    seen: list[Any] = []

    def convert(value: Any) -> Any:
        seen.append(value)
        return value

    assert convert_all([1, 1, 1], convert) == [1, 1, 1] and seen == [1]
    assert convert_all([1, True, 1], convert) == [1, True, 1] and seen == [1, 1, True, 1]
    assert all_same([NOW, NOW]) and not all_same([NOW, NOW.replace(tzinfo=None)])
