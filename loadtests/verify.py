#!/usr/bin/env python3
"""Check every ticketing invariant in PostgreSQL after a load test; non-zero exit on a violation.

    python loadtests/verify.py --database-url postgresql://USER@HOST/DB [--event-id UUID] [--grace 15]

Checks (DESIGN.md §6, issue 3), per ticket type and per shared quota:
- no oversell: sold + held <= capacity;
- counters match the rows: held == seats of orders in `held`; sold == valid tickets;
  a quota's sold/held == the sum over its types;
- no seat sold twice: no duplicate (order, type, seat) and no duplicate code among tickets;
  valid tickets of an order never exceed what it bought;
- every paid/confirmed order has its tickets (one per seat, valid or voided by a refund);
  held/expired/cancelled orders have none valid;
- no orphan holds: no `held` order past its expiry by more than --grace seconds (the sweeper
  runs every second on every node);
- payments: at most one per order; every succeeded payment belongs to a paid/refunded/cancelled
  order; no paid order without a succeeded payment unless it was free.
Prints a one-screen report.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from dataclasses import dataclass, field

import asyncpg

CHECKS: list[tuple[str, str]] = [
    ("oversold ticket types", "SELECT id, sold, held, capacity FROM ticket_types WHERE {ev} AND sold + held > capacity"),
    ("oversold quotas", "SELECT id, sold, held, capacity FROM ticket_quotas WHERE {ev} AND sold + held > capacity"),
    ("type held counter != seats of held orders", """
        SELECT t.id, t.held, coalesce(h.n, 0) AS in_orders FROM ticket_types t
          LEFT JOIN (SELECT i.ticket_type_id, sum(i.quantity) AS n FROM order_items i
                       JOIN orders o ON o.id = i.order_id WHERE o.status = 'held' GROUP BY 1) h
            ON h.ticket_type_id = t.id
         WHERE {ev_t} AND t.held <> coalesce(h.n, 0)"""),
    ("type sold counter != valid tickets", """
        SELECT t.id, t.sold, coalesce(k.n, 0) AS valid_tickets FROM ticket_types t
          LEFT JOIN (SELECT ticket_type_id, count(*) AS n FROM tickets WHERE status = 'valid' GROUP BY 1) k
            ON k.ticket_type_id = t.id
         WHERE {ev_t} AND t.sold <> coalesce(k.n, 0)"""),
    ("quota counters != sum of its types", """
        SELECT q.id, q.sold, q.held, sum(t.sold) AS types_sold, sum(t.held) AS types_held FROM ticket_quotas q
          JOIN ticket_types t ON t.quota_id = q.id WHERE {ev_q}
         GROUP BY q.id HAVING q.sold <> sum(t.sold) OR q.held <> sum(t.held)"""),
    ("seat sold twice (duplicate order/type/seat or code)", """
        SELECT order_id, ticket_type_id, seat_no, count(*) FROM tickets WHERE {ev}
         GROUP BY 1, 2, 3 HAVING count(*) > 1
        UNION ALL SELECT NULL, NULL, NULL, count(*) FROM tickets WHERE {ev} GROUP BY code HAVING count(*) > 1"""),
    ("paid order without all its tickets", """
        SELECT o.id, i.ticket_type_id, i.quantity, count(k.id) AS issued FROM orders o
          JOIN order_items i ON i.order_id = o.id
          LEFT JOIN tickets k ON k.order_id = o.id AND k.ticket_type_id = i.ticket_type_id
         WHERE {ev_o} AND o.status IN ('paid', 'confirmed')
         GROUP BY o.id, i.ticket_type_id, i.quantity HAVING count(k.id) <> i.quantity"""),
    ("more valid tickets than bought", """
        SELECT o.id, i.ticket_type_id, i.quantity, count(k.id) FROM orders o JOIN order_items i ON i.order_id = o.id
          JOIN tickets k ON k.order_id = o.id AND k.ticket_type_id = i.ticket_type_id AND k.status = 'valid'
         WHERE {ev_o} GROUP BY o.id, i.ticket_type_id, i.quantity HAVING count(k.id) > i.quantity"""),
    ("valid tickets on an unpaid order", """
        SELECT o.id, o.status, count(*) FROM orders o JOIN tickets k ON k.order_id = o.id AND k.status = 'valid'
         WHERE {ev_o} AND o.status NOT IN ('paid', 'confirmed') GROUP BY 1, 2"""),
    ("expired holds still counted (past expiry + grace)", """
        SELECT id, expires_at FROM orders o WHERE {ev_o} AND status = 'held'
           AND expires_at < now() - make_interval(secs => $2)"""),
    ("more than one payment per order", "SELECT order_id, count(*) FROM payments GROUP BY 1 HAVING count(*) > 1"),
    ("succeeded payment on an order that is not paid/refunded/cancelled", """
        SELECT p.order_id, o.status FROM payments p JOIN orders o ON o.id = p.order_id
         WHERE {ev_o} AND p.status IN ('succeeded', 'refunded') AND o.status NOT IN ('paid', 'refunded', 'cancelled')"""),
    ("paid order without a succeeded payment", """
        SELECT o.id FROM orders o LEFT JOIN payments p ON p.order_id = o.id
         WHERE {ev_o} AND o.status = 'paid' AND (p.id IS NULL OR p.status NOT IN ('succeeded', 'refunded'))"""),
]

SUMMARY = """
SELECT (SELECT count(*) FROM ticket_types WHERE {ev}) AS types,
       (SELECT coalesce(sum(capacity), 0) FROM ticket_types WHERE {ev}) AS capacity,
       (SELECT coalesce(sum(sold), 0) FROM ticket_types WHERE {ev}) AS sold,
       (SELECT coalesce(sum(held), 0) FROM ticket_types WHERE {ev}) AS held,
       (SELECT count(*) FROM orders o WHERE {ev_o}) AS orders,
       (SELECT count(*) FROM orders o WHERE {ev_o} AND status = 'held') AS orders_held,
       (SELECT count(*) FROM orders o WHERE {ev_o} AND status IN ('paid', 'confirmed')) AS orders_paid,
       (SELECT count(*) FROM orders o WHERE {ev_o} AND status = 'expired') AS orders_expired,
       (SELECT count(*) FROM orders o WHERE {ev_o} AND status IN ('cancelled', 'refunded')) AS orders_closed,
       (SELECT count(*) FROM tickets WHERE {ev} AND status = 'valid') AS tickets_valid,
       (SELECT count(*) FROM payments p JOIN orders o ON o.id = p.order_id WHERE {ev_o}) AS payments
