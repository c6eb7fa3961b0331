"""SMTP delivery with aiosmtplib.

`Mailer.send_batch` opens one connection (implicit TLS, STARTTLS or plain, with optional login),
sends each message and reports per message: None (accepted by the server), or a `MailError`
whose `transient` flag says whether trying again later can help (4xx replies, timeouts,
connection failures) or not (5xx replies such as an unknown mailbox). It never raises for one
message; a dropped connection marks that message and the rest of the batch transient.
Credentials are never logged.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from config.notify import NotifySettings

log = logging.getLogger("foyer.email")


class MailError(Exception):
    def __init__(self, message: str, *, transient: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


def _classify(exc: BaseException) -> MailError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        transient = any(400 <= c < 500 for c in codes)
        return MailError(f"recipients refused ({', '.join(map(str, codes))})", transient=transient,
                         code=codes[0] if codes else None)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        return MailError(f"SMTP {code}: {exc.message[:200]}", transient=not 500 <= code < 600 or code == 535,
                         code=code)
    if isinstance(exc, (aiosmtplib.SMTPException, OSError, TimeoutError)):
        return MailError(f"{type(exc).__name__}: {exc}"[:300], transient=True)
    return MailError(f"{type(exc).__name__}: {exc}"[:300], transient=False)


class Mailer:
    def __init__(self, settings: NotifySettings, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls_context = tls_context

    @property
    def enabled(self) -> bool:
        return bool(self.settings.smtp_host)

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout_seconds,
            use_tls=s.smtp_tls == "tls", start_tls=True if s.smtp_tls == "starttls" else False,
            username=s.smtp_username or None, password=str(s.smtp_password) or None,
            tls_context=self.tls_context,
        )

    async def send_batch(self, messages: Sequence[EmailMessage]) -> list[MailError | None]:
        results: list[MailError | None] = [None] * len(messages)
        if not messages:
            return results
        client = self._client()
        try:
            await client.connect()
        except Exception as exc:  # connection, TLS or login failure: nothing was sent
            error = _classify(exc)
            log.warning("SMTP connect to %s:%s failed: %s", self.settings.smtp_host, self.settings.smtp_port, error)
            return [error] * len(messages)
        try:
            for i, message in enumerate(messages):
                try:
                    await client.send_message(message)
                except aiosmtplib.SMTPServerDisconnected as exc:
                    error = _classify(exc)
                    for j in range(i, len(messages)):
                        results[j] = error
                    break
                except Exception as exc:
                    results[i] = _classify(exc)
                    try:
                        await client.rset()
                    except Exception:
                        for j in range(i + 1, len(messages)):
                            results[j] = MailError("connection lost after an error", transient=True)
                        break
        finally:
            try:
                await client.quit()
            except Exception:
                client.close()
        return results
