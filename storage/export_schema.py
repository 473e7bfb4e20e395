"""What `ticketd export` writes and `ticketd import` reads: the tables, their order, each value's form.

Shared by storage.export and storage.load, so the two can never disagree. The format itself is
described in storage.export's docstring.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import Tortoise, fields
from tortoise.fields.relational import ForeignKeyFieldInstance
from tortoise.models import Model

FORMAT = "ticketd-export"
VERSION = 1

# Parents before children, so every foreign key points at a row already written (SQLite checks
# them at once: foreign_keys=ON). Every model is here: a migration keeps all of it, including
# the mailboxes' UIDVALIDITY/last UID (else every message would be fetched again), the counter
# (ticket numbers), the due steps (timers that have not fired) and the suppressions, and the
# OAuth2 grants (a refresh token is a secret: an export is as sensitive as the database).
ORDER = ("mailbox", "counter", "ticket", "inbound_message", "inbound_raw", "participant", "article",
         "attachment", "attachment_content", "outbound_message", "event", "due_step", "suppression",
         "agent_away", "mailbox_health", "webhook_delivery", "mailbox_lease", "instance", "oauth_token")

# The column kinds of the header, by Tortoise field class (checked in this order: subclasses first).
_KINDS: tuple[tuple[type, str], ...] = (
    (fields.BooleanField, "bool"), (fields.IntField, "int"), (fields.BigIntField, "int"),
    (fields.SmallIntField, "int"), (fields.DatetimeField, "datetime"), (fields.BinaryField, "bytes"),
    (fields.JSONField, "json"), (fields.CharField, "text"), (fields.TextField, "text"),
)
# Rows with blobs are read a few at a time: a page holds at most about this many bytes of them.
BLOB_PAGE_BYTES = 16 << 20


@dataclass(frozen=True)
class Column:
    name: str  # the database column (a foreign key's "ticket_id", not "ticket")
    field: Any  # the Tortoise field that converts its values
    kind: str  # int | text | bool | datetime | bytes | json
    null: bool

    @property
    def described(self) -> str:
        """As the header lists it: the kind, with "?" when null is allowed."""
        return self.kind + ("?" if self.null else "")


@dataclass(frozen=True)
class Table:
    name: str
    model: type[Model]
    key: str  # the primary key column: rows are read in its order, a page at a time
    columns: tuple[Column, ...]
    generated: bool  # the key is an id the database hands out (a sequence to carry over)
    blob: str | None  # the column holding message or attachment bytes, if any
    self_refs: tuple[str, ...]  # columns referring to this same table (inbound duplicate_of)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def schema(self) -> dict[str, Any]:
        return {"key": self.key, "columns": {c.name: c.described for c in self.columns}}


def kind_of(field: Any) -> str:
    for cls, kind in _KINDS:
        if isinstance(field, cls):
            return kind
    raise TypeError(f"{type(field).__name__} has no export form: add it to storage.export_schema._KINDS")


def _table(model: type[Model]) -> Table:
    meta = model._meta
    columns = tuple(Column(column, meta.fields_map[name], kind_of(meta.fields_map[name]), meta.fields_map[name].null)
                    for name, column in meta.fields_db_projection.items())
    blob = next((c.name for c in columns if c.kind == "bytes"), None)
    self_refs = tuple(meta.fields_db_projection[field.source_field] for field in meta.fields_map.values()
                      if isinstance(field, ForeignKeyFieldInstance) and field.related_model is model)
    return Table(meta.db_table, model, meta.db_pk_column, columns, bool(meta.pk.generated), blob, self_refs)


def tables() -> list[Table]:
    """Every table, in ORDER; a model not named there comes last rather than being left out."""
    models = {m._meta.db_table: m for m in Tortoise.apps["models"].values()}
    names = [n for n in ORDER if n in models] + sorted(set(models) - set(ORDER))
    return [_table(models[name]) for name in names]


def schema(all_tables: list[Table]) -> dict[str, Any]:
    return {t.name: t.schema() for t in all_tables}


def encode(column: Column, value: Any) -> Any:
    """A value as read from the database, in its JSON form."""
    value = column.field.to_python_value(value)
    if value is None:
        return None
    if column.kind == "datetime":
        return value.isoformat()
    if column.kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if column.kind == "json":
        return _sorted(value)
    return value


def _sorted(value: Any) -> Any:
    """JSON with every object's keys sorted: PostgreSQL's jsonb keeps them in an order of its
    own, SQLite's text as written, and the same rows must export the same bytes on either."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


class BadValue(ValueError):
    """A value of an export line that does not fit its column; the text says what was expected."""


_EXPECTED = {"int": "an integer", "text": "a string", "bool": "true or false",
             "datetime": "an ISO 8601 time with a UTC offset", "bytes": "base64 text", "json": "JSON"}


def decode(column: Column, value: Any) -> Any:
    """A JSON value of an export line as the database takes it; BadValue if it does not fit."""
    if value is None:
        if not column.null:
            raise BadValue(f"expected {_EXPECTED[column.kind]}, got null")
        return None
    if column.kind == "json":
        return column.field.encoder(value)
    try:
        python = _python(column.kind, value)
        return column.field.to_db_value(python, None)
    except BadValue:
        raise
    except Exception as exc:  # a validator's (too long, out of range): its own words
        raise BadValue(f"{exc}") from None


def _python(kind: str, value: Any) -> Any:
    ok = {"int": isinstance(value, int) and not isinstance(value, bool), "text": isinstance(value, str),
          "bool": isinstance(value, bool), "datetime": isinstance(value, str), "bytes": isinstance(value, str)}[kind]
    if not ok:
        raise BadValue(f"expected {_EXPECTED[kind]}, got {_shown(value)}")
    if kind == "datetime":
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            instant = None
        if instant is None or instant.utcoffset() is None:
            raise BadValue(f"expected {_EXPECTED[kind]}, got {_shown(value)}")
        return instant
    if kind == "bytes":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadValue(f"expected {_EXPECTED[kind]}, got {_shown(value)}") from None
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
