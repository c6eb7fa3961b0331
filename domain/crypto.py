"""Encryption of sensitive fields at rest (TOTP secrets, phone numbers) with rotatable keys.

`FieldCipher` wraps `MultiFernet`: the first key encrypts, every listed key decrypts, so keys
rotate without downtime: prepend a new key on every node, run `python run.py rotate-keys`
(re-encrypts every `*_enc` column with the new key), then remove the old key (docs/security.md).
Fernet is AES-128-CBC with an HMAC-SHA256 tag and a timestamp: tampered or truncated
ciphertext, or ciphertext under a key that is not configured, fails to decrypt (`ValueError`),
it never yields wrong plaintext.

Convention: an encrypted column is `bytea`, named `<field>_enc`, holds `FieldCipher.encrypt`
output, and lives in a table with a single-column primary key; `rotate-keys` finds such columns
itself, in every area's tables.
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
        try:
            self._fernets = [Fernet(k.encode()) for k in parts]
        except ValueError:
            raise ValueError("encryption keys must be url-safe base64 Fernet keys (32 bytes)") from None
        self._primary = self._fernets[0]
        self._multi = MultiFernet(self._fernets)

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def encrypt(self, plaintext: str) -> bytes:
        return self._multi.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._multi.decrypt(bytes(token)).decode()
        except InvalidToken:
            raise ValueError("field cannot be decrypted with the configured keys") from None

    def is_current(self, token: bytes) -> bool:
        """True when `token` is encrypted under the primary (first) key."""
        try:
            self._primary.decrypt(bytes(token))
        except InvalidToken:
            return False
        return True

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt under the primary key; `ValueError` if no configured key decrypts it."""
        try:
            return self._multi.rotate(bytes(token))
        except InvalidToken:
            raise ValueError("field cannot be decrypted with the configured keys") from None


def sha256(value: str) -> bytes:
    """Hash of a high-entropy token (refresh tokens): fast is fine, they are random."""
    return hashlib.sha256(value.encode()).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
