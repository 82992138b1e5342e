"""A loopback DNS server (UDP and TCP) answering from a dict of records, and an HTTPS host
serving an MTA-STS policy: the mail DNS a test wants, good or bad.

`records` maps (name, type) to the records' presentation texts, e.g.
`("example.test", "MX"): ["10 mx.example.test."]`. A name with no record of any type is
NXDOMAIN; a CNAME is chased as a recursive resolver does (the chain, then what is at its end; a
loop sent as it is); one in `servfail` is SERVFAIL; one in or under a zone of `silent` gets no
reply at all (`asked` still lists it), as from a zone whose servers never answer. It answers the
agents' default resolver canaries as a resolver must (shared.dns_canary: `a.root-servers.net`
exists, `.invalid` does not) unless `canaries=False`. `ad` sets
the AD bit on every answer, as a validating resolver does on a DNSSEC-validated one (this
server validates nothing: it stands in for one; testkit/peers/dnssec.py and
testkit/peers/unbound.py give real signatures and real validation).
"""

import asyncio
import contextlib
import ssl
from types import TracebackType
from typing import Self, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from testkit.peers.base import LoopbackServer

Records = dict[tuple[str, str], list[str]]
# What the default canaries (shared.dns_canary.DEFAULT_CANARIES) must find.
CANARY_RECORDS: Records = {("a.root-servers.net", "A"): ["198.41.0.4"]}
CHAIN_MAX = 20  # CNAMEs in one answer


class DnsPeer(asyncio.DatagramProtocol):
    def __init__(
        self,
        records: Records,
        *,
        ad: bool = False,
        servfail: frozenset[str] = frozenset(),
        silent: frozenset[str] = frozenset(),
        canaries: bool = True,
    ) -> None:
        given = {**CANARY_RECORDS, **records} if canaries else records
        self.records = {(n.lower().rstrip("."), t.upper()): v for (n, t), v in given.items()}
        self.ad = ad
        self.servfail = {n.lower().rstrip(".") for n in servfail}
        self.silent = tuple(n.lower().strip(".") for n in silent)
        self.host = "127.0.0.1"
        self.port = 0
        self.asked: list[tuple[str, str]] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def at(self, host: str, port: int = 0) -> Self:
        """Listen on `host`:`port` (e.g. a namespace's host side, port 53: a resolver named in
        resolv.conf, testkit/netns.py) instead of a free loopback port."""
        self.host, self.port = host, port
        return self

    def answer(self, wire: bytes, tcp: bool = False) -> bytes | None:
        """The reply (None for a name in a silent zone); over UDP one too big for the asker's
        EDNS size is sent truncated (TC, no records), as a real server does, and the asker
        retries over TCP."""
        response = self._response(wire)
        if response is None:
            return None
        try:
            return response.to_wire(max_size=65535 if tcp else 0)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _response(self, wire: bytes) -> dns.message.Message | None:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, rdtype))
        if any(name == zone or name.endswith(f".{zone}") for zone in self.silent):
            return None
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        owner, texts = question.name, self.records.get((name, rdtype))
        chased: list[str] = []
        while not texts and rdtype != "CNAME" and (alias := self.records.get((name, "CNAME"))):
            # A recursive resolver's answer: the CNAME chain, then the records at its end; a
            # loop is sent as it is (the asker must notice).
            response.answer.append(dns.rrset.from_text_list(owner, 300, "IN", "CNAME", alias))
            chased.append(name)
            owner = dns.name.from_text(alias[0])
            name = owner.to_text(omit_final_dot=True).lower()
            if name in chased or len(chased) > CHAIN_MAX:
                break
            texts = self.records.get((name, rdtype))
        if texts:
            rrset = dns.rrset.from_text_list(owner, 300, "IN", rdtype, texts)
            response.answer.append(rrset)
        elif not chased and not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        if self.ad:
            response.flags |= dns.flags.AD
        else:
            response.flags &= ~dns.flags.AD
        return response

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._udp = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        assert self._udp is not None
        if (reply := self.answer(data)) is not None:
            self._udp.sendto(reply, addr)

    async def _tcp_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            size = int.from_bytes(await reader.readexactly(2), "big")
            reply = self.answer(await reader.readexactly(size), tcp=True)
            if reply is not None:
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        writer.close()

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        if self.port:
            await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
            self._tcp = await asyncio.start_server(self._tcp_session, self.host, self.port)
            return self
        # One port for both: UDP first (the kernel picks), then TCP on the same number, which
        # another process (parallel test workers) may hold already: then another pick.
        for _ in range(50):
            await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, 0))
            assert self._udp is not None
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._tcp_session, self.host, self.port)
            except OSError:
                self._udp.close()
                self._udp = None
                continue
            return self
        raise OSError(f"no port free for both UDP and TCP on {self.host}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


class PolicyHost(LoopbackServer):
    """HTTPS on loopback answering every request with `status` and `body` (an MTA-STS policy
    host); `requests` holds each request's first line and Host header."""

    def __init__(self, ssl_context: ssl.SSLContext, body: str, status: int = 200) -> None:
        super().__init__(ssl_context)
        self.body = body
        self.status = status
        self.requests: list[tuple[str, str]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        host = next((h.split(":", 1)[1].strip() for h in head if h.lower().startswith("host:")), "")
        self.requests.append((head[0], host))
        body = self.body.encode()
        writer.write(
            f"HTTP/1.0 {self.status} X\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