"""


@dataclass
class Report:
    summary: dict
    violations: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def render(self) -> str:
        s = self.summary
        lines = ["Foyer ticketing invariants", "=" * 60,
                 f"types {s['types']}  capacity {s['capacity']}  sold {s['sold']}  held {s['held']}",
                 f"orders {s['orders']}  held {s['orders_held']}  paid/confirmed {s['orders_paid']}  "
                 f"expired {s['orders_expired']}  cancelled/refunded {s['orders_closed']}",
                 f"valid tickets {s['tickets_valid']}  payments {s['payments']}", "-" * 60]
        for name, _ in CHECKS:
            rows = self.violations.get(name)
            lines.append(f"{'FAIL' if rows else ' ok '}  {name}" + (f"  ({len(rows)}, e.g. {rows[0]})" if rows else ""))
        lines.append("=" * 60)
        lines.append("ALL INVARIANTS HOLD" if self.ok else f"{len(self.violations)} INVARIANT(S) VIOLATED")
        return "\n".join(lines)


def _scoped(sql: str, event_id: uuid.UUID | None) -> str:
    cond = "($1::uuid IS NULL OR event_id = $1)"
    return sql.format(ev=cond, ev_t=cond.replace("event_id", "t.event_id"), ev_q=cond.replace("event_id", "q.event_id"),
                      ev_o=cond.replace("event_id", "o.event_id"))


async def check(dsn: str, *, event_id: uuid.UUID | None = None, grace_seconds: float = 15.0) -> Report:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # one consistent snapshot
            summary = dict(await conn.fetchrow(_scoped(SUMMARY, event_id), event_id))
            report = Report(summary)
            for name, sql in CHECKS:
                q = _scoped(sql, event_id)
                args = [event_id, float(grace_seconds)] if "$2" in q else ([event_id] if "$1" in q else [])
                rows = await conn.fetch(q, *args)
                if rows:
                    report.violations[name] = [dict(r) for r in rows[:5]]
            return report
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="PostgreSQL DSN of the Foyer under test")
    parser.add_argument("--event-id", type=uuid.UUID, help="only this event (default: all)")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds a lapsed hold may wait for the sweeper")
    args = parser.parse_args(argv)
    report = asyncio.run(check(args.database_url, event_id=args.event_id, grace_seconds=args.grace))
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
