"""Signed ticket codes, verifiable offline with the event's public key (Ed25519).

Code format (ASCII, fits a QR code comfortably):

    FY1.<base64url(payload)>.<base64url(signature)>

payload (37 bytes) = version 0x01 | ticket id (16) | event id (16) | generation (uint32 BE);
signature = Ed25519 over b"foyer-ticket\\x00" + payload, with the event's private key.

A scanner holding the event's public key (`GET /api/events/{id}/ticket-key`) checks the signature
and the event id without a network; `generation` grows on every transfer, so a scanner that knows
a ticket's current generation (check-in lists) rejects older codes. Online, the code stored in
PostgreSQL is the one valid code of a ticket.

Per-event key pairs are made on first use (`EventKeys.signer`), race-free across nodes (insert ...
on conflict do nothing, then read), with the private key encrypted at rest by the FieldCipher.
"""

from __future__ import annotations

import base64
import struct
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "FY1"
_CONTEXT = b"foyer-ticket\x00"
_PAYLOAD = struct.Struct(">B16s16sI")


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class TicketClaims:
    ticket_id: uuid.UUID
    event_id: uuid.UUID
    generation: int


def sign_code(private_key: Ed25519PrivateKey, claims: TicketClaims) -> str:
    payload = _PAYLOAD.pack(1, claims.ticket_id.bytes, claims.event_id.bytes, claims.generation)
    signature = private_key.sign(_CONTEXT + payload)
    return f"{PREFIX}.{b64u(payload)}.{b64u(signature)}"


def verify_code(public_key: bytes | Ed25519PublicKey, code: str) -> TicketClaims | None:
    """The claims if `code` is well-formed and signed by this key, else None. Pure, offline."""
    try:
        prefix, payload_txt, sig_txt = code.strip().split(".")
        if prefix != PREFIX:
            return None
        payload, signature = unb64u(payload_txt), unb64u(sig_txt)
        if len(payload) != _PAYLOAD.size:
            return None
        key = public_key if isinstance(public_key, Ed25519PublicKey) else Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, _CONTEXT + payload)
        version, ticket_id, event_id, generation = _PAYLOAD.unpack(payload)
    except (ValueError, InvalidSignature, TypeError):
        return None
    if version != 1:
        return None
    return TicketClaims(uuid.UUID(bytes=ticket_id), uuid.UUID(bytes=event_id), generation)


def new_key_pair() -> tuple[bytes, bytes]:
    """(raw public key 32 bytes, raw private key 32 bytes)."""
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
    raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw_public, raw_private


def key_id(public_key: bytes) -> str:
    import hashlib

    return b64u(hashlib.sha256(public_key).digest()[:8])


class Signer:
    """Signs codes for one event (the decrypted private key lives only in process memory)."""

    def __init__(self, event_id: uuid.UUID, private_key: Ed25519PrivateKey, public_key: bytes, kid: str) -> None:
        self.event_id = event_id
        self._private = private_key
        self.public_key = public_key
        self.kid = kid

    def sign(self, ticket_id: uuid.UUID, generation: int = 1) -> str:
        return sign_code(self._private, TicketClaims(ticket_id, self.event_id, generation))

    def sign_bytes(self, data: bytes) -> bytes:
        """Ed25519 signature of `data` with the event's key. Callers prefix `data` with a context
        of their own (e.g. b"foyer-checkin-list\\x00"), distinct from ticket codes' context."""
        return self._private.sign(data)
