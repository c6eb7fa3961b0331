"""Encryption of sensitive fields at rest (TOTP secrets, phone numbers) with rotatable keys.

`FieldCipher` wraps `MultiFernet`: the first key encrypts, every listed key decrypts, so keys
rotate without downtime: prepend a new key on every node, run `python run.py rotate-keys`
(re-encrypts every field with the new key), then remove the old key. Fernet gives AES-128-CBC
with HMAC-SHA256 authentication and a timestamp; tampered ciphertext fails to decrypt.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class FieldCipher:
    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ValueError("at least one encryption key is required")
        self._fernets = [Fernet(k.encode()) for k in parts]
        self._multi = MultiFernet(self._fernets)
        # A keyed hash for lookups of secret values (recovery codes) without storing them.
        self._mac_key = hashlib.sha256(b"foyer-field-mac:" + parts[0].encode()).digest()

    def encrypt(self, plaintext: str) -> bytes:
        return self._multi.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._multi.decrypt(bytes(token)).decode()
        except InvalidToken:
            raise ValueError("field cannot be decrypted with the configured keys") from None

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt with the primary key (no-op in effect if already under it)."""
        return self._multi.rotate(bytes(token))


def sha256(value: str) -> bytes:
    """Hash of a high-entropy token (refresh tokens, recovery codes): fast is fine, they are random."""
    return hashlib.sha256(value.encode()).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
