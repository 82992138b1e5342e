"""Blocklist lookups from the agent's country (RFC 5782): the addresses a monitor's mail
depends on, asked of each IP list, and its domains of each domain list.

The agent only gathers what is served (`shared.sidechecks.blocklists.Reputation`: each list's A
records and first TXT as answered); the controller reads the codes
(controller/sidechecks/blocklists/rules.py), so a list's documented codes change without an
agent upgrade. Every lookup runs within one budget, each at most `QUERY_MAX_S`, at most
`PARALLEL` at once; a slow or dead list costs its own lookups a timeout, never the others'
answers. A name a list answered lately (its zone's `skip`, or this agent's `Recent`) is not
asked of it again, nor a list that just timed out. A list
asked about anything has its RFC 5782 test entries' answers beside (agent.blocklist_tests:
asked at most once a minute, shared by the rounds), which vouch for it.
dnspython parses every answer: a CNAME loop, a truncated UDP answer (retried over TCP) or a 64
KiB TXT record is an error or a bounded text, never a crash.

Spamhaus refuses queries that come through public resolvers (127.255.255.254): point
`AGENT_BLOCKLIST_RESOLVER` (else `AGENT_DNS_RESOLVER`, else the system's) at a resolver of
your own, or give the agent a Spamhaus DQS key (`AGENT_SPAMHAUS_DQS_KEY`): a Spamhaus zone is
then asked as `<key>.<list>.dq.spamhaus.net`. The key is a secret: it never leaves the agent
(results name the public zone, errors have it masked).
"""

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.resolver

from agent.blocklist_tests import TIMEOUT_S, ListTests
from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks.base import AgentSideCheck, Round, Runner
from agent.tenant_bound import BOUND_BUSY, TenantBound
from shared.addresses import is_blocked
from shared.clock import Clock
from shared.guards import BrokenInvariant
from shared.sidechecks.blocklists import (
    WIRE,
    BlocklistAnswer,
    BlocklistAsk,
    BlocklistZone,
    Reputation,
)
from shared.sidechecks.blocklists_bound import (
    A_MAX,
    BUDGET_SPENT,
    NAMES_MAX,
    TXT_CHARS_MAX,
    ZONES_MAX,
    bounded,
)

BUDGET_MAX_S: Final = 10.0
# One lookup's most: a list that never answers costs a round this, not its whole budget, and
# with it one of its organization's DNS probes.
QUERY_MAX_S: Final = TIMEOUT_S
PARALLEL: Final = 16
RECENT_S: Final = 60.0
RECENT_MAX: Final = 100_000
TIMED_OUT: Final = "timed out"
MX_HOSTS_MAX: Final = 5
SPAMHAUS_ZONES: Final = ("spamhaus.org",)
MASK: Final = "<dqs-key>"


def query_name(name: str, kind: str) -> str | None:
    """The name to ask a list's zone about (without the zone): RFC 5782 section 2.1 (IPv4,
    reversed octets), 2.4 (IPv6, reversed nibbles), 2.2 (a domain, as it is); None when `name`
    is not of the list's kind."""
    if kind == "ip":
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return None
        return address.reverse_pointer.rsplit(".", 2)[0]  # without in-addr.arpa / ip6.arpa
    if kind == "domain":
        try:
            ipaddress.ip_address(name)
            return None
        except ValueError:
            pass
        try:
            text = dns.name.from_text(name.rstrip("."), origin=None).to_text()
        except dns.exception.DNSException:
            return None
        return text.lower() or None
    return None


def dqs_zone(zone: str, key: str) -> str:
    """`zen.spamhaus.org` → `<key>.zen.dq.spamhaus.net` (Spamhaus's DQS naming)."""
    head = zone.removesuffix(".spamhaus.org")
    return f"{key}.{head}.dq.spamhaus.net"


