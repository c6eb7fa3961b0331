"""Settings of attendee-facing channels: push (FCM), email (SMTP), calendar feeds, share pages, feedback."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from config.fields import Secret, SettingsError, setting

SMTP_TLS_MODES = ("none", "starttls", "tls")


@dataclass(frozen=True, slots=True)
class NotifySettings:
    email_from: str = setting("Foyer <no-reply@localhost>", help="From address of every email Foyer sends.")

    # --- push (Firebase Cloud Messaging, HTTP v1) ------------------------------------------------
    fcm_credentials: Secret = setting(
        Secret(""),
        help="FCM service-account credentials: a path to the JSON key file, or the JSON itself. "
        "Unset: push is off (devices are still registered).",
        secret=True,
    )
    fcm_project_id: str = setting(
        "", help="Firebase project id. Unset: taken from the service-account credentials."
    )
    fcm_endpoint: str = setting(
        "https://fcm.googleapis.com/v1/projects",
        help="Base URL of the FCM v1 API (`{base}/{project}/messages:send`); point it at a local "
        "FCM-compatible server in tests.",
    )
    fcm_token_uri: str = setting(
        "", help="OAuth 2.0 token endpoint for the service account. Unset: the credentials' `token_uri`."
    )
    fcm_timeout_seconds: float = setting(10.0, help="HTTP timeout of one FCM send.")
    push_threads: int = setting(
        8, help="Threads sending to FCM concurrently (pyfcm is blocking, so sends run off the event loop)."
    )
    push_batch_size: int = setting(200, help="Push messages a node claims from the queue per round.")
    push_max_attempts: int = setting(
        6, help="Sends of one push message before it is given up (transient FCM errors are retried)."
    )
    push_retry_base_seconds: float = setting(
        2.0, help="First retry delay of a push message; doubles per attempt, jittered, capped below."
    )
    push_retry_max_seconds: float = setting(
        600.0, help="Cap of the push retry delay (also caps an FCM Retry-After)."
    )
    push_poll_seconds: float = setting(
        2.0, help="How often the push worker looks for due messages when it was not woken up."
    )
    max_devices_per_user: int = setting(
        20, help="Registered devices kept per user; registering more evicts the least recently seen."
    )

    # --- email (SMTP) ----------------------------------------------------------------------------
    smtp_host: str = setting("", help="SMTP server host. Unset: email is off.")
    smtp_port: int = setting(587, help="SMTP server port (587 STARTTLS, 465 implicit TLS, 25 plain).")
    smtp_tls: str = setting(
        "starttls", help="SMTP transport security: `starttls`, `tls` (implicit, port 465) or `none`."
    )
    smtp_username: str = setting("", help="SMTP login user. Unset: no authentication.")
    smtp_password: Secret = setting(Secret(""), help="SMTP login password.", secret=True)
    smtp_timeout_seconds: float = setting(30.0, help="Timeout of SMTP connect and each SMTP command.")
    email_max_attempts: int = setting(
        10, help="Sends of one email tried before it is given up (only transient SMTP errors retry)."
    )
    email_retry_base_seconds: float = setting(
        30.0, help="First retry delay of an email after a transient SMTP error; doubles, jittered, capped below."
    )
    email_retry_max_seconds: float = setting(3600.0, help="Cap of the email retry delay.")
    email_batch_size: int = setting(50, help="Emails a node claims and sends over one SMTP connection per round.")
    email_poll_seconds: float = setting(
        2.0, help="How often the email worker looks for due emails when it was not woken up."
    )

    # --- reminders and prompts -------------------------------------------------------------------
    reminder_lead_minutes: int = setting(
        15, help="Minutes before a bookmarked session starts that its reminder goes out."
    )
    scheduler_interval_seconds: float = setting(
        30.0, help="How often each node looks for due reminders and feedback prompts (claims are exclusive)."
    )
    feedback_prompt_window_minutes: int = setting(
        30, help="A session that ended less than this long ago still gets its feedback prompt."
    )

    # --- accounts email flows --------------------------------------------------------------------
    password_reset_ttl_seconds: int = setting(3600, help="Lifetime of a password-reset link.")
    email_verification_ttl_seconds: int = setting(172_800, help="Lifetime of an email-verification link.")
    account_email_per_address_per_hour: int = setting(
        3, help="Reset/verification emails sent to one address per hour (more are silently dropped)."
    )
    account_email_per_ip_per_hour: int = setting(
        20, help="Reset/verification requests accepted from one client IP per hour (then 429)."
    )
    app_url: str = setting(
        "", help="Base URL of the attendee web app used in emailed links (reset, verify). "
        "Unset: PUBLIC_URL."
    )

    # --- calendar and sharing --------------------------------------------------------------------
    calendar_refresh_minutes: int = setting(
        60, help="Refresh interval suggested to calendar apps subscribed to a feed."
    )
    share_default_image_url: str = setting(
        "", help="Open Graph image for events without a cover image. Unset: no image tag."
    )
    share_visits_per_ip_per_minute: int = setting(
        30, help="Share-page visits recorded per client IP per minute (bounds the visit table)."
    )
    referral_window_days: int = setting(
        30, help="How long a referral code a user arrived with is credited for their purchase."
    )

    def validate(self) -> None:
        if self.smtp_tls not in SMTP_TLS_MODES:
            raise SettingsError(f"FOYER_SMTP_TLS: expected one of {', '.join(SMTP_TLS_MODES)}, got {self.smtp_tls!r}")
        if not 0 < self.smtp_port < 65536:
            raise SettingsError("FOYER_SMTP_PORT: must be between 1 and 65535")
        if self.push_threads < 1 or self.push_batch_size < 1:
            raise SettingsError("FOYER_PUSH_THREADS/FOYER_PUSH_BATCH_SIZE: must be at least 1")
        if self.push_max_attempts < 1 or self.email_max_attempts < 1:
            raise SettingsError("FOYER_PUSH_MAX_ATTEMPTS/FOYER_EMAIL_MAX_ATTEMPTS: must be at least 1")
        if not 1 <= self.reminder_lead_minutes <= 1440:
            raise SettingsError("FOYER_REMINDER_LEAD_MINUTES: must be between 1 and 1440")
        if self.email_batch_size < 1:
            raise SettingsError("FOYER_EMAIL_BATCH_SIZE: must be at least 1")
        if self.scheduler_interval_seconds <= 0 or self.push_poll_seconds <= 0 or self.email_poll_seconds <= 0:
            raise SettingsError("FOYER_SCHEDULER_INTERVAL_SECONDS/FOYER_PUSH_POLL_SECONDS: must be positive")
        if self.fcm_credentials:
            self.fcm_credentials_info()

    def fcm_credentials_info(self) -> dict | None:
        """The service-account JSON as a dict (from the inline JSON or the file), None when push is off."""
        raw = str(self.fcm_credentials).strip()
        if not raw:
            return None
        if not raw.startswith("{"):
            path = Path(raw).expanduser()
            try:
                raw = path.read_text()
            except OSError as exc:
                raise SettingsError(f"FOYER_FCM_CREDENTIALS: cannot read {path}: {exc.strerror}") from None
        try:
            info = json.loads(raw)
        except ValueError:
            raise SettingsError("FOYER_FCM_CREDENTIALS: not valid JSON (give a file path or the JSON key)") from None
        missing = [k for k in ("client_email", "private_key") if not info.get(k)]
        if missing:
            raise SettingsError(f"FOYER_FCM_CREDENTIALS: service-account JSON lacks {', '.join(missing)}")
        return info
