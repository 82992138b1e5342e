"""What every prober shares: the target, the recorder, the failure signal and the TCP connect."""

import asyncio
import contextlib
import errno
import functools
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from shared.clock import Clock
from shared.messages import (
    ArcResults,
    AuthResults,
    CheckJob,
    ErrorKind,
    Hop,
    Phases,
    TlsInfo,
    TlsOptions,
)
from shared.sidechecks.relay import RelayTest

PHASES = ("dns", "connect", "tls", "greeting", "auth")
BANNER_MAX = 512
CAPABILITIES_MAX = 64  # entries kept of what a server advertises
CAPABILITY_MAX = 200  # characters kept of each
# A server advertises the same list on every session, so its normal form is kept for the last
# lists met, each of at most CAPABILITIES_MAX entries and this many characters (a real list is
# a few dozen entries, a few hundred characters): a server varying its list on every session
# holds at most ~7 MB here (tests/unit/test_advertised.py).
CAPABILITIES_MEMO_MAX = 256
CAPABILITIES_MEMO_TEXT_MAX = 2048
# QUIT/LOGOUT come after everything that matters was answered: a server that hangs there costs
# at most this, and the goodbye stops this long before the check's deadline so that deadline
# never fires during it.
GOODBYE_S = 1.0
GOODBYE_MARGIN_S = 0.05
# The phases of `goodbye`: everything that matters was answered before them.
GOODBYE_PHASES = frozenset({"quit", "logout"})


class ProbeFailure(Exception):
    """The check failed for a reason the prober understands; `kind` is the result's errorKind."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect: resolved IPs (tried in order), and `server_name` for SNI and the
    certificate check (the hostname unless the monitor names another). `reach` makes the Target
    of another server (hostname, port, its tlsOptions) under the same rules (DNS, the
    private-address policy, the TLS contexts): a round trip's mailbox."""

    hostname: str
    addresses: tuple[str, ...]
    port: int
    ssl_context: ssl.SSLContext
    server_name: str
    reach: "Callable[[str, int, TlsOptions], Awaitable[Target]] | None" = None


@dataclass(slots=True)
class Allowance:
    """The mailbox API calls (Graph) or quota units (Gmail) a job may still spend, as the
    controller gave them (`apiCalls`, `apiUnits`): shared by the job's legs of that API. None:
    no count given (an older controller), only the agent's own count per mailbox applies."""

    left: int | None = None


