"""The receiver: an SMTP server (aiosmtpd) taking mail for the receiving monitors' addresses at
`AGENT_RECEIVER_DOMAIN`, STARTTLS with the operator's certificate when one is set.

| what a sender does | what it gets |
| --- | --- |
| over `AGENT_RECEIVER_CONNECTIONS`, or `…_PER_SOURCE` for its address | `421`, closed |
| a connection older than `AGENT_RECEIVER_SESSION_SECONDS` | `421`, closed |
| RCPT at another domain than the port's (`…_PLAIN_DOMAIN` at the plain port) | `550 5.7.1` |
| RCPT of a local part the book does not hold | `550 5.1.1` (refused in the session) |
| RCPT past `AGENT_RECEIVER_MESSAGES_PER_ADDRESS` in the window | `452 4.2.2` (try later) |
| DATA past `AGENT_RECEIVER_MAX_BYTES` | `552` (aiosmtpd's own) |
| DATA with the parsers full, or half of them its organization's | `451 4.3.2` (try later) |
| DATA whose arrival ARRIVALS did not store | `451 4.3.0` (try later) |

A message taken is read in a parser thread (agent.receiver.verdicts), one `Arrival` per
recipient goes to ARRIVALS, and only then is it answered `250`; its bytes are dropped with the
session's envelope. Log lines name the monitor, never the address (it is the monitor's secret).
"""

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from agent import metrics
from agent.receiver import twins
from agent.receiver.book import AddressBook
from agent.receiver.bounds import Connections, PerAddress
from agent.receiver.verdicts import Envelope as Sender
from agent.receiver.verdicts import Lookup, read
from agent.settings import ReceiverSettings
from shared.arrivals import TEXT_MAX, Arrival, arrival_id_of
from shared.clock import Clock
from shared.strangers import kept
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

Publish = Callable[[Arrival], Awaitable[None]]
# Messages waiting for a parser beyond those being read, per parser.
QUEUED_PER_PARSER = 2


@dataclass(slots=True)
class Counts:
    """What the receiver refused and took, for tests and metrics."""

    connections_refused: int = 0
    sessions_expired: int = 0
    rcpt_unknown: int = 0
    rcpt_relay: int = 0
    rcpt_over_rate: int = 0
    data_busy: int = 0
    data_unstored: int = 0
    taken: int = 0


# Each refusal's reason (the metric's label) and its field in Counts.
_COUNTED = {
    "connections": "connections_refused",
    "session_time": "sessions_expired",
    "relay": "rcpt_relay",
    "unknown_address": "rcpt_unknown",
    "address_rate": "rcpt_over_rate",
    "parsers_busy": "data_busy",
    "unstored": "data_unstored",
}


class _Session(SMTP):
    """aiosmtpd's SMTP with the receiver's connection bounds and session deadline."""

    def __init__(
        self, receiver: "Receiver", tls: ssl.SSLContext | None, domain: str, listener: str
    ) -> None:
        self.starttls_offered = tls is not None
        self.domain = domain  # the one domain this port takes mail for
        self.listener = listener  # "" the addresses' own port, else the test twin it is
        super().__init__(
            _Handler(receiver),
            data_size_limit=receiver.settings.agent_receiver_max_bytes,
            hostname=receiver.hostname,
            ident="mailprobe receiver",
            tls_context=tls,
            # An idle session's end: RFC 5321 4.5.3.2's five minutes, when the session's own
            # deadline does not come first.
            timeout=300.0,
            command_call_limit=20,
        )
        self._receiver = receiver
        self._source: str | None = None
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._source is None
        super().connection_made(transport)
        if not first:
            return  # STARTTLS's new transport: the same connection
        peer = transport.get_extra_info("peername")
        self._source = str(peer[0]) if peer else "?"
        self._receiver.sessions.add(self)
        self._admitted = self._receiver.connections.admit(self._source)
        if not self._admitted:
            self._receiver.refused("connections")
            return
        self._deadline = self.loop.call_later(
            self._receiver.settings.agent_receiver_session_seconds, self._expire
        )

    async def _handle_client(self) -> None:
        if not self._admitted:
            await self.push("421 4.7.0 too many connections, try again later")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def _expire(self) -> None:
        self._receiver.refused("session_time")
        # uvloop's transports are not instances of asyncio's transport classes: asked, not
        # checked by type.
        transport = cast(asyncio.Transport | None, self.transport)
        if transport is not None and not transport.is_closing():
            transport.write(b"421 4.4.2 session too long, closing\r\n")
            transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._admitted and self._source is not None:
            self._receiver.connections.release(self._source)
            self._admitted = False
        self._receiver.sessions.discard(self)
        super().connection_lost(error)


