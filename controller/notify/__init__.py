"""Notification channels behind one tiny interface: `validate()` and `send(note)`.

One module per channel (`email`, `sms`); `channels(notify)` builds the configured ones. A
channel raises `DeliveryError` with a message for a person (never a credential) when a
notification did not go out; the outbox worker retries it later, unless the error is
`permanent` (the relay or gateway refused it for good: retrying would only repeat the answer).
"""

from dataclasses import dataclass
from typing import Any, Protocol

from controller.settings import NotifySettings

# Every channel there is; a controller sends those it has configured (`channels`).
NAMES = ("email", "sms")


class DeliveryError(Exception):
    """The notification was not delivered; the text says why and holds no secret.
    `permanent`: the same notification would be refused again, so it is not retried.
    `soon`: nothing went out, for a cause of mailprobe's own that passes in seconds (its
    database away mid-failover): retried in seconds, not after the receivers' backoff."""

    def __init__(self, message: str, *, permanent: bool = False, soon: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.soon = soon


@dataclass(frozen=True, slots=True)
class Notification:
    target: str  # an e-mail address or an E.164 number
    subject: str
    text: str
    html: str | None
    key: str  # the outbox dedupe key: stable across retries, so receivers may dedupe too
    list_unsubscribe: str | None = None  # e-mail: a one-click unsubscribe URL (RFC 8058)
    # A notification channel's notice (controller.notify.channel_send): the channel and its
    # event (controller.notify.channel_kinds.Event, decoded); None for e-mail and SMS.
    channel_id: int | None = None
    payload: dict[str, Any] | None = None
    # E-mail: the dedupe key of the notice it follows up (its incident's first), whose
    # Message-ID its In-Reply-To and References name; None for a first notice.
    thread: str | None = None


class Channel(Protocol):
    name: str

    def validate(self) -> None:
        """Raise ValueError naming what is wrong with the channel's configuration."""

    async def send(self, note: Notification) -> None:
        """Deliver or raise DeliveryError."""


def channels(notify: NotifySettings) -> dict[str, Channel]:
    """The configured channels by name, validated."""
    from controller.notify.email import EmailChannel
    from controller.notify.sms import SmsChannel

    found: dict[str, Channel] = {}
    if notify.notify_smtp_url and notify.notify_from:
        found["email"] = EmailChannel(notify.notify_smtp_url, notify.notify_from)
    if notify.notify_sms_webhook_url:
        found["sms"] = SmsChannel(notify.notify_sms_webhook_url)
    for channel in found.values():
        channel.validate()
    return found
