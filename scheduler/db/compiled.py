"""Core statements run straight on the DBAPI cursor, for those made on every request and on
every engine pass.

On these hot paths SQLAlchemy's execution layer (building the statement, its cache key, the
result machinery) costs several times what the database does. A `CompiledStatement` skips
that layer only: the statement is still built in Core, once, and each column type still
converts its parameters and values. Given a row type (a NamedTuple whose fields are the
statement's columns, in order), its rows are of that type: made as fast as the untyped ones,
and typed for whoever reads them.
"""

from __future__ import annotations

import itertools
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast, overload

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any]
Statement = Select[*tuple[Any, ...]] | UpdateBase
# A statement, or how to build it for a dialect (by name) where the SQL differs.
StatementSource = Statement | Callable[[str], Statement]
# The type of a statement's rows.
R = TypeVar("R")


def all_same(values: list[Any]) -> bool:
    """Whether every value (of one or more) is equal to the first, and of its type."""
    first = values[0]
    return values.count(first) == len(values) and set(map(type, values)) == {type(first)}


def convert_all(values: list[Any], process: Processor) -> list[Any]:
    """Each value converted by `process`; once, when all are the same (a batch's shared
    `now`, a status every row has)."""
    if all_same(values):
        return [process(values[0])] * len(values)
    return [process(value) for value in values]


class Record(Protocol):
    """A row read by a `CompiledStatement`: its columns as attributes."""

    def __getattr__(self, name: str) -> Any:
        """The value of the column `name`."""


class _Plan:
    """One statement compiled for one dialect: its SQL, parameter order and conversions."""

    def __init__(self, statement: Statement, dialect: Dialect,
                 row: Callable[..., Any] | None = None) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("parameters rendered at execution time are not supported here")
        self.compiled = compiled
        self.sql = compiled.string
        self.positions = compiled.positiontup if compiled.positional else None
        self.bind_processors: dict[str, Processor] = {}
        for bind in compiled.binds.values():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.bind_processors[compiled.bind_names[bind]] = process
        self.dialect = dialect
        self.columns = list(statement.exported_columns)  # a DML statement's: its RETURNING
        fields = [str(column.key) for column in self.columns]
        if row is not None and list(getattr(row, "_fields", ())) != fields:
            raise ValueError(f"the fields of {getattr(row, '__name__', row)} are not the "
                             f"statement's columns {fields}")
        self.row_type = row if row is not None else cast(
            "Callable[..., Any]", namedtuple("Record", fields, rename=True)) if fields else None
        self.result_processors: list[Processor | None] | None = None

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        """The DBAPI parameters: named or positional, as the driver takes them."""
        values = self.compiled.construct_params(params)
        for name, process in self.bind_processors.items():
            values[name] = process(values[name])
        if self.positions is None:
            return values
        return [values[name] for name in self.positions]

    def many(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The DBAPI parameters of many sets that name the same parameters. Positional ones
        are made a column at a time, straight from the sets: SQLAlchemy's
        `construct_params` (which cost more per set than SQLite's own work) runs once, for
        the values the statement holds itself, and a value every set shares (a tick's
        `now`) is converted once."""
        if self.positions is None or self.compiled.escaped_bind_names:
            return [self.parameters(row) for row in rows]
        first, count = rows[0], len(rows)
        base = cast("list[Any]", self.parameters(first))  # positional: a list
        columns: list[Iterable[Any]] = []
        for index, name in enumerate(self.positions):
            bind = self.compiled.binds[name]
            key = bind.key if bind.key in first else name if name in first else None
            if key is None:  # the statement's own value
                columns.append(itertools.repeat(base[index], count))
                continue
            values = [row[key] for row in rows]
            process = self.bind_processors.get(name)
            columns.append(values if process is None else convert_all(values, process))
        return list(zip(*columns, strict=True))

    def processors(self, description: Any) -> list[Processor | None]:
        """The result conversions of each column, learnt from the first cursor."""
        if self.result_processors is None:
            self.result_processors = [
                column.type.dialect_impl(self.dialect).result_processor(self.dialect, entry[1])
                for column, entry in zip(self.columns, description, strict=True)
            ]
        return self.result_processors

    def records(self, description: Any, raw: Sequence[Any]) -> list[Any]:
        """Rows as read, each value converted by its column's type."""
        processors, make = self.processors(description), self.row_type
        assert make is not None
        return [make(*[value if process is None or value is None else process(value)
                       for process, value in zip(processors, row, strict=True)])
                for row in raw]


class CompiledStatement(Generic[R]):
    """A Core statement compiled once per dialect and run on the DBAPI cursor directly:
    a SELECT, or an INSERT, UPDATE or DELETE with or without RETURNING; its rows `Record`s,
    or of the `row` type given."""

    @overload
    def __init__(self: CompiledStatement[Record], statement: StatementSource) -> None: ...

    @overload
    def __init__(self, statement: StatementSource, row: type[R]) -> None: ...

    def __init__(self, statement: StatementSource, row: type[R] | None = None) -> None:
        self.source = statement
        self.row = row
        self._plans: dict[str, _Plan] = {}

    def first(self, conn: Connection, params: Mapping[str, Any]) -> R | None:
        """The first row, or None."""
        rows = self._run(conn, params, one=True)
        return rows[0] if rows else None

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[R]:
        """Every row."""
        return self._run(conn, params, one=False)

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        plan = self._plan(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(plan.sql, plan.parameters(params))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a statement that returns no rows once per parameter set, in one call; how
        many rows it changed in all. Every parameter set names the same parameters."""
        if not rows:
            return 0
        plan = self._plan(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(plan.sql, cast("Any", plan.many(rows)))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            source = self.source
            statement = source if isinstance(source, Select | UpdateBase) \
                else source(dialect.name)
            plan = self._plans[dialect.name] = _Plan(statement, dialect, self.row)
        return plan

    def _run(self, conn: Connection, params: Mapping[str, Any], one: bool) -> list[R]:
        plan = self._plan(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(plan.sql, plan.parameters(params))
            raw = cursor.fetchmany(1) if one else cursor.fetchall()
            return plan.records(cursor.description, raw)
        finally:
            cursor.close()
