"""E-mail subscriptions to a public status page: the rules (no I/O).

Anyone may ask for an address to be subscribed, so the controller must not become a way to mail
arbitrary people: a request only mails a confirmation (double opt-in: nothing else goes to the
address until its link is followed), at most `STATUS_SUBSCRIBE_PER_PAGE_PER_HOUR` per page and
`STATUS_SUBSCRIBE_PER_ADDRESS_PER_DAY` per address over all pages, and every mail goes through the
outbox on the organization's subscriber budget. The answer to a request is the same whether the
address was new, already subscribed or over its limit, so nobody learns who subscribes.

Tokens: the confirmation token is 256 random bits, kept as its SHA-256 only, and expires after
`CONFIRM_TTL`; the unsubscribe token is an HMAC-SHA256 of the subscriber's public id under a
key derived from SECRETS_KEY, so every mail can carry it without storing it, and it verifies
under any configured key (rotation).
"""

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from controller.notify.recipients import Outgoing
from controller.notify.texts import one_line
from controller.secrets.box import SecretBox

CONFIRM_TTL = timedelta(hours=24)
UNSUBSCRIBE_PURPOSE = "status-unsubscribe"
CONFIRM = "status_confirm"
UPDATE = "status_update"
CONFIRM_SUBJECT = "Confirm your subscription to a status page"


def address_hash(address: str) -> bytes:
    """The key a request is counted under for its address (case-insensitive)."""
    return hashlib.sha256(address.strip().lower().encode()).digest()


def new_confirm_token() -> tuple[str, bytes]:
    """(the token for the link, the SHA-256 kept)."""
    token = secrets.token_urlsafe(32)
    return token, confirm_hash(token)


def confirm_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Unsubscribe tokens of subscribers, by their public id."""

    keys: list[bytes]

    @classmethod
    def of(cls, box: SecretBox) -> "Unsubscribe":
        return cls(box.subkeys(UNSUBSCRIBE_PURPOSE))

    def token(self, subscriber: str) -> str:
        return self._mac(self.keys[0], subscriber)

    def valid(self, subscriber: str, token: str) -> bool:
        return any(hmac.compare_digest(self._mac(k, subscriber), token) for k in self.keys)

    @staticmethod
    def _mac(key: bytes, subscriber: str) -> str:
        digest = hmac.digest(key, subscriber.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def confirmation(address: str, confirm_url: str, page_url: str, key: str) -> Outgoing:
    """The double opt-in mail: the only one an address gets before it confirms. Anyone may
    have typed the address, so it carries none of the organization's text (not the page's
    title): only mailprobe's words and the page's links, whose slug is at most 63 of
    [a-z0-9-]."""
    text = "\n".join(
        [
            f"Someone asked for updates of the status page at {page_url} to be sent to this"
            " address.",
            "",
            f"To confirm, open: {confirm_url}",
            "",
            "If you did not ask, ignore this mail: nothing more will be sent, and the link"
            f" expires in {int(CONFIRM_TTL.total_seconds() // 3600)} hours.",
        ]
    )
    return Outgoing(CONFIRM, "email", address, CONFIRM_SUBJECT, text, None, key)


def update(
    address: str,
    page_title: str,
    notice_title: str,
    state: str,
    body: str,
    page_url: str,
    unsubscribe_url: str,
    key: str,
) -> Outgoing:
    """A notice's update, to one confirmed subscriber."""
    text = "\n".join(
        [
            f"{notice_title} — {state}",
            "",
            body,
            "",
            f"Status page: {page_url}",
            f"Unsubscribe (one click, no login): {unsubscribe_url}",
        ]
    )
    subject = one_line(f"[{page_title}] {notice_title}: {state}")[:250]
    return Outgoing(UPDATE, "email", address, subject, text, None, key, unsubscribe_url)
