"""E-mail through the relay in NOTIFY_SMTP_URL with aiosmtplib.

`smtp://user:pass@host:port` (port 25 by default) upgrades with STARTTLS when the relay offers
it; `smtps://` (port 465 by default) speaks TLS from the first byte. Credentials in the URL are
percent-decoded and used for AUTH; they never appear in an error.
"""

import hashlib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

import aiosmtplib

from controller.notify import DeliveryError, Notification


class EmailChannel:
    name = "email"

    def __init__(
        self,
        url: str,
        sender: str,
        *,
        timeout_s: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """`tls_context` replaces the system trust store (a relay with a private CA)."""
        self._url = url
        self._sender = sender
        self._timeout_s = timeout_s
        self._tls_context = tls_context

    def validate(self) -> None:
        parts = urlsplit(self._url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("NOTIFY_SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("NOTIFY_SMTP_URL names no host")
        try:
            parts.port  # noqa: B018  # raises ValueError on a bad port
        except ValueError:
            raise ValueError("NOTIFY_SMTP_URL has an invalid port") from None
        if "@" not in self._sender:
            raise ValueError("NOTIFY_FROM must hold an e-mail address")

    def message(self, note: Notification) -> EmailMessage:
        """Plain text and, when given, an HTML alternative; a Message-ID stable across retries."""
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = note.target
        msg["Subject"] = note.subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{hashlib.sha256(note.key.encode()).hexdigest()[:40]}@mailprobe>"
        msg.set_content(note.text)
        if note.html is not None:
            msg.add_alternative(note.html, subtype="html")
        return msg

    async def send(self, note: Notification) -> None:
        parts = urlsplit(self._url)
        implicit = parts.scheme == "smtps"
        try:
            await aiosmtplib.send(
                self.message(note),
                hostname=parts.hostname,
                port=parts.port or (465 if implicit else 25),
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                use_tls=implicit,
                start_tls=False if implicit else None,  # None: STARTTLS when offered
                tls_context=self._tls_context,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"relay answered {exc.code} {exc.message}"[:300]) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"relay unreachable: {type(exc).__name__}: {exc}"[:300]) from None
