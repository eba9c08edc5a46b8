"""Many rows in one statement: executemany on SQLite, arrays through unnest() on PostgreSQL.

The engine writes hundreds of rows per transaction. On PostgreSQL a multi-row INSERT is long
enough that psycopg parses it anew each time (its query cache skips long statements), and a
pipelined executemany still runs one statement per row; a statement over one array per column
is parsed and planned once, whatever the batch size. SQLite runs executemany in C.

Each array goes as one parameter in PostgreSQL's array syntax, written here: psycopg's
own list adapter works element by element in Python (a regular expression per value to decide
on quotes, another to escape), which cost more than the rest of a batch's work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    Column,
    ColumnElement,
    Connection,
    Row,
    Table,
    TextClause,
    any_,
    bindparam,
    cast,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import NullType, TypeDecorator, TypeEngine

_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]


def insert_rows(connection: Connection, table: Table, rows: list[dict[str, Any]], *,
                skip_conflicts_on: tuple[str, ...] = (), conflict_where: str | None = None,
                returning: tuple[str, ...] = ()) -> Sequence[Row[*tuple[Any, ...]]]:
    """Insert rows (each with the same keys); with `skip_conflicts_on`, rows that would
    break that unique key (a partial one, over the rows where `conflict_where` holds) are
    left out. Returns the `returning` columns of inserted rows."""
    if not rows:
        return []
    columns = tuple(rows[0])
    if connection.dialect.name == "postgresql":
        statement = _unnest_insert(table, columns, skip_conflicts_on, conflict_where,
                                   returning)
        result = connection.execute(statement, _arrays(connection, table, columns, rows))
        return result.all() if returning else []
    insert = sqlite_insert(table)
    if skip_conflicts_on:
        insert = insert.on_conflict_do_nothing(
            index_elements=list(skip_conflicts_on),
            index_where=text(conflict_where) if conflict_where else None)
    if returning:
        return connection.execute(insert.returning(*(table.c[n] for n in returning)),
                                  rows).all()
    connection.execute(insert, rows)
    return []


def update_rows(connection: Connection, table: Table, key: str,
                rows: list[dict[str, Any]]) -> None:
    """Set columns of rows found by `key`; every row names the key and the same columns."""
    if not rows:
        return
    columns = tuple(rows[0])
    if connection.dialect.name == "postgresql":
        connection.execute(_unnest_update(table, key, columns),
                           _arrays(connection, table, columns, rows))
        return
    statement = update(table).where(table.c[key] == bindparam(f"k_{key}")).values(
        {name: bindparam(f"v_{name}") for name in columns if name != key})
    connection.execute(statement, [{(f"k_{n}" if n == key else f"v_{n}"): v
                                    for n, v in row.items()} for row in rows])


def among(dialect: str, column: ColumnElement[Any], values: Iterable[Any]
          ) -> ColumnElement[bool]:
    """`column IN values` for hundreds of values: one array parameter on PostgreSQL, where
    a list of parameters would make a long statement psycopg parses each time."""
    values = list(values)
    if dialect == "postgresql":
        literal = _typed_array(column.type, values, _POSTGRESQL)
        # Untyped, so PostgreSQL reads the literal as the array itself: a parameter typed as
        # text is converted at run time instead, which made the engine's queries many times
        # slower.
        return column == any_(cast(bindparam(None, literal, type_=NullType()),
                                   ARRAY(column.type)))
    return column.in_(values)


def array_literal(values: Sequence[Any]) -> str:
    """Values as a PostgreSQL array literal: `{1,NULL,"a \\"b\\""}`."""
    return "{" + ",".join(map(_element, values)) + "}"


def _element(value: Any) -> str:
    """One array element; strings are always quoted, so "NULL" or "" stay strings."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):  # "T" between date and time: nothing to quote
        return value.isoformat()
    raise TypeError(f"no PostgreSQL array element for {type(value).__name__}")


def _arrays(connection: Connection, table: Table, columns: tuple[str, ...],
            rows: list[dict[str, Any]]) -> dict[str, str]:
    """One array literal per column, each value as the column's type binds it."""
    return {f"p{index}": _typed_array(table.c[name].type, [row[name] for row in rows],
                                      connection.dialect)
            for index, name in enumerate(columns)}


def _typed_array(type_: TypeEngine[Any], values: list[Any], dialect: Dialect) -> str:
    """An array literal of values as `type_` binds them."""
    process: Callable[[Any], Any] | None = type_.bind_processor(dialect)
    return array_literal([process(v) for v in values] if process else values)


@cache
def _unnest_insert(table: Table, columns: tuple[str, ...], conflict: tuple[str, ...],
                   conflict_where: str | None, returning: tuple[str, ...]
                   ) -> TextClause | TextualSelect:
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
           f"SELECT * FROM {_unnest(table, columns)}")
    if conflict:
        where = f" WHERE {conflict_where}" if conflict_where else ""
        sql += f" ON CONFLICT ({', '.join(conflict)}){where} DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
        return text(sql).columns(*(table.c[name] for name in returning))
    return text(sql)


@cache
def _unnest_update(table: Table, key: str, columns: tuple[str, ...]) -> TextClause:
    assignments = ", ".join(f"{name} = v.{name}" for name in columns if name != key)
    return text(f"UPDATE {table.name} AS t SET {assignments} "
                f"FROM {_unnest(table, columns)} AS v({', '.join(columns)}) "
                f"WHERE t.{key} = v.{key}")


def _unnest(table: Table, columns: tuple[str, ...]) -> str:
    arrays = ", ".join(f"CAST(:p{index} AS {_sql_type(table.c[name])}[])"
                       for index, name in enumerate(columns))
    return f"unnest({arrays})"


def _sql_type(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    return str(kind.compile(dialect=_POSTGRESQL))
