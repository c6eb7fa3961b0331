"""Check-in over HTTP: scans (online and offline batches), live counts, the signed check-in list."""

from __future__ import annotations

from aiohttp import web

from domain.checkin.lists import signed_list
from domain.checkin.models import BatchIn, BatchOut, ListQuery, ScanIn, ScanOut, SignedListOut, StatsOut
from domain.checkin.services import DoorServices
from handlers.api import ApiRequest, Router

router = Router("checkin", "Door check-in: scans, offline scanners, live counts per gate.")
DOOR: web.AppKey[DoorServices] = web.AppKey("foyer.door", DoorServices)


def door(req: ApiRequest) -> DoorServices:
    return req.app[DOOR].ready()


@router.post("/api/events/{event_id}/checkins", summary="Scan a ticket at a gate (organizers, moderators, staff)",
             body=ScanIn, response=ScanOut,
             errors=("not_found", "forbidden", "validation_failed", "idempotency_key_reused", "busy"))
async def scan(req: ApiRequest) -> dict:
    """`result`: `ok`, `already_checked_in` (with `first_scan`: when and where), `invalid`, `revoked`
    (void, or an older code of a transferred ticket), `not_paid`, `wrong_event`; exit scans
    (`direction: out`) answer `ok` or `not_checked_in`. Retrying with the same `nonce` returns the
    first answer. Every scan is answered with 200: the result is in the body."""
    return await door(req).checkin.scan(req.principal, req.params["event_id"], req.body)


@router.post("/api/events/{event_id}/checkins/batch", summary="Upload scans made offline",
             body=BatchIn, response=BatchOut,
             errors=("not_found", "forbidden", "validation_failed", "idempotency_key_reused", "busy"))
async def scan_batch(req: ApiRequest) -> dict:
    """Scans are applied in (`scanned_at`, `gate`, `nonce`) order: of two gates that scanned one
    ticket while offline, the earliest scan wins (`ok`), the other is `already_checked_in` with
    `conflict`. Answers come back in the request's order."""
    return {"results": await door(req).checkin.batch(req.principal, req.params["event_id"], req.body.scans)}


@router.get("/api/events/{event_id}/checkins/stats", summary="Live check-in counts per gate",
            response=StatsOut, errors=("not_found", "forbidden"))
async def stats(req: ApiRequest) -> dict:
    return await door(req).checkin.stats(req.principal, req.params["event_id"])


@router.get("/api/events/{event_id}/checkin-list", summary="Signed ticket list for offline scanners",
            query=ListQuery, response=SignedListOut, errors=("not_found", "forbidden"))
async def checkin_list(req: ApiRequest) -> dict:
    """Ed25519-signed with the event's ticket key (verify with `GET /api/events/{id}/ticket-key`);
    `?since=<version>` returns only what changed (tickets issued, voided, transferred, checked
    in or out) since that version. See docs/checkin.md."""
    svc = door(req)
    return await signed_list(req.core.db, svc.keys, req.principal, req.params["event_id"], req.query.since)
