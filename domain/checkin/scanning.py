"""Scanning tickets at the door: online scans, batches of offline scans, live counts.

Guarantees:
- A code counts only if its Ed25519 signature verifies with the event's key and it is the
  ticket's current generation (a transferred ticket's old code is `revoked`). A code signed for
  another event by that event's key is `wrong_event`; anything else is `invalid`.
- One answer per nonce: the scan row is claimed first under UNIQUE (event_id, nonce) in the
  scan's transaction; a retry (or a concurrent duplicate) gets the first answer (the stored
  JSON, same fields and values). The same nonce with another code, gate or direction is `idempotency_key_reused`.
- One check-in per ticket per entry, enforced by PostgreSQL: at most one open entry per ticket
  (partial unique index). Of two gates scanning one ticket at once, exactly one gets `ok`; the
  other gets `already_checked_in` with `first_scan` (gate, time, nonce of the winner).
- Exit scans close the open entry (`ok`, with the `entry` closed) or answer `not_checked_in`;
  re-entry after an exit opens a new entry.
- Offline batches are applied in (scanned_at, gate, nonce) order. An offline entry scan that is
  earlier, by that key, than the scan holding the ticket's open entry takes the entry over (its
  answer is `ok` with `superseded`), so the recorded first scan does not depend on which scanner
  uploaded first. Online scans never take over (first committed wins).
- Per-gate counters and `ticket.checked_in` / `ticket.checked_out` outbox facts are written in
  the scan's transaction (exactly once per scan).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.checkin.models import ScanIn
from domain.errors import FoyerError
from domain.identity import Principal
from domain.policy import Action, authorize
from domain.tickets.codes import TicketClaims, verify_code
from domain.tickets.keys import EventKeys
from storage import checkins as store
from storage import outbox
from storage.db import Database

MAX_CLOCK_AHEAD = timedelta(minutes=10)  # scans stamped further in the future are refused
_PAYLOAD = struct.Struct(">B16s16sI")


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ref(row: Any, *, exited: bool = False) -> dict[str, Any]:
    out = {"gate": row["gate"], "scanned_at": _iso(row["scanned_at"]), "nonce": row["nonce"]}
    if exited and row["exited_at"] is not None:
        out["exited_at"] = _iso(row["exited_at"])
    return out


def scan_fingerprint(scan: ScanIn) -> bytes:
    h = hashlib.sha256()
    for part in (scan.code.strip(), scan.gate, scan.direction):
        data = part.encode()
        h.update(len(data).to_bytes(4, "big") + data)
    return h.digest()


def peek_event_id(code: str) -> uuid.UUID | None:
    """The event id a code claims, WITHOUT verifying it (only to pick the key to verify with)."""
    try:
        prefix, payload_txt, _sig = code.strip().split(".")
        payload = base64.urlsafe_b64decode(payload_txt + "=" * (-len(payload_txt) % 4))
        if prefix != "FY1" or len(payload) != _PAYLOAD.size:
            return None
        return uuid.UUID(bytes=_PAYLOAD.unpack(payload)[2])
    except (ValueError, TypeError, struct.error):
        return None


def _check_time(scan: ScanIn, field: str) -> None:
    if scan.scanned_at.tzinfo is None:
        raise FoyerError("validation_failed", "scanned_at needs a timezone",
                         details=[{"field": field, "message": "needs a timezone (e.g. 2030-01-01T10:00:00Z)"}])
    if scan.scanned_at > datetime.now(UTC) + MAX_CLOCK_AHEAD:
        raise FoyerError("validation_failed", "scanned_at is in the future",
                         details=[{"field": field, "message": "is more than 10 minutes in the future"}])


class CheckinService:
    def __init__(self, *, db: Database, keys: EventKeys) -> None:
        self.db = db
        self.keys = keys
        self._public: dict[uuid.UUID, bytes] = {}
        # seat lookup for the ticket brief, set by the seating capability: (conn, ticket row) -> dict | None
        self.seat_of: Any = None

    # --- entry points ---------------------------------------------------------------------------
    async def scan(self, principal: Principal, event_id: uuid.UUID, scan: ScanIn) -> dict[str, Any]:
        _check_time(scan, "scanned_at")
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.CHECK_IN, event_id)
        return await self._scan(principal, event_id, scan, source="online")

    async def batch(self, principal: Principal, event_id: uuid.UUID, scans: list[ScanIn]) -> list[dict[str, Any]]:
        """Apply offline scans in (scanned_at, gate, nonce) order; answers in the request's order."""
        for i, s in enumerate(scans):
            _check_time(s, f"scans.{i}.scanned_at")
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.CHECK_IN, event_id)
        order = sorted(range(len(scans)), key=lambda i: (scans[i].scanned_at, scans[i].gate, scans[i].nonce))
        results: list[dict[str, Any]] = [{} for _ in scans]
        winners: dict[str, dict[str, Any]] = {}  # nonce -> its answer, to report in-batch conflicts
        for i in order:
            out = await self._scan(principal, event_id, scans[i], source="offline")
            winners[scans[i].nonce] = out
            first = out.get("first_scan")
            if out["result"] == "already_checked_in" and first and first.get("nonce") in winners:
                out = {**out, "conflict": first}
            results[i] = out
        return results

    # --- one scan -------------------------------------------------------------------------------
    async def _scan(self, principal: Principal, event_id: uuid.UUID, scan: ScanIn, *, source: str) -> dict[str, Any]:
        fp = scan_fingerprint(scan)
        stored = await self._stored(event_id, scan.nonce, fp)
        if stored is not None:
            return stored
        verdict, claims = await self._verify(event_id, scan.code)
        response: dict[str, Any] | None = None
        async with self.db.transaction("checkin.scan") as conn:
            scan_id = await store.claim_scan(
                conn, event_id=event_id, nonce=scan.nonce, fingerprint=fp, gate=scan.gate,
                direction=scan.direction, scanned_at=scan.scanned_at, scanner_id=principal.user_id, source=source)
            if scan_id is not None:
                response, ticket_id, fact = await self._decide(conn, event_id, scan, scan_id, verdict, claims, source)
                await store.finish_scan(conn, scan_id, ticket_id=ticket_id, result=response["result"],
                                        response=response)
                await store.count(conn, event_id, scan.gate, scan.direction, response["result"])
                if fact is not None:
                    await outbox.append(conn, type=fact[0], event_id=event_id, data=fact[1])
        if response is None:  # a concurrent duplicate committed first
            response = await self._stored(event_id, scan.nonce, fp)
            if response is None:
                raise FoyerError("busy", "this scan is being processed, try again", details={"retry_after": 1})
        return response

    async def _stored(self, event_id: uuid.UUID, nonce: str, fp: bytes) -> dict[str, Any] | None:
        async with self.db.connection() as conn:
            row = await store.get_scan(conn, event_id, nonce)
        if row is None or row["result"] == "pending":
            return None
        if bytes(row["fingerprint"]) != fp:
            raise FoyerError("idempotency_key_reused", "this nonce was used for a different scan",
                             details=[{"field": "nonce", "message": "already used with another code, gate or direction"}])
        return row["response"]

    async def _verify(self, event_id: uuid.UUID, code: str) -> tuple[str, TicketClaims | None]:
        own = await self._public_key(event_id, create=True)
        claims = verify_code(own, code) if own else None
        if claims is not None and claims.event_id == event_id:
            return "valid", claims
        other = peek_event_id(code)
        if other is not None and other != event_id:
            key = await self._public_key(other, create=False)
            if key is not None and verify_code(key, code) is not None:
                return "wrong_event", None
        return "invalid", None

    async def _public_key(self, event_id: uuid.UUID, *, create: bool) -> bytes | None:
        key = self._public.get(event_id)
        if key is not None:
            return key
        if create:
            key = (await self.keys.signer(event_id)).public_key
        else:
            async with self.db.connection() as conn:
                key = await store.public_key(conn, event_id)
        if key is not None:
            if len(self._public) > 10_000:
                self._public.pop(next(iter(self._public)))
            self._public[event_id] = key
        return key

    async def _decide(self, conn: Any, event_id: uuid.UUID, scan: ScanIn, scan_id: uuid.UUID, verdict: str,
                      claims: TicketClaims | None, source: str
                      ) -> tuple[dict[str, Any], uuid.UUID | None, tuple[str, dict[str, Any]] | None]:
        base = {"direction": scan.direction, "gate": scan.gate, "nonce": scan.nonce, "scanned_at": _iso(scan.scanned_at)}
        if verdict != "valid" or claims is None:
            return {"result": verdict, **base}, None, None
        t = await store.ticket_for_scan(conn, event_id, claims.ticket_id)
        if t is None:
            return {"result": "invalid", **base}, None, None
        brief: dict[str, Any] = {"id": str(t["id"]), "ticket_type_id": str(t["ticket_type_id"]),
                                 "ticket_type": t["type_name"], "holder_name": t["holder_name"], "status": t["status"]}
        if self.seat_of is not None:
            seat = await self.seat_of(conn, t)
            if seat is not None:
                brief["seat"] = seat
        base["ticket"] = brief
        if t["status"] != "valid" or t["generation"] != claims.generation:
            return {"result": "revoked", **base}, t["id"], None
        if t["order_status"] not in ("paid", "confirmed"):
            return {"result": "not_paid", **base}, t["id"], None
        fact_data = {"ticket_id": str(t["id"]), "event_id": str(event_id), "ticket_type_id": str(t["ticket_type_id"]),
                     "gate": scan.gate, "scanned_at": _iso(scan.scanned_at), "direction": scan.direction}
        if scan.direction == "out":
            closed = await store.close_entry(conn, t["id"], scan_id=scan_id, gate=scan.gate, scanned_at=scan.scanned_at)
            if closed is None:
                return {"result": "not_checked_in", **base}, t["id"], None
            return {"result": "ok", **base, "entry": _ref(closed)}, t["id"], ("ticket.checked_out", fact_data)
        for _attempt in range(3):
            opened = await store.open_entry(conn, event_id=event_id, ticket_id=t["id"], scan_id=scan_id,
                                            gate=scan.gate, scanned_at=scan.scanned_at, nonce=scan.nonce)
            if opened is not None:
                return {"result": "ok", **base}, t["id"], ("ticket.checked_in", fact_data)
            current = await store.lock_open_entry(conn, t["id"])
            if current is None:
                late = await store.last_closed_after(conn, t["id"], scan.scanned_at)
                if late is not None:  # the scan predates a recorded exit: it belongs to that stay
                    return {"result": "already_checked_in", **base, "first_scan": _ref(late, exited=True)}, t["id"], None
                continue  # the open entry was closed meanwhile: try again
            mine = (scan.scanned_at, scan.gate, scan.nonce)
            if source == "offline" and mine < (current["scanned_at"], current["gate"], current["nonce"]):
                late = await store.last_closed_after(conn, t["id"], scan.scanned_at)
                if late is not None:  # earlier than a recorded exit: it belongs to that stay
                    return {"result": "already_checked_in", **base, "first_scan": _ref(late, exited=True)}, t["id"], None
                await store.take_over_entry(conn, current["id"], scan_id=scan_id, gate=scan.gate,
                                            scanned_at=scan.scanned_at, nonce=scan.nonce)
                await store.mark_superseded(conn, current["entry_scan_id"], scan_id)
                return {"result": "ok", **base, "superseded": _ref(current)}, t["id"], None
            return {"result": "already_checked_in", **base, "first_scan": _ref(current)}, t["id"], None
        raise FoyerError("busy", "the ticket's check-in state is changing, try again", details={"retry_after": 1})

    # --- live counts ----------------------------------------------------------------------------
    async def stats(self, principal: Principal, event_id: uuid.UUID) -> dict[str, Any]:
        """Counts per gate from aggregate rows written in each scan's transaction (exact, all nodes)."""
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_CHECKINS, event_id)
            raw = await store.stats(conn, event_id)
        gates: dict[str, dict[str, Any]] = {}
        rejected_total: dict[str, int] = {}
        entries = exits = 0
        for row in raw["gates"]:
            g = gates.setdefault(row["gate"], {"gate": row["gate"], "entries": 0, "exits": 0, "inside": 0,
                                               "rejected": {}})
            if row["result"] == "ok":
                if row["direction"] == "in":
                    g["entries"] += row["n"]
                    entries += row["n"]
                else:
                    g["exits"] += row["n"]
                    exits += row["n"]
            else:
                g["rejected"][row["result"]] = g["rejected"].get(row["result"], 0) + row["n"]
                rejected_total[row["result"]] = rejected_total.get(row["result"], 0) + row["n"]
        for gate, n in raw["inside_by_gate"].items():
            gates.setdefault(gate, {"gate": gate, "entries": 0, "exits": 0, "inside": 0, "rejected": {}})["inside"] = n
        return {"event_id": event_id, "tickets": raw["tickets"], "checked_in": raw["checked_in"],
                "inside": raw["inside"], "entries": entries, "exits": exits, "rejected": rejected_total,
                "gates": sorted(gates.values(), key=lambda g: g["gate"])}
