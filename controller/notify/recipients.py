"""Who hears of a notice, one outbox row each: an incident's, a posture finding's or a
back-off's notice goes to each recipient the monitor has (its e-mail, its phone), whatever
channels this process can send (a replica that has the channel sends it), and to the
notification channels the monitor (or else its customer) chose: `to_recipients` names them
with one `CHANNELS` row the store expands (controller.notify.channel_store `fan_out`). A notice
about the organization's use (budget held back) goes by e-mail to each of its owners; one about
a monitor's logins (login cap, OAuth2 token refused) to its owners and, through `to_channels`,
to the monitor's notification channels. Pure; the store (controller.notify.outbox_store `enqueue`)
only writes the rows."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from controller.monitors.store import Monitor
from controller.notify.channel_kinds import Event, FlowFacts
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
    list_unsubscribe: str | None = None  # a URL taking RFC 8058's one-click POST
    channel_id: int | None = None  # a notification channel's row
    payload: Event | None = None  # its event, as the channel is told it
    severity: str | None = None  # a `CHANNELS` row's notice: its worst finding's severity
    flow: FlowFacts | None = None  # a `CHANNELS` row's flow incident notice: what it tells of


# The row standing for "the monitor's notification channels", expanded by the store.
CHANNELS = "channels"


class Owner(NamedTuple):
    """An owner of the organization who may log in."""

    id: int
    email: str


def to_recipients(
    kind: str,
    monitor: Monitor,
    texts: Texts,
    key: str,
    channels: Collection[str] = ("email", "sms", CHANNELS),
    severity: str | None = None,
    *,
    by_target: bool = False,
    flow: FlowFacts | None = None,
) -> list[Outgoing]:
    """One notification of `kind` per recipient of `monitor` on `channels` (`CHANNELS`: its
    notification channels); `key` is the notice's dedupe key, made per channel, and per
    address with `by_target` (a notice several monitors share: each address told once);
    `flow`: the flow incident a notice of several monitors tells its channels of."""
    notes: list[Outgoing] = []
    if (email := monitor.notification_email) and "email" in channels:
        mail_key = f"{key}:email:{email.lower()}" if by_target else f"{key}:email"
        notes.append(
            Outgoing(kind, "email", email, texts.subject, texts.text, texts.html, mail_key)
        )
    if (phone := monitor.notification_phone_number) and "sms" in channels:
        sms_key = f"{key}:sms:{phone}" if by_target else f"{key}:sms"
        notes.append(Outgoing(kind, "sms", phone, "", texts.sms, None, sms_key))
    if CHANNELS in channels:
        notes += to_channels(kind, texts, key, severity, flow)
    return notes


def to_channels(
    kind: str, texts: Texts, key: str, severity: str | None = None, flow: FlowFacts | None = None
) -> list[Outgoing]:
    """The row standing for the monitor's notification channels: `texts.subject` is the
    summary they are told, `texts.text` a notice's details, `flow` a flow incident's facts."""
    return [
        Outgoing(
            kind, CHANNELS, "", texts.subject, texts.text, None, key, severity=severity, flow=flow
        )
    ]


def to_owners(kind: str, owners: Sequence[Owner], texts: Texts, key: str) -> list[Outgoing]:
    """One e-mail of `kind` per owner; `key` is the notice's dedupe key, made per owner (an
    owner's address may change, the notice stays one)."""
    return [
        Outgoing(kind, "email", o.email, texts.subject, texts.text, texts.html, f"{key}:{o.id}")
        for o in owners
    ]
