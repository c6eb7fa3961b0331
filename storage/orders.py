"""Orders in PostgreSQL: the group-commit hold batch, expiry, cancellation and seat returns.

Guarantees (each function is called inside ONE transaction, `core.db.transaction(name)`):
- `place_batch` holds seats for many buyers at once: it locks the involved ticket-type rows (then
  quota rows) in id order, allocates first-come-first-served, and changes counters with one
  UPDATE per table; `CHECK (sold + held <= capacity)` makes an oversell impossible even if the
  allocation were wrong. Orders, items, free tickets, idempotency records (the stored 201) and
  outbox facts are written in the same transaction: every 2xx order exists.
- Seats return exactly once: only the transition out of `held` (to `expired`/`cancelled`) or the
  voiding of a `valid` ticket releases counters, and both are conditional on the old state under
  a row lock (`FOR UPDATE [SKIP LOCKED]`).
- Lock order everywhere: orders -> ticket_types (by id) -> ticket_quotas (by id): no deadlocks.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from domain.tickets.codes import Signer
from domain.tickets.models import BatchHook, HoldOutcome, HoldRequest, Line, Order
from storage import tickets as ticket_store
from storage.outbox import NOTIFY_CHANNEL

ORDER_COLUMNS = ("id, event_id, user_id, status, total_cents, currency, refunded_cents, expires_at, created_at, "
                 "paid_at")
ORDERS_SCOPE = "orders"


@dataclass(slots=True)
class Released:
    """Seats returned by a transaction, for the Redis gate (applied after commit)."""

    types: Counter = field(default_factory=Counter)
    quotas: Counter = field(default_factory=Counter)
    event_ids: set = field(default_factory=set)

    def merge(self, other: Released) -> None:
        self.types.update(other.types)
        self.quotas.update(other.quotas)
        self.event_ids |= other.event_ids

    def __bool__(self) -> bool:
        return any(self.types.values()) or any(self.quotas.values())


@dataclass(frozen=True, slots=True)
class BatchResult:
    outcomes: dict[uuid.UUID, HoldOutcome]
    type_available: dict[uuid.UUID, int]  # PostgreSQL's remaining seats after the batch
    quota_available: dict[uuid.UUID, int]


async def append_outbox(conn: asyncpg.Connection, facts: Sequence[tuple[str, uuid.UUID, dict[str, Any]]]) -> None:
    """Bulk version of storage.outbox.append: (type, event_id, data) rows, one NOTIFY."""
    if not facts:
        return
    types, events, datas = zip(*facts, strict=True)
    await conn.execute(
        f"""WITH appended AS ({_OUTBOX_INSERT.format(t=1, e=2, d=3)} RETURNING 1)
            SELECT pg_notify($4, '') WHERE EXISTS (SELECT FROM appended)""",
        list(types), list(events), list(datas), NOTIFY_CHANNEL)


_OUTBOX_INSERT = """INSERT INTO outbox (type, event_id, key, data)
           SELECT t, e, e::text, d FROM unnest(${t}::text[], ${e}::uuid[], ${d}::jsonb[]) AS x(t, e, d)"""


def _lines_json(lines: Iterable[Line]) -> list[dict[str, Any]]:
    return [{"ticket_type_id": str(x.ticket_type_id), "quantity": x.quantity, "unit_price_cents": x.unit_price_cents}
            for x in lines]


async def _lock_types(conn: asyncpg.Connection, type_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    ids = sorted(set(type_ids))
    rows = await conn.fetch(
        """SELECT id, event_id, capacity - sold - held AS avail, quota_id, status, price_cents,
                  EXISTS (SELECT FROM seat_maps m WHERE m.ticket_type_id = t.id) AS seated
             FROM ticket_types t WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE""", ids)
    return {r["id"]: r for r in rows}


async def _lock_quotas(conn: asyncpg.Connection, quota_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    ids = sorted(set(quota_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT id, capacity - sold - held AS avail FROM ticket_quotas WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
        ids)
    return {r["id"]: r["avail"] for r in rows}


async def _apply(conn: asyncpg.Connection, table: str, deltas: dict[uuid.UUID, tuple[int, int]]) -> None:
    """held += dh, sold += ds per row (rows already locked by the caller, in id order)."""
    items = [(k, dh, ds) for k, (dh, ds) in sorted(deltas.items()) if dh or ds]
    if not items:
        return
    ids, dhs, dss = zip(*items, strict=True)
    await conn.execute(
        f"""UPDATE {table} t SET held = t.held + v.dh, sold = t.sold + v.ds
              FROM unnest($1::uuid[], $2::int[], $3::int[]) AS v(id, dh, ds) WHERE t.id = v.id""",
        list(ids), list(dhs), list(dss))


def _deltas_columns(deltas: dict[uuid.UUID, tuple[int, int]]) -> tuple[list, list, list]:
    items = [(k, dh, ds) for k, (dh, ds) in sorted(deltas.items()) if dh or ds]
    return ([k for k, _, _ in items], [dh for _, dh, _ in items], [ds for _, _, ds in items])


def _order_writes(granted: Sequence[HoldRequest], facts: Sequence[tuple[str, uuid.UUID, dict[str, Any]]],
                  first: int) -> tuple[str, list[Any]]:
    """The CTEs `o` (orders), `i` (items) and `f` (outbox facts) of a batch's write statement,
    their parameters numbered from `$first`, and those 15 parameters."""
    n = first
    sql = f"""o AS (INSERT INTO orders (id, event_id, user_id, status, total_cents, currency, expires_at,
                                           idempotency_key)
                       SELECT * FROM unnest(${n}::uuid[], ${n + 1}::uuid[], ${n + 2}::uuid[], ${n + 3}::text[],
                                            ${n + 4}::bigint[], ${n + 5}::text[], ${n + 6}::timestamptz[],
                                            ${n + 7}::text[])),
                 i AS (INSERT INTO order_items (order_id, ticket_type_id, quantity, unit_price_cents)
                       SELECT * FROM unnest(${n + 8}::uuid[], ${n + 9}::uuid[], ${n + 10}::int[], ${n + 11}::bigint[])),
                 f AS ({_OUTBOX_INSERT.format(t=n + 12, e=n + 13, d=n + 14)})"""
    items = [(r.order_id, ln.ticket_type_id, ln.quantity, ln.unit_price_cents) for r in granted for ln in r.lines]
    args: list[Any] = [
        [r.order_id for r in granted], [r.event_id for r in granted], [r.user_id for r in granted],
        ["confirmed" if r.confirm else "held" for r in granted], [r.total_cents for r in granted],
        [r.currency for r in granted], [r.expires_at for r in granted], [r.idempotency_key for r in granted],
        *[list(c) for c in zip(*items, strict=True)],
        *[list(c) for c in zip(*facts, strict=True)],
    ]
    return sql, args


async def _write_holds(conn: asyncpg.Connection, granted: Sequence[HoldRequest],
                       type_deltas: dict[uuid.UUID, tuple[int, int]], quota_deltas: dict[uuid.UUID, tuple[int, int]],
                       facts: Sequence[tuple[str, uuid.UUID, dict[str, Any]]]) -> None:
    """Every write of a hold batch in ONE statement (one round trip; the batch's latency is mostly
    round trips on a busy machine): counters of the locked types and quotas, orders, items,
    outbox facts and the relay's NOTIFY. Data-modifying CTEs all run to completion; the CHECK
    constraints on the counters and the items' foreign key to orders are checked at the end of
    the statement, so a violation fails the whole batch (nothing half-written)."""
    writes, args = _order_writes(granted, facts, first=7)
    await conn.execute(
        f"""WITH t AS (UPDATE ticket_types c SET held = c.held + v.dh, sold = c.sold + v.ds
                         FROM unnest($1::uuid[], $2::int[], $3::int[]) AS v(id, dh, ds) WHERE c.id = v.id),
                 q AS (UPDATE ticket_quotas c SET held = c.held + v.dh, sold = c.sold + v.ds
                         FROM unnest($4::uuid[], $5::int[], $6::int[]) AS v(id, dh, ds) WHERE c.id = v.id),
                 {writes}
            SELECT pg_notify($22, '')""",
        *_deltas_columns(type_deltas), *_deltas_columns(quota_deltas), *args, NOTIFY_CHANNEL)


def _sum_deltas(pairs: Iterable[tuple[uuid.UUID | None, int, int]]) -> dict[uuid.UUID, tuple[int, int]]:
    out: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0])
    for key, dh, ds in pairs:
        if key is not None:
            out[key][0] += dh
            out[key][1] += ds
    return {k: (v[0], v[1]) for k, v in out.items()}


async def place_batch(
    conn: asyncpg.Connection, reqs: Sequence[HoldRequest], *, signer_for: Callable[[uuid.UUID], Signer | None],
    idempotency_ttl_seconds: int, hooks: Sequence[BatchHook] = (),
) -> BatchResult:
    """Hold (or, for free orders, confirm) many buyers' orders in this transaction. See module doc.
    `hooks` (domain.tickets.models.BatchHook) may refuse requests before anything is written and
    add rows for the granted ones."""
    types = await _lock_types(conn, (ln.ticket_type_id for r in reqs for ln in r.lines))
    qavail = await _lock_quotas(conn, (t["quota_id"] for t in types.values() if t["quota_id"]))
    tavail = {tid: t["avail"] for tid, t in types.items()}
    outcomes: dict[uuid.UUID, HoldOutcome] = {}
    granted: list[HoldRequest] = []
    for r in reqs:
        need_t: Counter = Counter()
        need_q: Counter = Counter()
        for ln in r.lines:
            need_t[ln.ticket_type_id] += ln.quantity
        failure: HoldOutcome | None = None
        for tid, n in need_t.items():
            row = types.get(tid)
            if row is None or row["status"] != "active" or row["event_id"] != r.event_id:
                failure = HoldOutcome(False, "sale_closed", tid)
                break
            if row["quota_id"]:
                need_q[row["quota_id"]] += n
            if tavail[tid] < n:
                failure = HoldOutcome(False, "sold_out", tid)
                break
        if failure is None:
            for qid, n in need_q.items():
                if qavail.get(qid, 0) < n:
                    tid = next(t for t in need_t if types[t]["quota_id"] == qid)
                    failure = HoldOutcome(False, "sold_out", tid, qid)
                    break
        if failure is not None:
            outcomes[r.order_id] = failure
            continue
        for tid, n in need_t.items():
            tavail[tid] -= n
        for qid, n in need_q.items():
            qavail[qid] -= n
        granted.append(r)

    def give_back(r: HoldRequest) -> None:
        for ln in r.lines:
            tavail[ln.ticket_type_id] += ln.quantity
            if types[ln.ticket_type_id]["quota_id"]:
                qavail[types[ln.ticket_type_id]["quota_id"]] += ln.quantity

    for hook in hooks:
        refused = await hook.admit(conn, granted, types) if granted else {}
        for r in granted:
            if r.order_id in refused:
                outcomes[r.order_id] = refused[r.order_id]
                give_back(r)
        granted = [r for r in granted if r.order_id not in refused]

    # Idempotency records hold the 201 we are about to send; a key already present (a concurrent
    # duplicate that slipped past the gate, e.g. after a Redis flush) loses its seats here.
    dupes = await _store_responses(conn, granted, idempotency_ttl_seconds)
    for r in granted:
        if r.order_id in dupes:
            outcomes[r.order_id] = HoldOutcome(False, "duplicate")
            give_back(r)  # its seats go back to this batch's view of availability
    granted = [r for r in granted if r.order_id not in dupes]
    result = BatchResult(outcomes, tavail, qavail)
    if not granted:
        return result

    per_type = [(ln.ticket_type_id, 0 if r.confirm else ln.quantity, ln.quantity if r.confirm else 0)
                for r in granted for ln in r.lines]
    facts: list[tuple[str, uuid.UUID, dict[str, Any]]] = []
    ticket_rows: list[tuple[Any, ...]] = []
    for r in granted:
        facts.append(("order.placed", r.event_id, _placed_fact(r)))
        if r.confirm:
            signer = signer_for(r.event_id)
            if signer is None:
                raise RuntimeError(f"no ticket signer loaded for event {r.event_id}")
            ticket_rows.extend(issue_rows(signer, r.event_id, r.order_id, r.user_id, r.lines))
    facts.extend(issued_facts(ticket_rows))
    await _write_holds(conn, granted, _sum_deltas(per_type),
                       _sum_deltas((types[t]["quota_id"], h, s) for t, h, s in per_type), facts)
    if ticket_rows:
        await ticket_store.insert_tickets(conn, ticket_rows)
        await ticket_store.add_attendees(conn, [(r.event_id, r.user_id) for r in granted if r.confirm])
    for hook in hooks:
        await hook.placed(conn, granted)
    for r in granted:
        outcomes[r.order_id] = HoldOutcome(True)
    return result


class NeedsLockFirst(Exception):
    """`place_batch_optimistic` cannot apply this batch as a whole: roll back, use `place_batch`."""


def optimistic_fits(reqs: Sequence[HoldRequest]) -> bool:
    """Holds of one ticket type of one event, no shared quota, nothing free (no tickets to issue)."""
    first = reqs[0].lines[0]
    return all(r.event_id == reqs[0].event_id and not r.confirm
               and all(ln.ticket_type_id == first.ticket_type_id and ln.quota_id is None for ln in r.lines)
               for r in reqs)


async def _store_responses(conn: asyncpg.Connection, reqs: Sequence[HoldRequest],
                           ttl_seconds: int) -> set[uuid.UUID]:
    """Store the 201 of every keyed request (idempotency records); returns the order ids whose key
    was already there (a concurrent duplicate that slipped past the gate: it must not hold)."""
    keyed = [r for r in reqs if r.idempotency_key]
    if not keyed:
        return set()
    inserted = await conn.fetch(
        """INSERT INTO idempotency_keys (scope, principal, key, fingerprint, state, status_code, response, expires_at)
           SELECT $1, p, k, f, 'done', 201, b, now() + make_interval(secs => $6)
             FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bytea[]) AS x(p, k, f, b)
           ON CONFLICT DO NOTHING RETURNING principal, key""",
        ORDERS_SCOPE, [str(r.user_id) for r in keyed], [r.idempotency_key for r in keyed],
        [r.fingerprint for r in keyed], [r.response for r in keyed], float(ttl_seconds))
    won = {(x["principal"], x["key"]) for x in inserted}
    return {r.order_id for r in keyed if (str(r.user_id), r.idempotency_key) not in won}


async def place_batch_optimistic(
    conn: asyncpg.Connection, reqs: Sequence[HoldRequest], *, idempotency_ttl_seconds: int,
    hooks: Sequence[BatchHook] = (),
) -> BatchResult:
    """The common batch of a drop (holds of ONE ticket type, no shared quota, nothing free) with
    the type row locked only by the transaction's last statement, not its first.

    Both nodes' batches serialize on that row until COMMIT has flushed WAL, so what runs while it
    is held bounds the drop's throughput. Here: the idempotency records, then ONE statement that
    writes orders, items and outbox facts and moves the counter with a conditional UPDATE (`held
    + n` only if the type is still active, of this event, without a seat map and with `n` seats
    left; the CHECK constraint stays the last word). If that UPDATE matched nothing (the gate let
    more through than PostgreSQL has, the type changed), `NeedsLockFirst` is raised and the
    caller rolls back and runs `place_batch`, which allocates seat by seat under the lock. Batch
    hooks get `placed` only: `admit` matters for seat maps, which send a batch to `place_batch`."""
    if not optimistic_fits(reqs):
        raise NeedsLockFirst
    type_id, event_id = reqs[0].lines[0].ticket_type_id, reqs[0].event_id
    dupes = await _store_responses(conn, reqs, idempotency_ttl_seconds)
    outcomes = {oid: HoldOutcome(False, "duplicate") for oid in dupes}
    granted = [r for r in reqs if r.order_id not in dupes]
    if not granted:
        return BatchResult(outcomes, {}, {})
    seats = sum(ln.quantity for r in granted for ln in r.lines)
    writes, args = _order_writes(granted, [("order.placed", r.event_id, _placed_fact(r)) for r in granted],
                                 first=1)
    left = await conn.fetchval(
        f"""WITH {writes},
                 t AS (UPDATE ticket_types c SET held = c.held + $17
                        WHERE c.id = $18 AND c.event_id = $19 AND c.status = 'active' AND c.quota_id IS NULL
                          AND c.capacity - c.sold - c.held >= $17
                          AND NOT EXISTS (SELECT FROM seat_maps m WHERE m.ticket_type_id = c.id)
                       RETURNING c.capacity - c.sold - c.held AS left)
            SELECT t.left FROM t, LATERAL (SELECT pg_notify($16, '')) AS n""",
        *args, NOTIFY_CHANNEL, seats, type_id, event_id)
    if left is None:
        raise NeedsLockFirst
    for hook in hooks:
        await hook.placed(conn, granted)
    for r in granted:
        outcomes[r.order_id] = HoldOutcome(True)
    return BatchResult(outcomes, {type_id: left}, {})


def _placed_fact(r: HoldRequest) -> dict[str, Any]:
    return {"order_id": str(r.order_id), "user_id": str(r.user_id), "status": "confirmed" if r.confirm else "held",
            "total_cents": r.total_cents, "currency": r.currency, "items": _lines_json(r.lines),
            "expires_at": r.expires_at.isoformat() if r.expires_at else None}


def issue_rows(signer: Signer, event_id: uuid.UUID, order_id: uuid.UUID, holder_id: uuid.UUID,
               lines: Iterable[Line]) -> list[tuple[Any, ...]]:
    rows = []
    for ln in lines:
        for seat in range(ln.quantity):
            tid = uuid.uuid4()
            rows.append((tid, event_id, order_id, ln.ticket_type_id, seat, holder_id, signer.sign(tid),
                         ln.unit_price_cents))
    return rows


def issued_facts(ticket_rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, uuid.UUID, dict[str, Any]]]:
    """One `ticket.issued` fact per order: {order_id, user_id, tickets: [{id, ticket_type_id}]}."""
    by_order: dict[uuid.UUID, list[tuple[Any, ...]]] = defaultdict(list)
    for row in ticket_rows:
        by_order[row[2]].append(row)
    return [("ticket.issued", rows[0][1], {
        "order_id": str(oid), "user_id": str(rows[0][5]),
        "tickets": [{"id": str(x[0]), "ticket_type_id": str(x[3])} for x in rows]}) for oid, rows in by_order.items()]


# --- reading --------------------------------------------------------------------------------------

async def get_order(conn: Any, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None:
    row = await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1" + (" FOR UPDATE" if for_update else ""),
                              order_id)
    if row is None:
        return None
    items = await conn.fetch(
        "SELECT ticket_type_id, quantity, unit_price_cents FROM order_items WHERE order_id = $1 ORDER BY ticket_type_id",
        order_id)
    return Order(**dict(row), items=tuple(Line(i["ticket_type_id"], i["quantity"], i["unit_price_cents"]) for i in items))


async def orders_of_user(conn: Any, user_id: uuid.UUID, limit: int = 100) -> list[Order]:
    ids = await conn.fetch("SELECT id FROM orders WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2", user_id, limit)
    return [o for o in [await get_order(conn, r["id"]) for r in ids] if o is not None]


# --- seats going back (expiry, cancellation, refunds) and coming back (late payment) --------------

async def move_counters(conn: asyncpg.Connection, lines: Iterable[tuple[uuid.UUID, int, int]],
                        *, require_available: bool = False) -> Released | None:
    """Apply (type_id, d_held, d_sold) for several types and their quotas, locking in id order.

    With `require_available`, fails (returns None, nothing changed) unless every positive
    change fits the remaining capacity (late payments re-acquiring seats). Returns the seats
    released (negative total changes) for the gate."""
    deltas = _sum_deltas(lines)
    types = await _lock_types(conn, deltas)
    q_deltas = _sum_deltas((types[t]["quota_id"], dh, ds) for t, (dh, ds) in deltas.items() if t in types)
    qavail = await _lock_quotas(conn, q_deltas)
    if require_available:
        if any(types[t]["avail"] < dh + ds for t, (dh, ds) in deltas.items() if dh + ds > 0):
            return None
        if any(qavail.get(q, 0) < dh + ds for q, (dh, ds) in q_deltas.items() if dh + ds > 0):
            return None
    await _apply(conn, "ticket_types", deltas)
    await _apply(conn, "ticket_quotas", q_deltas)
    released = Released()
    for t, (dh, ds) in deltas.items():
        if dh + ds:
            released.types[t] -= dh + ds
            released.event_ids.add(types[t]["event_id"])
    for q, (dh, ds) in q_deltas.items():
        if dh + ds:
            released.quotas[q] -= dh + ds
    return released


async def expire_due(conn: asyncpg.Connection, *, limit: int = 500,
                     order_id: uuid.UUID | None = None) -> tuple[list[Order], Released]:
    """Expire held orders past `expires_at` (all due, up to `limit`, or just `order_id`).

    `FOR UPDATE SKIP LOCKED` lets every node sweep at once without waiting on each other; the
    held -> expired transition under the row lock makes each seat come back exactly once."""
    rows = await conn.fetch(
        f"""WITH due AS (
              SELECT id FROM orders WHERE status = 'held' AND expires_at <= now()
                 AND ($2::uuid IS NULL OR id = $2) ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
            UPDATE orders o SET status = 'expired', closed_at = now(), updated_at = now()
              FROM due WHERE o.id = due.id RETURNING {', '.join('o.' + c.strip() for c in ORDER_COLUMNS.split(','))}""",
        limit, order_id)
    if not rows:
        return [], Released()
    ids = [r["id"] for r in rows]
    items = await conn.fetch(
        "SELECT order_id, ticket_type_id, quantity, unit_price_cents FROM order_items WHERE order_id = ANY($1::uuid[])",
        ids)
    by_order: dict[uuid.UUID, list[Line]] = defaultdict(list)
    for i in items:
        by_order[i["order_id"]].append(Line(i["ticket_type_id"], i["quantity"], i["unit_price_cents"]))
    released = await move_counters(conn, ((i["ticket_type_id"], -i["quantity"], 0) for i in items))
    orders = [Order(**dict(r), items=tuple(by_order[r["id"]])) for r in rows]
    await append_outbox(conn, [("order.expired", o.event_id, {
        "order_id": str(o.id), "user_id": str(o.user_id), "items": _lines_json(o.items)}) for o in orders])
    assert released is not None
    return orders, released


async def open_order_ids(conn: Any, event_id: uuid.UUID) -> list[uuid.UUID]:
    """Orders of an event that still hold seats or money: held, paid or confirmed (oldest first)."""
    rows = await conn.fetch(
        "SELECT id FROM orders WHERE event_id = $1 AND status IN ('held', 'paid', 'confirmed') ORDER BY created_at",
        event_id)
    return [r["id"] for r in rows]


async def set_status(conn: asyncpg.Connection, order_id: uuid.UUID, status: str, *, paid: bool = False,
                     refunded_cents: int | None = None) -> None:
    await conn.execute(
        """UPDATE orders SET status = $2, updated_at = now(),
                  paid_at = CASE WHEN $3 THEN now() ELSE paid_at END,
                  closed_at = CASE WHEN $2 IN ('expired', 'cancelled', 'refunded') THEN now() ELSE closed_at END,
                  refunded_cents = coalesce($4, refunded_cents)
            WHERE id = $1""", order_id, status, paid, refunded_cents)


def order_fact(order: Order, **extra: Any) -> dict[str, Any]:
    return {"order_id": str(order.id), "user_id": str(order.user_id), "total_cents": order.total_cents,
            "currency": order.currency, "items": _lines_json(order.items), **extra}


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=str)


def now_iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None