class _Handler:
    """aiosmtpd's handler: its hooks, and nothing else for it to inspect."""

    def __init__(self, receiver: "Receiver") -> None:
        self._receiver = receiver

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        return await self._receiver.rcpt(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await self._receiver.data(server, session, envelope)


class Receiver:
    """`await start()`, `await stop()`; `port` once started (for a port of 0)."""

    def __init__(
        self,
        settings: ReceiverSettings,
        *,
        country: str,
        agent_id: str,
        book: AddressBook,
        publish: Publish,
        lookup: Lookup,
        clock: Clock,
        hostname: str | None = None,
    ) -> None:
        if settings.agent_receiver_domain is None:
            raise ValueError("the receiver needs AGENT_RECEIVER_DOMAIN")
        self.settings = settings
        self.domain = settings.agent_receiver_domain.lower().rstrip(".")
        self.plain_domain = _twin(settings.agent_receiver_plain_domain, self.domain)
        self.country = country
        self.agent_id = agent_id
        self.book = book
        self._publish = publish
        self._lookup = lookup
        self._clock = clock
        self.hostname = hostname or settings.agent_receiver_hostname
        self.connections = Connections(
            settings.agent_receiver_connections, settings.agent_receiver_connections_per_source
        )
        self.per_address = PerAddress(
            settings.agent_receiver_messages_per_address, settings.agent_receiver_window_seconds
        )
        self.counts = Counts()
        parsers = settings.agent_receiver_parsers
        self._parsers = ThreadPoolExecutor(parsers, thread_name_prefix="receiver-parser")
        self._parse_room = parsers * (1 + QUEUED_PER_PARSER)
        # One organization's messages hold at most half the parsers and their queue, so
        # another's still get read while one is flooded (or its DNS is slow).
        self._tenant_room = max(1, self._parse_room // 2)
        self._parsing = 0
        self._parsing_by_tenant: dict[str, int] = {}
        self._tls = _tls_context(settings)
        self._servers: list[asyncio.Server] = []
        self._listening: list[str] = []
        self.sessions: set[_Session] = set()

    def parsing(self, tenant: str) -> int:
        """An organization's messages being read or waiting for a parser now."""
        return self._parsing_by_tenant.get(tenant, 0)

    def refused(self, reason: str) -> None:
        """Count a refusal (`Counts`, and the agent's metric by reason)."""
        field = _COUNTED[reason]
        setattr(self.counts, field, getattr(self.counts, field) + 1)
        metrics.RECEIVER_REFUSALS.labels(self.country, reason).inc()

    @property
    def port(self) -> int:
        """The port it listens on (STARTTLS offered when it has a certificate)."""
        return self._port_of(0)

    @property
    def plain_port(self) -> int:
        """The port that offers no STARTTLS (`AGENT_RECEIVER_PLAIN_PORT`)."""
        return self.twin_port("plain")

    def twin_port(self, listener: str) -> int:
        """The port of a test twin (shared.arrivals `LISTENERS`)."""
        if listener not in self._listening:
            raise RuntimeError("the receiver is not listening there")
        return self._port_of(self._listening.index(listener))

    def _port_of(self, index: int) -> int:
        if len(self._servers) <= index or not self._servers[index].sockets:
            raise RuntimeError("the receiver is not listening there")
        return int(self._servers[index].sockets[0].getsockname()[1])

    def _listeners(self) -> list[tuple[int, ssl.SSLContext | None, str, str]]:
        """(port, STARTTLS context, domain, listener) of each port set, the addresses' first."""
        s = self.settings
        out: list[tuple[int, ssl.SSLContext | None, str, str]] = [
            (s.agent_receiver_port, self._tls, self.domain, "")
        ]
        if s.agent_receiver_plain_port:
            out.append((s.agent_receiver_plain_port, None, self.plain_domain, "plain"))
        if s.agent_receiver_tls_1_0_port and s.agent_receiver_cert_file is not None:
            old = twins.tls_1_0(s.agent_receiver_cert_file, s.agent_receiver_key_file or "")
            domain = _twin(s.agent_receiver_tls_1_0_domain, self.domain)
            out.append((s.agent_receiver_tls_1_0_port, old, domain, "tls_1_0"))
        if s.agent_receiver_bad_cert_port:
            bad = twins.bad_cert(self._clock.now())
            domain = _twin(s.agent_receiver_bad_cert_domain, self.domain)
            out.append((s.agent_receiver_bad_cert_port, bad, domain, "bad_cert"))
        return out

    @property
    def starttls(self) -> bool:
        return self._tls is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.settings.agent_receiver_host
        for port, tls, domain, listener in self._listeners():
            self._servers.append(
                await loop.create_server(
                    functools.partial(_Session, self, tls, domain, listener),
                    host,
                    port,
                    reuse_address=True,
                )
            )
            self._listening.append(listener)
        log.info(
            "receiver_listening",
            port=self.port,
            twins={name: self.twin_port(name) for name in self._listening if name},
            domain=self.domain,
            starttls=self.starttls,
            addresses=len(self.book),
        )

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        self._listening = []
        self._parsers.shutdown(wait=False, cancel_futures=True)

    async def rcpt(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local, _, domain = address.rpartition("@")
        ours = server.domain if isinstance(server, _Session) else self.domain
        if domain.lower().rstrip(".") != ours:
            self.refused("relay")
            return "550 5.7.1 relaying denied"
        receiving = self.book.get(local)
        if receiving is None:
            self.refused("unknown_address")
            return "550 5.1.1 no such mailbox"
        if not self.per_address.take(local.lower(), self._clock.monotonic()):
            self.refused("address_rate")
            log.info("receiver_over_rate", monitor_id=receiving.monitor_id)
            return "452 4.2.2 too much mail for this address now, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def data(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        message = content if isinstance(content, bytes) else str(content or "").encode()
        receiving = [
            r for r in (self.book.get(a.rpartition("@")[0]) for a in envelope.rcpt_tos) if r
        ]
        if not receiving:
            return "554 5.5.1 no valid recipients"
        monitors = [r.monitor_id for r in receiving]
        recipients = _recipients_of(envelope.rcpt_tos, self.book)
        tenant = receiving[0].tenant
        held = self._parsing_by_tenant.get(tenant, 0)
        if self._parsing >= self._parse_room or held >= self._tenant_room:
            self.refused("parsers_busy")
            return "451 4.3.2 busy, try again later"
        peer = str(session.peer[0]) if session.peer else ""
        helo = str(session.host_name or "")
        mail_from = str(envelope.mail_from or "")
        version, cipher = _tls_of(session)
        offered = isinstance(server, _Session) and server.starttls_offered
        listener = server.listener if isinstance(server, _Session) else ""
        self._parsing += 1
        self._parsing_by_tenant[tenant] = held + 1
        try:
            found = await asyncio.get_running_loop().run_in_executor(
                self._parsers, read, message, Sender(peer, helo, mail_from), self._lookup
            )
        finally:
            self._parsing -= 1
            if self._parsing_by_tenant[tenant] <= 1:
                del self._parsing_by_tenant[tenant]
            else:
                self._parsing_by_tenant[tenant] -= 1
        arrived = iso_ms(self._clock.now())
        arrivals = [
            Arrival(
                arrival_id=arrival_id_of(
                    found.message_id, monitor_id, self.country, listener, recipients[monitor_id]
                ),
                monitor_id=monitor_id,
                country=self.country,
                agent_id=self.agent_id,
                arrived_at=arrived,
                peer=peer,
                helo=kept(helo, TEXT_MAX),
                mail_from=kept(mail_from, TEXT_MAX),
                tls_version=version,
                tls_cipher=cipher,
                starttls_offered=offered,
                listener=listener,
                size=len(message),
                header_from=found.header_from,
                subject=found.subject,
                verdicts=found.verdicts,
            )
            for monitor_id in dict.fromkeys(monitors)
        ]
        try:
            for arrival in arrivals:
                await self._publish(arrival)
        except Exception as exc:  # NATS away or slow: the sender tries again
            self.refused("unstored")
            log.warning("receiver_arrival_unstored", error=repr(exc)[:200])
            return "451 4.3.0 not stored, try again later"
        self.counts.taken += 1
        metrics.RECEIVER_MESSAGES.labels(self.country).inc()
        for arrival in arrivals:
            log.info(
                "receiver_message",
                monitor_id=arrival.monitor_id,
                peer=peer,
                size=arrival.size,
                tls=version,
                spf=found.verdicts.spf,
                dkim=found.verdicts.dkim,
                dmarc=found.verdicts.dmarc,
                arc=found.verdicts.arc,
            )
        return "250 2.0.0 OK"


def _twin(domain: str | None, default: str) -> str:
    return (domain or default).lower().rstrip(".")


def _tls_of(session: Session) -> tuple[str | None, str | None]:
    """The TLS version and cipher of a session upgraded by STARTTLS; (None, None) in the clear."""
    extra = session.ssl
    ssl_object = extra.get("ssl_object") if isinstance(extra, dict) else None
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None, None
    cipher = ssl_object.cipher()
    return ssl_object.version(), (cipher[0] if cipher else None)


def _tls_context(settings: ReceiverSettings) -> ssl.SSLContext | None:
    if settings.agent_receiver_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.agent_receiver_cert_file, settings.agent_receiver_key_file)
    return context


def _recipients_of(rcpt_tos: list[str], book: AddressBook) -> dict[str, str]:
    """Each monitor's recipients of one envelope, sorted and joined (part of its arrival id)."""
    out: dict[str, list[str]] = {}
    for rcpt in rcpt_tos:
        held = book.get(rcpt.rpartition("@")[0])
        if held is not None:
            out.setdefault(held.monitor_id, []).append(rcpt.lower())
    return {monitor: " ".join(sorted(r)) for monitor, r in out.items()}
