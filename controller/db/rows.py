"""Rows read as typed Structs: what a store hands out instead of an asyncpg.Record.

A Struct's fields are named for the query's columns (the columns it does not name are
ignored); a jsonb column decodes (pool.py) and converts into the field's type, a nested Struct
included, with its own names (`rename`) as stored. `in_order` is the cheap way for readers of
many rows whose columns are the Struct's fields in their order and need no conversion.
"""

from collections.abc import Iterable
from typing import TypeVar

import asyncpg
import msgspec

S = TypeVar("S", bound=msgspec.Struct)


def one(cls: type[S], row: asyncpg.Record) -> S:
    """`row` as a `cls`."""
    return msgspec.convert(dict(row.items()), cls)


def maybe(cls: type[S], row: asyncpg.Record | None) -> S | None:
    """`row` as a `cls`, None without a row."""
    return None if row is None else one(cls, row)


def many(cls: type[S], rows: Iterable[asyncpg.Record]) -> list[S]:
    """`rows` as `cls`es, in their order."""
    return [one(cls, r) for r in rows]


def in_order(cls: type[S], rows: Iterable[asyncpg.Record]) -> list[S]:
    """`rows` as `cls`es built from their values in column order (the fields' order; nothing
    converted): half the cost of `many` for readers of thousands of rows."""
    return [cls(*r.values()) for r in rows]
