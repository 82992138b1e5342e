"""Sending to an organization's notification channels: the outbox worker's channel for each
kind (`ChannelSender.channels`), and the API's "send a test" (`ChannelSender.deliver`).

The channel is read when the notice is sent, so a changed URL or secret applies to retries; a
pending row of a deleted channel fails for good, its history kept. Its URL (when it is the
credential) and secret are opened only here, for the one request, and never logged: an error
names the kind, the host and the HTTP status, with any echo of the secret or URL masked.
"""

import unicodedata
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import msgspec
import structlog

from controller.db.pool import DB_AWAY
from controller.notify import (
    Channel,
    DeliveryError,
    Notification,
    apprise_channel,
    channel_kinds,
    channel_store,
)
from controller.notify.channel_kinds import Event
from controller.notify.channel_shown import secret_parts, shown_url
from controller.notify.channel_store import StoredChannel
from controller.notify.egress import Egress, OrgEgress
from controller.notify.links import NO_LINKS, Links
from controller.secrets.box import SecretBox, SecretBoxError
from controller.settings import NotifySettings
from shared.secret import SECRET_MASK

log = structlog.get_logger(__name__)

ERROR_BODY_CHARS = 200


class ChannelSender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        egress: Egress,
        links: Links = NO_LINKS,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._pool = pool
        self._box = box
        self._egress = egress
        self._links = links
        self._clock = clock

    def channels(self) -> dict[str, Channel]:
        """One outbox channel per kind, by the kind's name."""
        return {kind: _KindChannel(self, kind) for kind in channel_kinds.KINDS}

    @property
    def egress(self) -> Egress:
        return self._egress

    def console_url_root(self) -> str | None:
        return self._links.console()

    def console_url(self, monitor_public_id: str) -> str | None:
        try:
            return self._links.monitor(UUID(monitor_public_id))
        except ValueError:  # a payload is ours, but a link is never worth a failed notice
            return None

    def incident_url(self, flow_public_id: str) -> str | None:
        try:
            return self._links.incident(UUID(flow_public_id))
        except ValueError:
            return None

    async def send(self, note: Notification) -> None:
        if note.channel_id is None or note.payload is None:
            raise DeliveryError("not sent: the channel was deleted", permanent=True)
        try:
            async with self._pool.acquire() as conn:
                row = await channel_store.by_id(conn, note.channel_id)
        except DB_AWAY as exc:
            raise DeliveryError(
                f"not sent: the database is unreachable: {type(exc).__name__}", soon=True
            ) from None
        if row is None:
            raise DeliveryError("not sent: the channel was deleted", permanent=True)
        try:
            event = msgspec.convert(note.payload, Event)
        except msgspec.ValidationError as exc:
            raise DeliveryError(
                f"not sent: stored event unreadable: {exc}", permanent=True
            ) from None
        url = self.console_url(event.monitor.id)
        if event.flow is not None:
            url = self.incident_url(event.flow.id)
        event = msgspec.structs.replace(event, console_url=url)
        await self.deliver(row, event)

    def endpoint_problem(self, channel: StoredChannel) -> str | None:
        """What makes `channel`'s endpoint one the sender will not send to, found before any
        lookup (the API's check of its URL), or None."""
        try:
            url = self._open_url(channel)
        except SecretBoxError:
            return "the channel's secret does not open with SECRETS_KEY"
        egress = self._egress.of(channel.organization_id)
        if channel.kind == "apprise":
            problem = apprise_channel.url_problem(url, egress.networks)
        else:
            problem = egress.url_problem(url)
        return None if problem is None else f"endpoint {problem}"

    def _open_url(self, channel: StoredChannel) -> str:
        url: str = channel.url
        return self._box.open(url) if channel.kind in channel_kinds.SECRET_URL else url

    async def deliver(self, channel: StoredChannel, event: Event) -> None:
        """Tell `channel` (its row) of `event`, or raise DeliveryError."""
        kind: str = channel.kind
        try:
            url = self._open_url(channel)
            secret = self._box.open(channel.secret) if channel.secret else None
        except SecretBoxError:
            raise DeliveryError(
                "not sent: the channel's secret does not open with SECRETS_KEY", permanent=True
            ) from None
        # Judged on the grant of the channel's own organization, now: a grant the operator
        # withdrew since the channel was stored no longer lets it through.
        egress = self._egress.of(channel.organization_id)
        if kind == "apprise":
            title, text = event.summary, channel_kinds.plain_text(event)
            await apprise_channel.send(url, title, text, egress.networks)
            return
        for request in channel_kinds.requests(
            kind, event, url, secret, self._clock(), channel.chat_id
        ):
            await self._post(egress, kind, event, request, url, secret)

    async def _post(
        self,
        egress: OrgEgress,
        kind: str,
        event: Event,
        request: channel_kinds.Request,
        url: str,
        secret: str | None,
    ) -> None:
        answer = await egress.post(request.url, request.body, request.headers)
        delivered, permanent = channel_kinds.verdict(kind, event, answer.status)
        if delivered:
            return
        said = _printable(answer.body.decode("utf-8", "replace"))
        hidden = [secret, url, request.url]
        if shown_url(kind, url) != url:  # the URL may hold a token: none of its parts
            hidden += secret_parts(url)
        for piece in sorted(filter(None, hidden), key=len, reverse=True):
            said = said.replace(piece, SECRET_MASK)
        host = urlsplit(request.url).hostname or "?"
        suffix = " (not retried)" if permanent else ""
        raise DeliveryError(
            f"{kind} endpoint {host} answered HTTP {answer.status}"
            + (f": {said[:ERROR_BODY_CHARS]}" if said else "")
            + suffix,
            permanent=permanent,
        )


def _printable(text: str) -> str:
    return " ".join(
        "".join(
            " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text
        ).split()
    )


class _KindChannel:
    """The outbox's view of one kind: validation is the API's, sending the sender's."""

    def __init__(self, sender: ChannelSender, name: str) -> None:
        self.name = name
        self._sender = sender

    def validate(self) -> None:
        return None

    async def send(self, note: Notification) -> None:
        await self._sender.send(note)


def channel_sender(
    notify: NotifySettings,
    pool: asyncpg.Pool,
    box: SecretBox,
    egress: Egress | None = None,
    *,
    clock: Callable[[], datetime],
) -> ChannelSender:
    """The sender of this process: NOTIFY_PRIVATE_NETWORK_GRANTS and PUBLIC_URL applied."""
    return ChannelSender(
        pool, box, egress or Egress(notify.notify_private_grants), Links.of(notify), clock=clock
    )
