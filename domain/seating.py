"""Reserved seating: seat maps per ticket type, seat choice or best-available at order time.

Guarantees:
- A seat is never sold twice: seats are allocated inside the hold batch's transaction, after the
  ticket-type rows are locked (every allocation of a type is serialized), and the partial unique
  index on active assignments refuses a second one whatever happens.
- Seated types still go through the per-type counters (Redis gate, CHECK constraints): the map
  sets the type's capacity to its open (not blocked) seats, and each held/sold unit has one
  active seat assignment. Seats return with the counters (expiry, cancel, refund: triggers of
  migration 0160); a late payment for an expired hold gets its seats back only if they are
  still free, else it is refunded.
- Buyers pick `seat_ids` (as many as `quantity`) or get the best available seats: adjacent seats
  (consecutive positions in one row) in the best section (lowest rank), front rows first, closest
  to the row's middle; only when no row has enough adjacent free seats, the best single seats.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec
import orjson

from domain.cache import ReadThroughCache
from domain.errors import FoyerError, field_error, not_found
from domain.identity import Principal
from domain.policy import Action, authorize
from domain.tickets.models import HoldOutcome, HoldRequest, Order
from domain.tickets.rules import HoldContext
from storage import seating as store
from storage import tickets as ticket_store
from storage.db import Database

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
MAX_SEATS = 50_000


class RowIn(msgspec.Struct, forbid_unknown_fields=True):
    label: Label
    seats: Annotated[int, msgspec.Meta(ge=1, le=500)] | None = None  # seats labelled 1..n
    seat_labels: Annotated[list[Label], msgspec.Meta(min_length=1, max_length=500)] | None = None
    blocked: list[Label] = []  # labels not for sale


class SectionIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    rows: Annotated[list[RowIn], msgspec.Meta(min_length=1, max_length=500)]
    rank: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0  # lower is better


class SeatMapIn(msgspec.Struct, forbid_unknown_fields=True):
    sections: Annotated[list[SectionIn], msgspec.Meta(min_length=1, max_length=100)]
    name: Annotated[str, msgspec.Meta(max_length=120)] = ""


class BlockIn(msgspec.Struct, forbid_unknown_fields=True):
    seat_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=5000)]
    blocked: bool


def seat_public(r: Any) -> dict[str, Any]:
    return {"id": str(r["id"]), "section": r["section"], "row": r["row_label"], "label": r["label"]}


def _layout(body: SeatMapIn) -> tuple[list[tuple[str, int, int]], list[tuple[int, str, int, int, str, bool]]]:
    sections: list[tuple[str, int, int]] = []
    seats: list[tuple[int, str, int, int, str, bool]] = []
    names: set[str] = set()
    for si, sec in enumerate(body.sections):
        if sec.name in names:
            raise field_error(f"sections.{si}.name", "section names must be unique")
        names.add(sec.name)
        sections.append((sec.name, sec.rank, si))
        rows: set[str] = set()
        for ri, row in enumerate(sec.rows):
            where = f"sections.{si}.rows.{ri}"
            if row.label in rows:
                raise field_error(f"{where}.label", "row labels must be unique in a section")
            rows.add(row.label)
            if (row.seats is None) == (row.seat_labels is None):
                raise field_error(where, "give either seats (a count) or seat_labels")
            labels = row.seat_labels or [str(n) for n in range(1, (row.seats or 0) + 1)]
            if len(set(labels)) != len(labels):
                raise field_error(f"{where}.seat_labels", "seat labels must be unique in a row")
            unknown = set(row.blocked) - set(labels)
            if unknown:
                raise field_error(f"{where}.blocked", f"no such seats: {sorted(unknown)}")
            blocked = set(row.blocked)
            seats.extend((si, row.label, ri, pos, label, label in blocked) for pos, label in enumerate(labels))
    if len(seats) > MAX_SEATS:
        raise field_error("sections", f"at most {MAX_SEATS} seats per map")
    return sections, seats


def best_available(seats: Sequence[Any], n: int, taken: set[uuid.UUID]) -> list[Any] | None:
    """The best `n` free seats (see module doc) among `seats` (rows with id, section_id, rank,
    section_position, row_no, seat_no, free), not in `taken`; None if fewer than `n` are free."""
    rows: dict[tuple, list[Any]] = defaultdict(list)
    for s in seats:
        rows[(s["rank"], s["section_position"], s["section_id"], s["row_no"])].append(s)
    fallback: list[tuple[tuple, Any]] = []
    for key in sorted(rows, key=lambda k: k[:2] + (k[3],)):
        row = sorted(rows[key], key=lambda s: s["seat_no"])
        middle = (row[0]["seat_no"] + row[-1]["seat_no"]) / 2
        free = [s for s in row if s["free"] and s["id"] not in taken]
        best: tuple[float, list[Any]] | None = None
        for i in range(len(free) - n + 1):
            window = free[i:i + n]
            if window[-1]["seat_no"] - window[0]["seat_no"] == n - 1:  # consecutive: adjacent
                distance = abs((window[0]["seat_no"] + window[-1]["seat_no"]) / 2 - middle)
                if best is None or distance < best[0]:
                    best = (distance, window)
        if best is not None:
            return best[1]
        fallback.extend(((key[0], key[1], key[3], abs(s["seat_no"] - middle)), s) for s in free)
    if len(fallback) < n:
        return None
    return [s for _, s in sorted(fallback, key=lambda x: x[0])[:n]]


class Seating:
    def __init__(self, *, db: Database, tickets: Any, cache_seconds: float) -> None:
        self.db = db
        self.tickets = tickets  # domain.tickets.services.TicketServices (catalog and gate invalidation)
        self.cache_seconds = cache_seconds
        self._seated: ReadThroughCache[set[uuid.UUID]] = ReadThroughCache(cache_seconds, stale_on_error=True)

    # --- organizers -------------------------------------------------------------------------------
    async def put_map(self, principal: Principal, event_id: uuid.UUID, type_id: uuid.UUID,
                      body: SeatMapIn) -> dict[str, Any]:
        """Create or replace the type's seat map (only while nothing is sold or held); the type's
        capacity becomes its number of open seats."""
        sections, seats = _layout(body)
        async with self.db.transaction("seating.put_map") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            t = await store.lock_type(conn, event_id, type_id)
            if t is None:
                raise not_found("ticket type")
            if t["sold"] or t["held"] or await store.active_assignments_of_type(conn, type_id):
                raise FoyerError("conflict", "seats of this ticket type are already sold or held")
            await store.delete_map(conn, type_id)
            await store.create_map(conn, event_id=event_id, type_id=type_id, name=body.name, sections=sections,
                                   seats=seats)
            await ticket_store.update_type(conn, event_id, type_id, {"capacity": sum(1 for s in seats if not s[5])})
        await self._changed(event_id)
        return await self.get_map(principal, event_id, type_id)

    async def delete_map(self, principal: Principal, event_id: uuid.UUID, type_id: uuid.UUID) -> None:
        async with self.db.transaction("seating.delete_map") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            t = await store.lock_type(conn, event_id, type_id)
            if t is None or not await store.delete_map(conn, type_id):
                raise not_found("seat map")
            if t["sold"] or t["held"]:
                raise FoyerError("conflict", "seats of this ticket type are already sold or held")
        await self._changed(event_id)

    async def block(self, principal: Principal, event_id: uuid.UUID, type_id: uuid.UUID, body: BlockIn) -> dict:
        """Take free seats off sale (or put them back); capacity follows the open seats."""
        async with self.db.transaction("seating.block") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            if await store.lock_type(conn, event_id, type_id) is None or await store.get_map(conn, type_id) is None:
                raise not_found("seat map")
            changed, refused = await store.set_blocked(conn, type_id, body.seat_ids, body.blocked)
            if refused:
                raise FoyerError("seat_unavailable", "sold or held seats cannot be blocked",
                                 details={"seat_ids": [str(s) for s in refused]})
            _total, open_seats = await store.count_seats(conn, type_id)
            await ticket_store.update_type(conn, event_id, type_id, {"capacity": open_seats})
        await self._changed(event_id)
        return {"changed": changed, "capacity": open_seats}

    async def _changed(self, event_id: uuid.UUID) -> None:
        self._seated.invalidate(event_id)
        svc = self.tickets
        if svc.orders is not None:
            svc.orders.catalog.invalidate(event_id)
        if svc.gate is not None:
            await svc.gate.invalidate(event_id)

    # --- everyone who can see the event ------------------------------------------------------------
    async def get_map(self, principal: Principal | None, event_id: uuid.UUID, type_id: uuid.UUID) -> dict[str, Any]:
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_EVENT, event_id)
            m = await store.get_map(conn, type_id)
            if m is None or m["event_id"] != event_id:
                raise not_found("seat map")
            rows = await store.seats_with_state(conn, type_id)
        sections: dict[uuid.UUID, dict[str, Any]] = {}
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            sec = sections.setdefault(r["section_id"], {"id": str(r["section_id"]), "name": r["section"],
                                                        "rank": r["rank"], "rows": {}})
            row = sec["rows"].setdefault(r["row_label"], {"label": r["row_label"], "seats": []})
            row["seats"].append({"id": str(r["id"]), "label": r["label"], "position": r["seat_no"],
                                 "status": r["state"]})
            counts[r["state"]] += 1
        return {"id": str(m["id"]), "ticket_type_id": str(type_id), "name": m["name"],
                "counts": {k: counts.get(k, 0) for k in ("available", "held", "sold", "blocked")},
                "sections": [{**s, "rows": list(s["rows"].values())} for s in sections.values()]}

    async def order_seats(self, order_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self.db.connection() as conn:
            rows = await store.order_seats(conn, order_id)
        return [{"ticket_type_id": str(r["ticket_type_id"]), "seat_index": r["seat_index"], **seat_public(r)}
                for r in rows]

    async def seat_of_ticket(self, conn: Any, ticket: Any) -> dict[str, Any] | None:
        """For check-in answers: the seat of a ticket row (order_id, ticket_type_id, seat_no)."""
        r = await store.ticket_seat(conn, ticket["order_id"], ticket["ticket_type_id"], ticket["seat_no"])
        return seat_public(r) if r is not None else None

    # --- the order path -------------------------------------------------------------------------------
    async def _seated_types(self, event_id: uuid.UUID) -> set[uuid.UUID]:
        async def load() -> set[uuid.UUID]:
            async with self.db.connection() as conn:
                return await store.seated_types_of_event(conn, event_id)

        return await self._seated.get(event_id, load)  # PostgreSQL unreachable: the batch decides anyway

    async def pre_hold(self, ctx: HoldContext) -> None:
        """Shape checks on seat choices (cached map list, no I/O when warm); the batch decides."""
        seated = await self._seated_types(ctx.event.id)
        picks: dict[str, list[str] | None] = {}
        for i, item in enumerate(ctx.order.items):
            if item.ticket_type_id not in seated:
                if item.seat_ids is not None:
                    raise field_error(f"items.{i}.seat_ids", "this ticket type has no seat map")
                continue
            if item.seat_ids is None:
                picks[str(item.ticket_type_id)] = None
                continue
            if len(item.seat_ids) != item.quantity:
                raise field_error(f"items.{i}.seat_ids", "pick exactly `quantity` seats")
            if len(set(item.seat_ids)) != len(item.seat_ids):
                raise field_error(f"items.{i}.seat_ids", "a seat is picked twice")
            picks[str(item.ticket_type_id)] = [str(s) for s in item.seat_ids]
        if picks:
            ctx.extra["seats"] = picks

    async def admit(self, conn: Any, requests: Sequence[HoldRequest],
                    types: Mapping[uuid.UUID, Any]) -> dict[uuid.UUID, HoldOutcome]:
        """Batch hook: allocate seats for every seated line, in request order (type rows locked;
        whether a type has a seat map comes with its locked row: no query when none has)."""
        seated = {tid for tid, row in types.items() if row["seated"]}
        if not seated:
            return {}
        picked = {uuid.UUID(s) for r in requests for p in (r.extra.get("seats") or {}).values() if p for s in p}
        known = await store.seats_by_id(conn, picked) if picked else {}
        layouts: dict[uuid.UUID, list[Any]] = {}
        taken: set[uuid.UUID] = set()
        refused: dict[uuid.UUID, HoldOutcome] = {}
        for r in requests:
            assigned: dict[uuid.UUID, list[Any]] = {}
            failure: HoldOutcome | None = None
            for i, ln in enumerate(r.lines):
                if ln.ticket_type_id not in seated:
                    continue
                pick = (r.extra.get("seats") or {}).get(str(ln.ticket_type_id))
                if pick:
                    chosen = [known.get(uuid.UUID(s)) for s in pick]
                    if any(c is None or c["ticket_type_id"] != ln.ticket_type_id for c in chosen):
                        failure = HoldOutcome(False, "validation_failed", ln.ticket_type_id,
                                              message="not a seat of this ticket type", details=[
                                                  {"field": f"items.{i}.seat_ids", "message": "unknown seat"}])
                        break
                    gone = [str(c["id"]) for c in chosen if c["blocked"] or c["taken"] or c["id"] in taken]
                    if gone:
                        failure = HoldOutcome(False, "seat_unavailable", ln.ticket_type_id,
                                              message="some of these seats are taken",
                                              details={"ticket_type_id": str(ln.ticket_type_id), "seat_ids": gone})
                        break
                else:
                    if ln.ticket_type_id not in layouts:
                        layouts[ln.ticket_type_id] = await store.seats_for_allocation(conn, ln.ticket_type_id)
                    chosen = best_available(layouts[ln.ticket_type_id], ln.quantity, taken) or []
                    if len(chosen) < ln.quantity:
                        failure = HoldOutcome(False, "sold_out", ln.ticket_type_id)
                        break
                assigned[ln.ticket_type_id] = chosen
                taken.update(c["id"] for c in chosen)
            if failure is not None:
                for chosen in assigned.values():
                    taken.difference_update(c["id"] for c in chosen)
                refused[r.order_id] = failure
                continue
            if assigned:
                r.extra["assigned"] = {tid: [c["id"] for c in chosen] for tid, chosen in assigned.items()}
                body = orjson.loads(r.response)
                for item in body["items"]:
                    chosen = assigned.get(uuid.UUID(item["ticket_type_id"]))
                    if chosen is not None:
                        item["seats"] = [seat_public(c) for c in chosen]
                r.response = orjson.dumps(body)
        return refused

    async def placed(self, conn: Any, requests: Sequence[HoldRequest]) -> None:
        rows = [(r.event_id, seat_id, r.order_id, tid, index)
                for r in requests for tid, seat_ids in (r.extra.get("assigned") or {}).items()
                for index, seat_id in enumerate(seat_ids)]
        await store.assign(conn, rows)

    async def reacquire(self, conn: Any, order: Order) -> bool:
        """Late payment of an expired order (locked): its seats again, if all are still free."""
        await store.lock_types(conn, (ln.ticket_type_id for ln in order.items))
        return await store.reactivate(conn, order.id) is not False
