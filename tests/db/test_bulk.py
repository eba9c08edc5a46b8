"""Array literals reach PostgreSQL as the values they were made from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import text

from scheduler.db.bulk import array_literal
from scheduler.db.session import Database
from tests.support import POSTGRES_URL, require_postgres

TRICKY = ["plain", "", "NULL", "null", 'a "quoted" word', "back\\slash", "\\", '"', "{,}",
          " spaces ", "tab\tand\nnewline", "ünïcödé ✓", "comma,inside", "'single'"]


@pytest.fixture
def pg() -> Iterator[Database]:
    """The machine's PostgreSQL: array literals are a PostgreSQL matter."""
    require_postgres()
    db = Database(POSTGRES_URL)
    yield db
    db.dispose()


def _round_trip(db: Database, literal: str, sql_type: str) -> list[object]:
    with db.read_engine.connect() as conn:
        value = conn.execute(text(f"SELECT CAST(:v AS {sql_type}[])"), {"v": literal}).scalar()
    assert isinstance(value, list)
    return value


def test_strings_come_back_unchanged(pg: Database) -> None:
    """Quotes, backslashes, braces, commas, blanks and the word NULL stay strings."""
    values: list[str | None] = [*TRICKY, None]
    assert _round_trip(pg, array_literal(values), "text") == values


def test_numbers_booleans_and_nulls(pg: Database) -> None:
    """Integers, big integers, booleans and NULLs keep their values."""
    assert _round_trip(pg, array_literal([1, -2, 2**62, None]), "bigint") == [1, -2, 2**62, None]
    assert _round_trip(pg, array_literal([True, False, None]), "boolean") == [True, False, None]


def test_datetimes_keep_their_microseconds(pg: Database) -> None:
    """Naive UTC datetimes, with and without a fraction of a second."""
    values = [datetime(2026, 3, 29, 1, 59, 59, 999999), datetime(2026, 10, 25, 2, 0), None]
    assert _round_trip(pg, array_literal(values), "timestamp") == values


def test_empty_array() -> None:
    """No values: an empty array."""
    assert array_literal([]) == "{}"


def test_unknown_types_are_refused() -> None:
    """A value with no literal form is an error, not a guess."""
    with pytest.raises(TypeError, match="bytes"):
        array_literal([b"raw"])
