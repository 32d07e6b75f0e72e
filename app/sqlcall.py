"""Typed calls of the SQL functions: one dataclass per function, passed by parameter name.

A SQL function's Python side is a frozen dataclass whose fields are its parameters without the
`p_` prefix, with their types. `SqlFunction("name", Args)` builds, once,
`SELECT * FROM name(p_a => $1::bigint, p_b => $2::text, ...)`, and `call(db, args)` passes the
fields in order. Adding a parameter is one field here and one parameter in the .sql file;
naming it wrongly fails at once (PostgreSQL refuses an unknown parameter name).

`SqlBatchFunction` is the same for the set-based functions, which take one array per field of
a row: `call(db, fixed, rows)` turns the rows into columns.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Protocol, TypeVar, get_args, get_origin

import orjson

from app.db import RawJson


class Queries(Protocol):
    """What a call needs of a connection (every unit-of-work mode of app.db has it)."""

    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...


@dataclasses.dataclass(frozen=True)
class SqlType:
    """An explicit SQL type for a field: `Annotated[int, SqlType("smallint")]`."""

    name: str


_SQL_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "bigint",
    str: "text",
    bytes: "bytea",
    datetime: "timestamptz",
    date: "date",
    Decimal: "numeric",
    dict: "jsonb",
    list: "jsonb",
}


class _Dataclass(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]


A = TypeVar("A", bound=_Dataclass)
R = TypeVar("R", bound=_Dataclass)


def _sql_type(hint: Any) -> str:
    """The SQL type of a field's annotation (Optional and Annotated unwrapped)."""
    if get_origin(hint) is Annotated:
        base, *extras = get_args(hint)
        explicit = [extra for extra in extras if isinstance(extra, SqlType)]
        return explicit[0].name if explicit else _sql_type(base)
    if get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(members) == 1:
            return _sql_type(members[0])
        raise TypeError(f"ambiguous SQL type for {hint!r}")
    origin = get_origin(hint) or hint
    if origin is Any:
        return "jsonb"
    for python_type, sql in _SQL_TYPES.items():
        if isinstance(origin, type) and issubclass(origin, python_type):
            return sql
    raise TypeError(f"no SQL type for {hint!r}")


def parameters(cls: type[Any]) -> list[tuple[str, str]]:
    """(field name, SQL type) of a dataclass, in field order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f.name, _sql_type(hints[f.name])) for f in dataclasses.fields(cls)]


class SqlFunction(Generic[A]):
    """`SELECT * FROM name(p_field => $n::type, ...)` with the fields of one dataclass."""

    def __init__(self, name: str, args: type[A]) -> None:
        self.names = [field for field, _ in parameters(args)]
        placeholders = ", ".join(
            f"p_{field} => ${i}::{sql}" for i, (field, sql) in enumerate(parameters(args), 1)
        )
        self.sql = f"SELECT * FROM {name}({placeholders})"

    async def call(self, db: Queries, args: A) -> list[Any]:
        return await db.fetch(self.sql, *(getattr(args, name) for name in self.names))


class SqlBatchFunction(Generic[A, R]):
    """A set-based function: scalar parameters from one dataclass (`fixed`), and one array
    parameter per field of another (`row`), `p_<field> => $n::type[]`."""

    def __init__(self, name: str, fixed: type[A], row: type[R]) -> None:
        fixed_params = parameters(fixed)
        row_params = parameters(row)
        self.fixed_names = [field for field, _ in fixed_params]
        self.row_params = row_params
        placeholders = [
            f"p_{field} => ${i}::{sql}" for i, (field, sql) in enumerate(fixed_params, 1)
        ] + [
            f"p_{field} => ${i}::{sql}[]"
            for i, (field, sql) in enumerate(row_params, len(fixed_params) + 1)
        ]
        self.sql = f"SELECT * FROM {name}({', '.join(placeholders)})"

    async def call(self, db: Queries, fixed: A, rows: Sequence[R]) -> list[Any]:
        columns = [
            [_element(getattr(row, name)) for row in rows]
            if sql == "jsonb"
            else [getattr(row, name) for row in rows]
            for name, sql in self.row_params
        ]
        return await db.fetch(
            self.sql, *(getattr(fixed, name) for name in self.fixed_names), *columns
        )


def _element(value: Any) -> Any:
    """A jsonb[] element: a JSON array as its text, or asyncpg takes it for a dimension."""
    return RawJson(orjson.dumps(value).decode()) if isinstance(value, list) else value
