"""Multi-row INSERTs built from a Tortoise model's own metadata, for fast bulk pre-fills.

Columns, their order and their conversion (``to_db_value``) come from the model, so a column
added or moved on ``main`` changes the statement with it; a new column without a default
raises ``MissingValue`` instead of being silently left out, and a value for a column that is
gone raises ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tortoise import connections
from tortoise.fields import Field
from tortoise.models import Model

Maker = Callable[..., tuple[Any, ...]]


def _stored_as_is(field: Field[Any]) -> type | None:
    """The type whose values this field stores unchanged, if its conversion is the base one.

    ``Field.to_db_value`` only casts to ``field_type`` and runs the validators; for values the
    bench made itself (ids, sizes, hashes) that is ~2 µs a value of checking, not converting.
    Fields with their own conversion (datetimes, JSON, booleans) always go through it.
    """
    return field.field_type if type(field).to_db_value is Field.to_db_value else None


class MissingValue(KeyError):
    """A column that has no default and was not given a value."""


class Table:
    """One model's table as an ``INSERT`` of every stored column, the primary key included."""

    def __init__(self, model: type[Model], dialect: str = "sqlite") -> None:
        meta = model._meta
        self.model = model
        self.name: str = meta.db_table
        self.fields: tuple[str, ...] = tuple(meta.fields_db_projection)  # field names, in column order
        self._objects: dict[str, Field[Any]] = {name: meta.fields_map[name] for name in self.fields}
        columns = ", ".join(f'"{meta.fields_db_projection[name]}"' for name in self.fields)
        marks = ", ".join(f"${i}" if dialect == "postgres" else "?" for i in range(1, len(self.fields) + 1))
        self.sql = f'INSERT INTO "{self.name}" ({columns}) VALUES ({marks})'

    def convert(self, name: str, value: Any) -> Any:
        return self._objects[name].to_db_value(value, self.model)

    def _default(self, name: str) -> Any:
        field = self._objects[name]
        if field.default is not None:
            return self.convert(name, field.default() if callable(field.default) else field.default)
        if field.null:
            return None
        # auto_now(_add) and generated keys too: the caller says what time and which id.
        raise MissingValue(f"{self.name}.{name} needs a value (no default)")

    def maker(self, fixed: Mapping[str, Any], varying: Sequence[str]) -> Maker:
        """A function of the ``varying`` values (positional, in that order) returning one row.

        ``fixed`` values and the defaults of columns in neither are converted once, here;
        each call converts only its own arguments.
        """
        unknown = (set(fixed) | set(varying)) - set(self.fields)
        if unknown:
            raise KeyError(f"{self.name} has no column for {', '.join(sorted(unknown))}")
        base = [self.convert(n, fixed[n]) if n in fixed else None if n in varying else self._default(n)
                for n in self.fields]
        slots = [(self.fields.index(n), self._objects[n], _stored_as_is(self._objects[n])) for n in varying]
        model = self.model

        def make(*values: Any) -> tuple[Any, ...]:
            row = list(base)
            for (index, field, plain), value in zip(slots, values, strict=True):
                row[index] = value if type(value) is plain else field.to_db_value(value, model)
            return tuple(row)

        return make

    def row(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """One row from a mapping of field names to values (the slow, general way)."""
        return self.maker(values, ())()

    async def insert(self, rows: Iterable[tuple[Any, ...]], connection_name: str = "default") -> int:
        """executemany in the current transaction (``in_transaction()``), if any; returns the count."""
        batch = list(rows)
        if batch:
            await connections.get(connection_name).execute_many(self.sql, batch)  # type: ignore[arg-type]
        return len(batch)
