"""Who hears of a notice: one notification per recipient the monitor has (its e-mail, its
phone), whatever channels this process can send: a replica that has the channel sends it.
Pure; the outbox rows are written by controller.alerting.store (`enqueue`)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.notify.texts import Texts


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification to queue."""

    kind: str
    channel: str
    target: str
    subject: str
    text: str
    html: str | None
    dedupe_key: str


def to_recipients(kind: str, monitor: Mapping[str, Any], texts: Texts, key: str) -> list[Outgoing]:
    """One notification of `kind` per recipient of `monitor` (a `monitors` row, or anything with
    its `notification_email` and `notification_phone_number`); `key` is the notice's dedupe key,
    made per channel."""
    notes: list[Outgoing] = []
    if email := monitor["notification_email"]:
        notes.append(
            Outgoing(kind, "email", email, texts.subject, texts.text, texts.html, f"{key}:email")
        )
    if phone := monitor["notification_phone_number"]:
        notes.append(Outgoing(kind, "sms", phone, "", texts.sms, None, f"{key}:sms"))
    return notes
