"""Many rows in one statement: executemany on SQLite, arrays through unnest() on PostgreSQL.

The engine writes hundreds of rows per transaction. On PostgreSQL a multi-row INSERT is long
enough that psycopg parses it anew each time (its query cache skips long statements), and a
pipelined executemany still runs one statement per row; a statement over one array per column
is parsed and planned once, whatever the batch size (a column whose value every row shares
goes as an array of that one value). SQLite runs executemany in C.

Each array goes as one parameter in PostgreSQL's array syntax, written here: psycopg's
own list adapter works element by element in Python (a regular expression per value to decide
on quotes, another to escape), which cost more than the rest of a batch's work.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    Column,
    ColumnElement,
    Connection,
    Row,
    String,
    Table,
    TextClause,
    any_,
    bindparam,
    cast,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import NullType, TypeDecorator, TypeEngine

from scheduler.db.compiled import CompiledStatement, Record, all_same

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
        arrays, shared = _arrays(connection, table, columns, rows)
        statement = _unnest_insert(table, columns, shared, skip_conflicts_on, conflict_where,
                                   returning)
        result = connection.execute(statement, arrays)
        return result.all() if returning else []
    plain = None if skip_conflicts_on or returning else _sqlite_insert(table, columns)
    if plain is not None:
        plain.execute_many(connection, rows)
        return []
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
        arrays, shared = _arrays(connection, table, columns, rows, key)
        connection.execute(_unnest_update(table, key, columns, shared), arrays)
        return
    _sqlite_update(table, key, columns).execute_many(
        connection, [{f"set_{name}": value for name, value in row.items()} for row in rows])


@cache
def _sqlite_insert(table: Table, columns: tuple[str, ...]) -> CompiledStatement[Record] | None:
    """A plain INSERT of these columns, run on the cursor; None when a column left out has
    a default set in Python, which only SQLAlchemy's own execution fills in."""
    if any(column.default is not None and column.name not in columns for column in table.c):
        return None
    return CompiledStatement(table.insert().values(
        {name: bindparam(name, type_=table.c[name].type) for name in columns}))


@cache
def _sqlite_update(table: Table, key: str, columns: tuple[str, ...]) -> CompiledStatement[Record]:
    # Parameters named apart from the columns: SQLAlchemy keeps a column's own name for
    # the value it sets.
    return CompiledStatement(
        update(table).where(table.c[key] == bindparam(f"set_{key}", type_=table.c[key].type))
        .values(
            {name: bindparam(f"set_{name}", type_=table.c[name].type)
             for name in columns if name != key}))


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


def among_bound(dialect: str, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column IN (the values bound as name)`, the whole list one parameter, so that the
    statement compiles once whatever the count: a JSON array read by `json_each` on SQLite,
    an array on PostgreSQL. Bind the values with `among_values`."""
    if dialect == "postgresql":
        # Untyped, so PostgreSQL reads the literal as the array itself, as in `among`.
        return column == any_(cast(bindparam(name, type_=NullType()), ARRAY(column.type)))
    values = func.json_each(bindparam(name, type_=String())).table_valued("value")
    return column.in_(select(values.c.value))


def among_values(conn: Connection, column: ColumnElement[Any], values: Collection[Any]
                 ) -> str:
    """The parameter of `among_bound` for these values, each as the column binds it."""
    dialect = conn.dialect
    process: Callable[[Any], Any] | None = column.type.bind_processor(dialect)
    bound = [process(value) for value in values] if process else list(values)
    if dialect.name == "postgresql":
        return array_literal(bound)
    return json.dumps(bound)


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
            rows: list[dict[str, Any]], key: str | None = None
            ) -> tuple[dict[str, str], frozenset[str]]:
    """One array literal per column, each value as the column's type binds it, and the
    columns shared: those whose value is the same in every row (of two or more), each
    sent as an array of that one value; the `key` column (and, when every column is
    alike, all of them) is never shared, so that the unnested arrays make every row.

    Most of the twenty columns of a tick's executions are shared, and writing each row's
    copy of them was a third of the tick's time in Python."""
    arrays: dict[str, str] = {}
    shared: set[str] = set()
    for index, name in enumerate(columns):
        values = [row[name] for row in rows]
        if len(values) > 1 and all_same(values):
            values = values[:1]
            shared.add(name)
        arrays[f"p{index}"] = _typed_array(table.c[name].type, values, connection.dialect)
    if key in shared or len(shared) == len(columns):
        return _arrays_unshared(connection, table, columns, rows), frozenset()
    return arrays, frozenset(shared)


def _arrays_unshared(connection: Connection, table: Table, columns: tuple[str, ...],
                     rows: list[dict[str, Any]]) -> dict[str, str]:
    return {f"p{index}": _typed_array(table.c[name].type, [row[name] for row in rows],
                                      connection.dialect)
            for index, name in enumerate(columns)}


def _typed_array(type_: TypeEngine[Any], values: list[Any], dialect: Dialect) -> str:
    """An array literal of values as `type_` binds them."""
    process: Callable[[Any], Any] | None = type_.bind_processor(dialect)
    return array_literal([process(v) for v in values] if process else values)


@cache
def _unnest_insert(table: Table, columns: tuple[str, ...], shared: frozenset[str],
                   conflict: tuple[str, ...], conflict_where: str | None,
                   returning: tuple[str, ...]) -> TextClause | TextualSelect:
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
           f"SELECT {', '.join(_values(table, columns, shared))} "
           f"FROM {_unnest(table, columns, shared)}")
    if conflict:
        where = f" WHERE {conflict_where}" if conflict_where else ""
        sql += f" ON CONFLICT ({', '.join(conflict)}){where} DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
        return text(sql).columns(*(table.c[name] for name in returning))
    return text(sql)


@cache
def _unnest_update(table: Table, key: str, columns: tuple[str, ...], shared: frozenset[str]
                   ) -> TextClause:
    values = dict(zip(columns, _values(table, columns, shared), strict=True))
    assignments = ", ".join(f"{name} = {values[name]}" for name in columns if name != key)
    return text(f"UPDATE {table.name} AS t SET {assignments} "
                f"FROM {_unnest(table, columns, shared)} "
                f"WHERE t.{key} = v.{key}")


def _values(table: Table, columns: tuple[str, ...], shared: frozenset[str]) -> list[str]:
    """Each column's value in a row: from the unnested arrays, or the one shared value."""
    return [f"(CAST(:p{index} AS {_sql_type(table.c[name])}[]))[1]" if name in shared
            else f"v.{name}" for index, name in enumerate(columns)]


def _unnest(table: Table, columns: tuple[str, ...], shared: frozenset[str]) -> str:
    """The unnested arrays of the columns not shared, as the rows of `v`."""
    arrays = ", ".join(f"CAST(:p{index} AS {_sql_type(table.c[name])}[])"
                       for index, name in enumerate(columns) if name not in shared)
    names = ", ".join(name for name in columns if name not in shared)
    return f"unnest({arrays}) AS v({names})"


def _sql_type(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    return str(kind.compile(dialect=_POSTGRESQL))
