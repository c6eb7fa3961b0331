"""Email composition: Jinja2 templates (HTML autoescaped, plain text) → a MIME message.

Each email `name` has three templates under integrations/templates/email/:
`{name}.subject.txt`, `{name}.txt` and `{name}.html` (which extends `base.html`). The message is
multipart/alternative (text first, then HTML); inline images (ticket QR codes) make the HTML
part multipart/related and are referenced as `cid:` URLs; attachments (.ics) are added after
that in a multipart/mixed envelope. The Message-ID is derived from the delivery's dedupe key,
so a resend after a crash carries the same id and mail clients can collapse it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
_WS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class InlineImage:
    cid: str  # without angle brackets, e.g. "qr-1@foyer"
    data: bytes
    subtype: str = "png"


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    data: bytes
    maintype: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)


def environment() -> jinja2.Environment:
    """HTML templates are autoescaped; text and subject templates are not (they are not HTML)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda cents, currency="": f"{int(cents) / 100:,.2f} {currency}".strip()
    return env


class EmailComposer:
    def __init__(self, *, sender: str, env: jinja2.Environment | None = None) -> None:
        self.env = env or environment()
        name, addr = parseaddr(sender)
        if "@" not in addr:
            raise ValueError(f"email_from is not an address: {sender!r}")
        self.sender = Address(display_name=name, addr_spec=addr)
        self.domain = addr.rpartition("@")[2] or "localhost"

    def render(self, name: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """(subject, text, html) of template `name`."""
        subject = self.env.get_template(f"email/{name}.subject.txt").render(context)
        text = self.env.get_template(f"email/{name}.txt").render(context)
        html = self.env.get_template(f"email/{name}.html").render(context)
        return _WS.sub(" ", subject).strip()[:250], text, html

    def build(self, *, name: str, context: dict[str, Any], to_addr: str, to_name: str = "", dedupe_key: str,
              inline_images: tuple[InlineImage, ...] = (), attachments: tuple[Attachment, ...] = (),
              kind: str = "") -> EmailMessage:
        subject, text, html = self.render(name, context)
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.sender
        msg["To"] = Address(display_name=_WS.sub(" ", to_name).strip()[:120], addr_spec=to_addr)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = f"<{hashlib.sha256(dedupe_key.encode()).hexdigest()[:40]}@{self.domain}>"
        msg["Auto-Submitted"] = "auto-generated"
        if kind:
            msg["X-Foyer-Kind"] = kind
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        if inline_images:
            html_part = msg.get_payload()[1]
            for img in inline_images:
                html_part.add_related(img.data, maintype="image", subtype=img.subtype, cid=f"<{img.cid}>",
                                      filename=f"{img.cid.split('@')[0]}.{img.subtype}", disposition="inline")
        for a in attachments:
            msg.add_attachment(a.data, maintype=a.maintype, subtype=a.subtype, filename=a.filename,
                               params=a.params or None)
        return msg
