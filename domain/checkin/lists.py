"""The signed check-in list for offline scanners, and how a scanner verifies it.

`GET /api/events/{id}/checkin-list[?since=V]` answers `{alg, kid, payload, signature}`:
`payload` is JSON text, `signature` is base64url Ed25519 over b"foyer-checkin-list\\x00" +
payload (UTF-8) with the event's ticket key (public half at `GET /api/events/{id}/ticket-key`),
so a scanner checks it offline and nobody between can add, drop or change a ticket.

payload = {format: "foyer.checkin-list.v1", event_id, version, since, full, generated_at,
           tickets: [{id, ticket_type_id, generation, status: valid|void|not_paid, holder_name, inside}],
           revoked: [ticket ids whose status is void]}

Deltas: `version` is a cursor; `?since=<version>` returns every ticket whose row or check-in
state was written since (plus possibly a few already sent: applying an entry twice is harmless).
A code is good offline when its signature verifies, its ticket id is in the list with status
`valid` and its generation equals the listed one (an older generation is a transferred ticket's
void code).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.identity import Principal
from domain.policy import Action, authorize
from domain.tickets.codes import b64u, unb64u, verify_code
from domain.tickets.keys import EventKeys
from storage import checkins as store
from storage.db import Database

LIST_CONTEXT = b"foyer-checkin-list\x00"
FORMAT = "foyer.checkin-list.v1"


def _status(row: Any) -> str:
    if row["status"] != "valid":
        return "void"
    if row["order_status"] not in ("paid", "confirmed"):
        return "not_paid"
    return "valid"


async def signed_list(db: Database, keys: EventKeys, principal: Principal, event_id: uuid.UUID,
                      since: int | None) -> dict[str, str]:
    async with db.connection() as conn:
        await authorize(conn, principal, Action.CHECK_IN, event_id)
    signer = await keys.signer(event_id)
    # One snapshot for the cursor and the rows (REPEATABLE READ): nothing committed after the
    # cursor was taken can be missing from the next delta.
    async with db.transaction("checkin.list", isolation="repeatable_read", readonly=True) as conn:
        version = await store.snapshot_cursor(conn)
        rows = await store.list_tickets(conn, event_id, since)
    tickets = [{"id": str(r["id"]), "ticket_type_id": str(r["ticket_type_id"]), "generation": r["generation"],
                "status": _status(r), "holder_name": r["holder_name"], "inside": r["inside"]} for r in rows]
    payload = orjson.dumps({
        "format": FORMAT, "event_id": str(event_id), "version": version, "since": since, "full": since is None,
        "generated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "tickets": tickets,
        "revoked": [t["id"] for t in tickets if t["status"] == "void"],
    })
    return {"alg": "Ed25519", "kid": signer.kid, "payload": payload.decode(),
            "signature": b64u(signer.sign_bytes(LIST_CONTEXT + payload))}


def verify_list(public_key: bytes, signed: dict[str, str]) -> dict[str, Any] | None:
    """What a scanner does offline: the list if the signature holds, else None."""
    try:
        payload = signed["payload"].encode()
        Ed25519PublicKey.from_public_bytes(public_key).verify(unb64u(signed["signature"]), LIST_CONTEXT + payload)
        doc = orjson.loads(payload)
    except (KeyError, ValueError, TypeError, InvalidSignature, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def check_offline(public_key: bytes, tickets: dict[str, dict[str, Any]], code: str,
                  event_id: uuid.UUID) -> str:
    """An offline scanner's verdict for `code` against its merged list (`tickets` by id):
    `ok` | `invalid` | `revoked` | `not_paid` | `wrong_event` | `already_checked_in`."""
    claims = verify_code(public_key, code)
    if claims is None:
        return "invalid"
    if claims.event_id != event_id:
        return "wrong_event"
    entry = tickets.get(str(claims.ticket_id))
    if entry is None:
        return "invalid"
    if entry["status"] == "void" or entry["generation"] != claims.generation:
        return "revoked"
    if entry["status"] == "not_paid":
        return "not_paid"
    return "already_checked_in" if entry.get("inside") else "ok"
