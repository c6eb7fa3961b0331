"""Settings of accounts, tokens, two-factor auth and login throttling."""

from __future__ import annotations

from dataclasses import dataclass

from config.fields import Secret, SettingsError, setting


@dataclass(frozen=True, slots=True)
class AuthSettings:
    jwt_secret: Secret = setting(
        Secret(""),
        help="HMAC key for access JWTs (>= 32 bytes). Unset: generated once and kept in DATA_DIR/secrets.",
        secret=True,
    )
    jwt_issuer: str = setting("foyer", help="`iss` claim of issued access tokens; checked on every request.")
    jwt_audience: str = setting("foyer-api", help="`aud` claim of issued access tokens; checked on every request.")
    access_token_ttl_seconds: int = setting(
        900, help="Lifetime of an access JWT. Signing a session out refuses its access tokens at once (via Redis); the TTL bounds them if Redis is down."
    )
    refresh_token_ttl_seconds: int = setting(
        30 * 86400, help="Lifetime of a refresh token (rotated on every use, revocable)."
    )
    encryption_keys: Secret = setting(
        Secret(""),
        help="Comma-separated Fernet keys for sensitive fields at rest; the first encrypts, all decrypt "
        "(rotation: prepend a new key, run `python run.py rotate-keys`, then drop the old one). "
        "Unset: generated once and kept in DATA_DIR/secrets.",
        secret=True,
    )
    argon2_time_cost: int = setting(2, help="argon2id iterations (OWASP minimum 2 with 19 MiB).")
    argon2_memory_kib: int = setting(19_456, help="argon2id memory in KiB (OWASP minimum 19 MiB).")
    argon2_parallelism: int = setting(1, help="argon2id lanes.")
    password_min_length: int = setting(10, help="Shortest accepted password.")
    login_max_failures_per_account: int = setting(
        5, help="Failed logins per account within the window before the account is throttled."
    )
    login_max_failures_per_ip: int = setting(
        30, help="Failed logins per client IP within the window before the IP is throttled."
    )
    login_window_seconds: int = setting(
        900, help="Sliding window for login failure counting (also for signed-in password/2FA re-checks)."
    )
    # Each sign-up costs an argon2 hash (~19 MiB, tens of ms of CPU): bound it per client IP
    # (OWASP API4). Generous, because a venue's Wi-Fi puts many attendees behind one address.
    register_max_per_ip: int = setting(
        100, help="Sign-ups per client IP within register_window_seconds (0 disables the limit; load tests "
        "that sign up many users from one machine set 0)."
    )
    register_window_seconds: int = setting(600, help="Sliding window for counting sign-ups per client IP.")
    totp_issuer: str = setting("Foyer", help="Issuer name shown by authenticator apps.")
    totp_valid_window: int = setting(
        1, help="TOTP steps accepted either side of now (1 = ±30 s clock drift); each step only once."
    )
    recovery_code_count: int = setting(10, help="Number of one-time recovery codes issued with 2FA.")
    require_2fa_for_staff: bool = setting(
        True, help="Organizers/admins must enable 2FA before publishing or reading attendee/revenue data."
    )

    def validate(self) -> None:
        if self.jwt_secret and len(self.jwt_secret.encode()) < 32:
            raise SettingsError("FOYER_JWT_SECRET: must be at least 32 bytes")
        if not 60 <= self.access_token_ttl_seconds <= 86400:
            raise SettingsError("FOYER_ACCESS_TOKEN_TTL_SECONDS: must be between 60 and 86400")
        if self.refresh_token_ttl_seconds < self.access_token_ttl_seconds:
            raise SettingsError("FOYER_REFRESH_TOKEN_TTL_SECONDS: must exceed the access token lifetime")
        if self.argon2_memory_kib < 8 * 1024:
            raise SettingsError("FOYER_ARGON2_MEMORY_KIB: below 8 MiB is unsafe")
        for name in ("login_max_failures_per_account", "login_max_failures_per_ip", "login_window_seconds",
                     "register_window_seconds", "recovery_code_count"):
            if getattr(self, name) < 1:
                raise SettingsError(f"FOYER_{name.upper()}: must be at least 1")
        if self.register_max_per_ip < 0:
            raise SettingsError("FOYER_REGISTER_MAX_PER_IP: must be 0 (no limit) or more")
        if not 0 <= self.totp_valid_window <= 10:
            raise SettingsError("FOYER_TOTP_VALID_WINDOW: must be between 0 and 10 steps")
        if self.password_min_length < 8:
            raise SettingsError("FOYER_PASSWORD_MIN_LENGTH: must be at least 8")
