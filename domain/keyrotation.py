"""Re-encrypting every encrypted column under the primary key (`python run.py rotate-keys`).

Guarantees:
- Covers every `*_enc` bytea column of every area (storage.encrypted.discover), in batches of
  `batch_size` rows in primary-key order, one short transaction per batch: safe on a live
  database, nodes keep serving.
- Idempotent: values already under the primary key are left untouched, so a second run (or a
  run interrupted and started again) rewrites nothing it already did.
- Never loses data: each row is replaced by compare-and-set on the value read; a value no
  configured key can decrypt is counted as `undecryptable` and left as it is; the command
  then fails (exit 1) so nobody removes an old key that is still needed.
- `check_only` reads and reports without writing: exit 0 only when every value is under the
  primary key (the condition for removing the old keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain.crypto import FieldCipher
from storage import encrypted
from storage.db import Database


@dataclass(slots=True)
class ColumnReport:
    column: str
    scanned: int = 0
    current: int = 0  # already under the primary key
    rotated: int = 0  # rewritten under the primary key by this run
    stale: int = 0  # not under the primary key and not rotated (check mode, or changed meanwhile)
    undecryptable: int = 0
    examples: list[str] = field(default_factory=list)  # primary keys of undecryptable rows (first few)

    def line(self) -> str:
        text = (f"{self.column}: {self.scanned} values, {self.current} already current, {self.rotated} rotated, "
                f"{self.stale} not current, {self.undecryptable} undecryptable")
        if self.examples:
            text += f" (e.g. keys {', '.join(self.examples)})"
        return text


@dataclass(slots=True)
class RotationReport:
    columns: list[ColumnReport]
    unrotatable: list[str]  # `_enc` columns without a single-column primary key

    @property
    def ok(self) -> bool:
        """Every value is now under the primary key and every column could be processed."""
        return not self.unrotatable and all(c.stale == 0 and c.undecryptable == 0 for c in self.columns)


async def rotate_all(
    db: Database, cipher: FieldCipher, *, batch_size: int = 500, check_only: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RotationReport:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    columns = await encrypted.discover(db.pool)
    report = RotationReport(columns=[], unrotatable=[c.name for c in columns if c.pk is None])
    for col in columns:
        if col.pk is None:
            continue
        col_report = ColumnReport(column=col.name)
        report.columns.append(col_report)
        after: Any = None
        while True:
            batch = await encrypted.fetch_batch(db.pool, col, after=after, limit=batch_size)
            if not batch:
                break
            after = batch[-1][0]
            updates = _plan(cipher, batch, col_report, check_only=check_only)
            if updates:
                async with db.transaction("rotate_keys") as conn:
                    changed = await encrypted.replace_values(conn, col, updates)
                col_report.rotated += changed
                col_report.stale += len(updates) - changed
        if progress is not None:
            progress(col_report.line())
    return report


def _plan(cipher: FieldCipher, batch: list[tuple[Any, bytes]], report: ColumnReport, *,
          check_only: bool) -> list[tuple[Any, bytes, bytes]]:
    updates: list[tuple[Any, bytes, bytes]] = []
    for pk, value in batch:
        report.scanned += 1
        if cipher.is_current(value):
            report.current += 1
            continue
        try:
            new = cipher.rotate(value)
        except ValueError:
            report.undecryptable += 1
            if len(report.examples) < 5:
                report.examples.append(str(pk))
            continue
        if check_only:
            report.stale += 1
        else:
            updates.append((pk, value, new))
    return updates
