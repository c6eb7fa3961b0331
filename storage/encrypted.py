"""Finding and rewriting the encrypted columns of every area, for key rotation.

Convention (domain/crypto.py): an encrypted column is `bytea`, named `<field>_enc`, in a table of
the current schema with a single-column primary key. `discover` finds them all, so a column
another area adds later is rotated without touching this module. A `_enc` column in a table
without a usable primary key is reported by `discover`, never skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class EncryptedColumn:
    table: str
    column: str
    pk: str | None  # None: no single-column primary key (cannot be rotated in batches)
    pk_type: str | None

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


async def discover(conn: asyncpg.Connection | asyncpg.Pool) -> list[EncryptedColumn]:
    rows = await conn.fetch(
        r"""SELECT c.relname AS table_name, a.attname AS column_name,
                   (SELECT CASE WHEN array_length(i.indkey::int2[], 1) = 1 THEN pa.attname END
                      FROM pg_index i
                      JOIN pg_attribute pa ON pa.attrelid = i.indrelid AND pa.attnum = i.indkey[0]
                     WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
                   (SELECT CASE WHEN array_length(i.indkey::int2[], 1) = 1
                                THEN format_type(pa.atttypid, pa.atttypmod) END
                      FROM pg_index i
                      JOIN pg_attribute pa ON pa.attrelid = i.indrelid AND pa.attnum = i.indkey[0]
                     WHERE i.indrelid = c.oid AND i.indisprimary) AS pk_type
              FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_attribute a ON a.attrelid = c.oid
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
               AND a.attnum > 0 AND NOT a.attisdropped
               AND a.atttypid = 'bytea'::regtype AND a.attname LIKE '%\_enc'
             ORDER BY c.relname, a.attname"""
    )
    return [EncryptedColumn(r["table_name"], r["column_name"], r["pk"], r["pk_type"]) for r in rows]


async def fetch_batch(
    conn: asyncpg.Connection | asyncpg.Pool, col: EncryptedColumn, *, after: Any, limit: int
) -> list[tuple[Any, bytes]]:
    """Up to `limit` (pk, ciphertext) pairs with pk > `after` (None: from the start), in pk order."""
    assert col.pk is not None
    table, column, pk = quote_ident(col.table), quote_ident(col.column), quote_ident(col.pk)
    if after is None:
        rows = await conn.fetch(
            f"SELECT {pk} AS pk, {column} AS value FROM {table} WHERE {column} IS NOT NULL ORDER BY {pk} LIMIT $1",
            limit,
        )
    else:
        rows = await conn.fetch(
            f"""SELECT {pk} AS pk, {column} AS value FROM {table}
                 WHERE {column} IS NOT NULL AND {pk} > $1 ORDER BY {pk} LIMIT $2""",
            after, limit,
        )
    return [(r["pk"], bytes(r["value"])) for r in rows]


async def replace_values(
    conn: asyncpg.Connection, col: EncryptedColumn, updates: list[tuple[Any, bytes, bytes]]
) -> int:
    """Compare-and-set (pk, old, new) triples in one statement; returns rows changed.

    A row whose value changed since it was read (a concurrent write by a node) is left alone.
    """
    if not updates:
        return 0
    assert col.pk is not None and col.pk_type is not None
    table, column, pk = quote_ident(col.table), quote_ident(col.column), quote_ident(col.pk)
    status = await conn.execute(
        f"""UPDATE {table} AS t SET {column} = v.new
              FROM unnest($1::{col.pk_type}[], $2::bytea[], $3::bytea[]) AS v(pk, old, new)
             WHERE t.{pk} = v.pk AND t.{column} = v.old""",
        [u[0] for u in updates], [u[1] for u in updates], [u[2] for u in updates],
    )
    return int(status.split()[-1])
