"""Ticket sales: catalog, order rules, the order path (gate -> group commit), payments, ticket codes.

Extension points for the second ticketing engineer (check-in, waiting room, seating, forms):
- `domain.tickets.rules.PRE_HOLD_HOOKS`: async validators run before a hold reaches the gate
  (queue admission tokens, registration answers, seat choice);
- `storage.inventory.Gate` counts per-type and per-quota units; seat-level inventory extends it
  by adding seat keys to the same admission script and a seat table guarded by a unique index;
- outbox facts (`order.*`, `ticket.*`, docs/ticketing.md) for organizer views and check-in lists.
"""
