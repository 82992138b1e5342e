"""Mail for the report mailbox tests: report messages as reporters send them, submitted through
Debian's Postfix (XOAUTH2) into Debian's Dovecot (tests/oauth2/), and waited for."""

import asyncio
import base64
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import trustme

from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.trust import trusting

USER = "alice@example.com"
PASSWORD = "report-box-password"  # the test mailbox's


def message(subject: str, parts: list[tuple[bytes, str, str]]) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "noreply-dmarc-support@google.example"
    m["To"] = USER
    m["Subject"] = subject
    m.set_content("This is an aggregate report.")
    for data, kind, name in parts:
        main, sub = kind.split("/")
        m.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return m


async def send(pf: Postfix, dc: Dovecot, ca: trustme.CA, messages: list[EmailMessage]) -> None:
    """Submit `messages` in order, each delivered before the next is sent: Postfix delivers
    queued messages in parallel, and Dovecot numbers new messages by their delivery time."""
    before = _arrived(dc)
    ctx = trusting(ca)
    token = dc.issuer.issue(USER)
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=pf.ports["smtps"], use_tls=True, tls_context=ctx
    )
    await smtp.connect()
    said = base64.b64encode(f"user={USER}\x01auth=Bearer {token}\x01\x01".encode()).decode()
    code, text = await smtp.execute_command(b"AUTH", b"XOAUTH2", said.encode())
    assert code == 235, text
    for i, m in enumerate(messages, 1):
        await smtp.send_message(m)
        await delivered(dc, before + i)
    await smtp.quit()


def _new(dc: Dovecot) -> Path:
    """The test mailbox's folder of messages delivered and not yet read."""
    return dc.homes / "alice" / "Maildir" / "new"


def _arrived(dc: Dovecot) -> int:
    new = _new(dc)
    return len(list(new.iterdir())) if new.exists() else 0


async def delivered(dc: Dovecot, n: int) -> None:
    new = _new(dc)
    for _ in range(200):
        if _arrived(dc) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not delivered: {list(new.iterdir()) if new.exists() else 'no Maildir'}")
