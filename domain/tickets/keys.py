"""Per-event Ed25519 signing keys: made on first use, private half encrypted at rest (FieldCipher)."""

from __future__ import annotations

import asyncio
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.crypto import FieldCipher
from domain.tickets.codes import Signer, b64u, key_id, new_key_pair
from storage import tickets as store
from storage.db import Database


class EventKeys:
    """Caches decrypted signers in process memory; `signer_cached` is for code inside transactions."""

    def __init__(self, db: Database, cipher: FieldCipher) -> None:
        self.db = db
        self.cipher = cipher
        self._signers: dict[uuid.UUID, Signer] = {}
        self._lock = asyncio.Lock()

    def _make(self) -> tuple[str, bytes, bytes]:
        public, private = new_key_pair()
        return key_id(public), public, self.cipher.encrypt(b64u(private))

    async def signer(self, event_id: uuid.UUID) -> Signer:
        cached = self._signers.get(event_id)
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._signers.get(event_id)
            if cached is not None:
                return cached
            async with self.db.connection() as conn:
                row = await store.ensure_event_key(conn, event_id, self._make)
            from domain.tickets.codes import unb64u

            private = Ed25519PrivateKey.from_private_bytes(unb64u(self.cipher.decrypt(row["private_key_enc"])))
            signer = Signer(event_id, private, bytes(row["public_key"]), row["key_id"])
            self._signers[event_id] = signer
            return signer

    def signer_cached(self, event_id: uuid.UUID) -> Signer | None:
        return self._signers.get(event_id)

    async def public(self, event_id: uuid.UUID) -> dict[str, str]:
        signer = await self.signer(event_id)
        return {"event_id": str(event_id), "alg": "Ed25519", "kid": signer.kid,
                "public_key": b64u(signer.public_key), "format": "FY1.<b64url payload>.<b64url signature>"}
