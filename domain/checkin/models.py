"""Shapes of check-in requests and answers (msgspec: unknown fields are rejected)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

# Entry scans answer one of the six results; exit scans answer `ok` or `not_checked_in`.
RESULTS = ("ok", "already_checked_in", "invalid", "revoked", "not_paid", "wrong_event", "not_checked_in")

Gate = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]
Nonce = Annotated[str, msgspec.Meta(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class ScanIn(msgspec.Struct, forbid_unknown_fields=True):
    code: Code
    gate: Gate
    nonce: Nonce  # unique per scan, made by the scanner; a retry reuses it and gets the first answer
    scanned_at: datetime  # the scanner's clock, with a timezone
    direction: Literal["in", "out"] = "in"


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    scans: Annotated[list[ScanIn], msgspec.Meta(min_length=1, max_length=500)]


class ScanRef(msgspec.Struct):
    gate: str
    scanned_at: datetime
    nonce: str | None = None
    exited_at: datetime | None = None


class SeatOut(msgspec.Struct):
    id: uuid.UUID
    section: str
    row: str
    label: str


class TicketBrief(msgspec.Struct):
    id: uuid.UUID
    ticket_type_id: uuid.UUID
    ticket_type: str
    holder_name: str
    status: str
    seat: SeatOut | None = None


class ScanOut(msgspec.Struct):
    result: Literal["ok", "already_checked_in", "invalid", "revoked", "not_paid", "wrong_event", "not_checked_in"]
    direction: str
    gate: str
    nonce: str
    scanned_at: datetime
    ticket: TicketBrief | None = None
    first_scan: ScanRef | None = None  # already_checked_in: when and where the ticket came in
    entry: ScanRef | None = None  # exit ok: the stay that the exit closed
    superseded: ScanRef | None = None  # offline: this earlier scan took the entry over from that one
    conflict: ScanRef | None = None  # batch: the scan this one lost to (same ticket, earlier)


class BatchOut(msgspec.Struct):
    results: list[ScanOut]


class GateStats(msgspec.Struct):
    gate: str
    entries: int
    exits: int
    inside: int
    rejected: dict[str, int]


class StatsOut(msgspec.Struct):
    event_id: uuid.UUID
    tickets: int
    checked_in: int
    inside: int
    entries: int
    exits: int
    rejected: dict[str, int]
    gates: list[GateStats]


class ListQuery(msgspec.Struct, forbid_unknown_fields=True):
    since: Annotated[int, msgspec.Meta(ge=0)] | None = None


class SignedListOut(msgspec.Struct):
    alg: str
    kid: str
    payload: str  # the check-in list as JSON text; `signature` signs exactly these bytes
    signature: str  # base64url Ed25519 over b"foyer-checkin-list\x00" + payload (UTF-8)