class BlocklistProbe:
    """`resolver`: `host` or `host:port` of the resolver to ask (None: the system's);
    `dqs_key`: a Spamhaus DQS key (None: Spamhaus's public mirrors); `shared`: whether that
    resolver is the one mail DNS and reverse DNS ask (`Reputation.resolver`); `recent_s`: how
    long a list is not asked again about a name it answered (`Recent`)."""

    def __init__(
        self,
        *,
        resolver: str | None = None,
        dqs_key: str | None = None,
        allow_private: bool = False,
        bound: TenantBound | None = None,
        clock: Clock,
        shared: bool | None = None,
        recent_s: float = RECENT_S,
    ) -> None:
        self._setting = resolver
        self._through = "" if shared is None else "dns" if shared else "own"
        self._bound = bound
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._key = dqs_key or None
        self._allow_private = allow_private
        self._tests = ListTests()
        self._recent = Recent(clock, recent_s)

    def _resolver_now(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            resolver = dns.asyncresolver.Resolver(configure=self._setting is None)
            if self._setting is not None:
                host, _, port = self._setting.rpartition(":")
                if not host or "]" in port:
                    host, port = self._setting, "53"
                resolver.nameservers = [host.strip("[]")]
                resolver.port = int(port)
            resolver.retry_servfail = False
            self._resolver = resolver
        return self._resolver

    async def probe(
        self, ask: BlocklistAsk, hostname: str, budget_s: float, tenant: str = ""
    ) -> Reputation:
        """What the lists answer about what `ask` names, within `budget_s` (at most
        BUDGET_MAX_S) and the size bound; the wait for one of `tenant`'s probes (`bound`)
        counts in the budget."""
        budget = min(budget_s, BUDGET_MAX_S)
        if self._bound is None:
            return await self._probe(ask, hostname, budget)
        held = False
        try:
            async with self._bound.slot_within(tenant, budget) as left:
                held = True
                return await self._probe(ask, hostname, left)
        except TimeoutError:
            if held:
                raise
            return Reputation(errors={"resolver": BOUND_BUSY}, resolver=self._through)

    async def _probe(self, ask: BlocklistAsk, hostname: str, budget: float) -> Reputation:
        out = Reputation(resolver=self._through)
        try:
            resolver = self._resolver_now()
        except dns.exception.DNSException as exc:
            out.errors["resolver"] = f"no resolver: {exc}"[:200]
            return out
        deadline = _loop_time() + budget
        await self._names(resolver, ask, hostname, out, deadline)
        zones = [z for z in ask.zones[:ZONES_MAX] if z.kind in ("ip", "domain")]
        skip = set(ask.skip)
        recent = self._recent.now()
        wanted = [
            (zone, name)
            for name in out.names
            if name not in skip
            for zone in zones
            if query_name(name, zone.kind) is not None
            and name not in zone.skip
            and not recent.held(zone.zone, name)
        ]
        # A list asked about anything has its test entries beside (skipped or not), as
        # answered lately (`ListTests`): they vouch for its answers.
        tested = [z for z in zones if z.tests and any(w.zone == z.zone for w, _ in wanted)]
        tests = {(z.zone, t) for z in tested for t in self._tests.names(z)}
        wanted = [(z, n) for z, n in wanted if (z.zone, n) not in tests]
        gate = asyncio.Semaphore(PARALLEL)

        async def one(zone: BlocklistZone, name: str) -> BlocklistAnswer:
            async with gate:
                left = min(deadline - _loop_time(), QUERY_MAX_S)
                return await self._ask(resolver, zone, name, left)

        def asking(zone: BlocklistZone, name: str, lifetime: float) -> Awaitable[BlocklistAnswer]:
            return self._ask(resolver, zone, name, lifetime)

        vouching = asyncio.gather(
            *(self._tests.answers(z, asking, deadline - _loop_time()) for z in tested)
        )
        answered = asyncio.gather(*(one(z, n) for z, n in wanted))
        beside, found = await asyncio.gather(vouching, answered)
        self._recent.saw(found)
        out.answers = [*(a for answers in beside for a in answers), *found]
        return bounded(out)

    async def _names(
        self,
        resolver: dns.asyncresolver.Resolver,
        ask: BlocklistAsk,
        hostname: str,
        out: Reputation,
        deadline: float,
    ) -> None:
        """`out.names`: what the mail depends on, each with where it came from, resolved
        within what is left of the round's budget at `deadline` (the MX, then every host's
        addresses at once)."""
        for ip in ask.ips:
            out.names.setdefault(ip, "listed")
        for domain in ask.domains:
            out.names.setdefault(domain.lower().rstrip("."), "listed")
        sources: list[tuple[str, str]] = []
        if ask.host:
            sources.append((hostname, "host"))
        if ask.mx_domain:
            try:
                answer = await resolver.resolve(
                    ask.mx_domain,
                    "MX",
                    lifetime=_left(deadline),
                    search=False,
                    raise_on_no_answer=False,
                )
                mx = sorted(answer.rrset or [], key=lambda r: r.preference)
                hosts = [r.exchange.to_text(omit_final_dot=True).lower() for r in mx]
                sources += [(h, f"mx:{h}") for h in dict.fromkeys(hosts[:MX_HOSTS_MAX])]
            except dns.exception.DNSException as exc:
                out.errors["mx"] = _why(exc, self._key)
        named = [(h, s, _address(h)) for h, s in sources]
        looked = [(h, s, t) for h, s, literal in named if literal is None for t in ("A", "AAAA")]
        found = await asyncio.gather(
            *(
                resolver.resolve(
                    h, t, lifetime=_left(deadline), search=False, raise_on_no_answer=False
                )
                for h, _, t in looked
            ),
            return_exceptions=True,
        )
        answers = dict(zip(((h, t) for h, _, t in looked), found, strict=True))
        for host, source, literal in named:
            if literal is not None:
                # The monitored name is an address: it is what the lists are asked about.
                if self._allow_private or not is_blocked(literal):
                    out.names.setdefault(literal, source)
                continue
            for rdtype in ("A", "AAAA"):
                got = answers[(host, rdtype)]
                if isinstance(got, dns.resolver.NXDOMAIN):
                    out.errors.setdefault(source.split(":")[0], f"{host} does not exist")
                    continue
                if isinstance(got, dns.exception.DNSException):
                    out.errors.setdefault(source.split(":")[0], f"{host}: {_why(got, self._key)}")
                    continue
                if isinstance(got, BaseException):
                    raise got
                for r in got.rrset or []:
                    address = r.to_text()
                    # A private address is the agent's network's: not told to a public list.
                    if self._allow_private or not is_blocked(address):
                        out.names.setdefault(address, source)
        if len(out.names) > NAMES_MAX:
            out.names = dict(list(out.names.items())[:NAMES_MAX])
            out.truncated = True

    async def _ask(
        self, resolver: dns.asyncresolver.Resolver, zone: BlocklistZone, name: str, left: float
    ) -> BlocklistAnswer:
        label = query_name(name, zone.kind)
        if label is None:
            raise BrokenInvariant("blocklists.BlocklistProbe._ask: label is unset")
        asked = zone.zone
        if zone.dqs and self._key and zone.zone.endswith(SPAMHAUS_ZONES):
            asked = dqs_zone(zone.zone, self._key)
        qname = f"{label}.{asked}"
        out = BlocklistAnswer(zone=zone.zone, name=name)
        if left <= 0:
            out.error = BUDGET_SPENT
            return out
        started = time.perf_counter()
        try:
            answer = await resolver.resolve(
                qname, "A", lifetime=left, search=False, raise_on_no_answer=False
            )
            out.a = sorted({r.to_text() for r in answer.rrset or []})[:A_MAX]
        except dns.resolver.NXDOMAIN:
            out.a = []
        except dns.exception.DNSException as exc:
            out.error = _why(exc, self._key)
        if out.a:
            out.txt = await self._txt(resolver, qname, left - (time.perf_counter() - started))
        out.ms = round((time.perf_counter() - started) * 1000, 1)
        return out

    async def _txt(
        self, resolver: dns.asyncresolver.Resolver, qname: str, left: float
    ) -> str | None:
        """The first TXT record (why it is listed), cut; None when there is none or it fails:
        the A records are the answer, the text only explains it."""
        if left <= 0:
            return None
        try:
            answer = await resolver.resolve(
                qname, "TXT", lifetime=left, search=False, raise_on_no_answer=False
            )
        except dns.exception.DNSException:
            return None
        for r in answer.rrset or []:
            text = b"".join(r.strings)[: TXT_CHARS_MAX * 4].decode("utf-8", "replace")
            return text[:TXT_CHARS_MAX]
        return None


class Recent:
    """What this agent's lists answered within the last `recent_s` (a list and name answered;
    a list one of whose lookups timed out after a whole `QUERY_MAX_S`): not asked again
    meanwhile, by any round. The
    controller's view of the answers, which makes the rounds skip them for the interval,
    lags by up to a refresh (`FreshNames.REFRESH_S`): this covers that gap, so a list is asked
    about a name, or a dead list at all, about once per interval from an agent. At most
    `RECENT_MAX` entries (the oldest go first), aged on `clock`'s monotonic seconds."""

    def __init__(self, clock: Clock, recent_s: float = RECENT_S) -> None:
        self._clock = clock
        self._recent_s = recent_s
        self._answered: dict[tuple[str, str], float] = {}
        self._dead: dict[str, float] = {}

    def now(self) -> "Recent":
        """Itself, past entries dropped."""
        since = self._clock.monotonic() - self._recent_s
        self._answered = {k: t for k, t in self._answered.items() if t >= since}
        self._dead = {k: t for k, t in self._dead.items() if t >= since}
        return self

    def held(self, zone: str, name: str) -> bool:
        return zone in self._dead or (zone, name) in self._answered

    def saw(self, answers: Sequence[BlocklistAnswer]) -> None:
        at = self._clock.monotonic()
        for a in answers:
            if a.a is not None:
                self._answered[(a.zone, a.name)] = at
            elif a.error == TIMED_OUT and (a.ms or 0.0) >= QUERY_MAX_S * 900:
                # Given a whole lookup's time: a round's budget run short proves nothing.
                self._dead[a.zone] = at
        while len(self._answered) > RECENT_MAX:
            del self._answered[next(iter(self._answered))]


def _loop_time() -> float:
    """The event loop's clock: a round's budget bounds real DNS queries (dnspython's
    `lifetime`), so it runs in the loop's time, as every I/O timeout does."""
    return asyncio.get_running_loop().time()


def _left(deadline: float) -> float:
    """What is left of a round's budget (a deadline on the loop's clock); a lookup given none
    times out at once."""
    return max(deadline - _loop_time(), 0.0)


def _address(host: str) -> str | None:
    """`host` as an address (`192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`), None for a name."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _why(exc: BaseException, key: str | None) -> str:
    if isinstance(exc, dns.exception.Timeout):
        text = TIMED_OUT
    elif isinstance(exc, dns.resolver.NoNameservers):
        text = "no resolver answered (SERVFAIL or refused)"
    elif isinstance(exc, dns.message.ChainTooLong):
        text = "a CNAME chain too long (a loop?)"
    else:
        text = str(exc) or type(exc).__name__
    if key:
        text = text.replace(key, MASK)
    return text[:200]


async def _run(probe: BlocklistProbe, ask: BlocklistAsk, at: Round) -> Reputation | None:
    """The lists are asked whatever the check found (a server that is down may be down because
    it was listed, and its addresses are still what its mail depends on); the worker runs no
    side check of a round whose agent's own path failed."""
    return await probe.probe(ask, at.job.hostname, at.job.timeout_seconds, at.job.tenant)


def runner(probe: BlocklistProbe) -> Runner[BlocklistAsk, Reputation]:
    return partial(_run, probe)


def build(
    settings: SideCheckSettings, targets: TargetSettings, clock: Clock
) -> Runner[BlocklistAsk, Reputation]:
    return runner(
        BlocklistProbe(
            resolver=settings.agent_blocklist_resolver or settings.agent_dns_resolver,
            dqs_key=settings.agent_spamhaus_dqs_key,
            allow_private=targets.agent_allow_private_targets,
            bound=TenantBound(settings.agent_dns_probes_per_tenant),
            clock=clock,
            shared=settings.agent_blocklist_resolver in (None, "", settings.agent_dns_resolver),
            recent_s=settings.agent_blocklist_recent_seconds,
        )
    )


SIDE_CHECK: Final = AgentSideCheck(WIRE, build)
