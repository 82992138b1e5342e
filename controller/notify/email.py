"""E-mail through the relay in NOTIFY_SMTP_URL with aiosmtplib.

`smtp://user:pass@host:port` (port 25 by default) upgrades with STARTTLS when the relay offers
it; `smtps://` (port 465 by default) speaks TLS from the first byte. Credentials in the URL are
percent-decoded and used for AUTH; they never appear in an error.

A 5xx reply (credentials, sender or recipient refused, message rejected) is permanent: the
relay would answer the same again. A 4xx reply, a connection that fails or a relay that does not
answer is retried.
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
        """Plain text and, when given, an HTML alternative; a Message-ID stable across retries;
        a follow-up's `In-Reply-To` and `References` naming its first notice's."""
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = one_recipient(note.target)
        msg["Subject"] = note.subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id(note.key)
        if note.thread is not None and note.thread != note.key:
            # A follow-up of the incident's first notice: one thread in the mail client.
            msg["In-Reply-To"] = msg["References"] = message_id(note.thread)
        if note.list_unsubscribe is not None:
            # Mail clients offer an unsubscribe button that POSTs to the URL (RFC 8058).
            msg["List-Unsubscribe"] = f"<{note.list_unsubscribe}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(note.text)
        if note.html is not None:
            msg.add_alternative(note.html, subtype="html")
        return msg

    async def send(self, note: Notification) -> None:
        parts = urlsplit(self._url)
        implicit = parts.scheme == "smtps"
        message = self.message(note)
        try:
            await aiosmtplib.send(
                message,
                recipients=[note.target],  # never the To header's parse: one RCPT TO, always
                hostname=parts.hostname,
                port=parts.port or (465 if implicit else 25),
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                use_tls=implicit,
                start_tls=False if implicit else None,  # None: STARTTLS when offered
                tls_context=self._tls_context,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            replies = [(r.code, r.message) for r in exc.recipients]
            raise _refused("relay refused the recipient:", replies) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _refused("relay answered", [(exc.code, exc.message)]) from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise DeliveryError(f"relay did not answer within {self._timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS with the relay failed: {exc}"[:300]) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError) as exc:
            raise DeliveryError(f"relay unreachable: {type(exc).__name__}: {exc}"[:300]) from None
        except aiosmtplib.SMTPException as exc:
            raise DeliveryError(f"relay: {type(exc).__name__}: {exc}"[:300]) from None


def message_id(key: str) -> str:
    """The Message-ID of the notice whose outbox dedupe key is `key`: the same at every attempt,
    so a receiver drops a repeat by it."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@mailprobe>"


def one_recipient(target: str) -> str:
    """`target` when it is exactly one address; else a permanent DeliveryError.

    Defence in depth beneath the API's own rule (and for rows stored before it): a `,` in the
    To header would make every name in it a recipient, `root` alone the relay's own mailbox."""
    local, at, domain = target.partition("@")
    if (
        not (local and at and "." in domain)
        or "@" in domain
        or any(ch.isspace() or ch in ',;<>()"' for ch in target)
    ):
        raise DeliveryError(
            f"not sent: {target[:80]!r} is not exactly one e-mail address", permanent=True
        )
    return target


def _refused(what: str, replies: list[tuple[int, str]]) -> DeliveryError:
    """Permanent when every reply is 5xx."""
    permanent = all(code >= 500 for code, _ in replies)
    said = "; ".join(f"{code} {message}" for code, message in replies)
    suffix = " (not retried)" if permanent else ""
    return DeliveryError(f"{what} {said}"[:280] + suffix, permanent=permanent)