@dataclass(slots=True)
class Recorder:
    """Collects what a check observed; the caller turns it into a CheckResult."""

    clock: Clock  # the instant a check reads (a probe's stamp, a certificate's days left)
    current: str = "start"
    deadline: float = math.inf  # event-loop time when the caller's deadline fires
    phases: dict[str, float] = field(default_factory=dict)
    banner: str | None = None
    tls: TlsInfo | None = None
    address: str | None = None
    # A round trip's: where the message was found and what its headers say.
    folder: str | None = None
    hops: list[Hop] | None = None
    auth_results: AuthResults | None = None
    arc: ArcResults | None = None
    capabilities: list[str] | None = None
    capabilities_before_tls: list[str] | None = None
    logins: int = 0  # times the check reached the AUTH/LOGIN/USER-PASS step
    relay: RelayTest | None = None  # the open relay test's answers (SMTP, `relayCheck`)
    note: str | None = None  # what a passing check says instead of "ok"
    # The server being dialled, as failures name it (`dialled`), and the name its certificate
    # is checked against when that is not the hostname.
    dialled: str | None = None
    name_checked: str | None = None
    api_calls: Allowance = field(default_factory=Allowance)  # the job's Graph calls left
    api_units: Allowance = field(default_factory=Allowance)  # the job's Gmail quota units left

    def advertised(self, capabilities: Iterable[str]) -> None:
        """What the server advertised last, in `capabilities_kept`'s form."""
        said = tuple(capabilities)
        if len(said) <= CAPABILITIES_MAX and sum(map(len, said)) <= CAPABILITIES_MEMO_TEXT_MAX:
            self.capabilities = list(_kept_memo(said))
        else:
            self.capabilities = capabilities_kept(said)

    def upgrading(self) -> None:
        """TLS is about to start on a plain connection: what was advertised so far was said in
        the clear, and what is advertised next comes over TLS."""
        self.capabilities_before_tls, self.capabilities = self.capabilities, None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Mark `name` as the phase in progress; if it is a reported phase, time it on success."""
        self.current = name
        if name == "auth":
            self.logins += 1
        start = time.perf_counter()
        yield
        if name in PHASES:
            self.record(name, time.perf_counter() - start)

    def record(self, name: str, seconds: float) -> None:
        self.phases[name] = round(seconds * 1000, 3)

    def set_banner(self, text: str) -> None:
        self.banner = text.strip()[:BANNER_MAX]

    def to_phases(self) -> Phases:
        p = self.phases
        return Phases(
            dns_ms=p.get("dns"),
            connect_ms=p.get("connect"),
            tls_ms=p.get("tls"),
            greeting_ms=p.get("greeting"),
            auth_ms=p.get("auth"),
            submit_ms=p.get("submit"),
            delivery_ms=p.get("delivery"),
            fetch_ms=p.get("fetch"),
        )


def capabilities_kept(capabilities: Iterable[str]) -> list[str]:
    """Capabilities as a result carries them: stripped, upper-cased (all three protocols
    compare them without case), unique, sorted, bounded."""
    found = {c[:CAPABILITY_MAX] for c in map(str.upper, map(str.strip, capabilities)) if c}
    return sorted(found)[:CAPABILITIES_MAX]


@functools.lru_cache(maxsize=CAPABILITIES_MEMO_MAX)
def _kept_memo(capabilities: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(capabilities_kept(capabilities))


ProbeFn = Callable[[Target, CheckJob, Recorder], Awaitable[None]]


async def connect_socket(target: Target, rec: Recorder) -> socket.socket:
    """A non-blocking TCP socket connected to the first address that accepts (timed as
    `connect`); the last error is raised when none does."""
    rec.name_checked = target.server_name if target.server_name != target.hostname else None
    with rec.phase("connect"):
        for i, address in enumerate(target.addresses):
            rec.dialled = dialled(target.hostname, target.port, address)
            try:
                sock = await _connect_one(address, target.port)
            except OSError:
                if i == len(target.addresses) - 1:
                    raise
                continue
            rec.address = address
            return sock
    raise ProbeFailure("dns", f"{target.hostname} has no address")


def dialled(hostname: str, port: int, address: str) -> str:
    """A server as error texts name it: the host, its port and the address dialled."""
    return f"{hostname} port {port}" + (f" ({address})" if address != hostname else "")


async def _connect_one(address: str, port: int) -> socket.socket:
    """A non-blocking connect to an IP address, waited for on the event loop. Not
    `loop.sock_connect`: uvloop's resolves the address again in its thread pool, a thread
    hop per check for an address that is already numeric."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        err = sock.connect_ex((address, port))
        if err in _IN_PROGRESS:
            loop = asyncio.get_running_loop()
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(sock, _settle, writable)
            try:
                await writable
            finally:
                loop.remove_writer(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"Connect call failed {_sockaddr(family, address, port)}")
    except BaseException:
        sock.close()
        raise
    return sock


_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK})


def _sockaddr(
    family: socket.AddressFamily, address: str, port: int
) -> tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]:
    """The socket address the event loop's connect named in its error (IPv6: with flow info
    and scope id), so messages read as before; numeric, so nothing is looked up."""
    flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
    return socket.getaddrinfo(address, port, family, socket.SOCK_STREAM, 0, flags)[0][4]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def goodbye(
    rec: Recorder, say: Callable[[], Awaitable[object]], *ignored: type[BaseException]
) -> None:
    """QUIT or LOGOUT within its own short budget; a timeout, an OSError or one of `ignored`
    there is not an outage, so it is swallowed and the check keeps its outcome."""
    budget = min(GOODBYE_S, rec.deadline - asyncio.get_running_loop().time() - GOODBYE_MARGIN_S)
    if budget <= 0:
        return
    with contextlib.suppress(TimeoutError, OSError, *ignored):
        async with asyncio.timeout(budget):
            await say()


def refuse_line_breaks(*credentials: str) -> None:
    """A CR or LF in a user name or password would end an IMAP or POP3 command early and let
    the rest be read as another command; no real account has one. Refused before sending."""
    if any("\r" in c or "\n" in c for c in credentials):
        raise ProbeFailure("auth", "the credentials contain a line break; they were not sent")


def reply_kind(code: int) -> ErrorKind:
    """A 4xx reply is temporary; anything else unexpected is a protocol failure."""
    return "temporary" if 400 <= code < 500 else "protocol"
