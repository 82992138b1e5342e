"""The reverse DNS of a monitored server's addresses, resolved from the agent's country: each
address's PTR names, and which of them resolve back to it (forward-confirmed reverse DNS).

The agent only gathers what is served (`shared.sidechecks.reverse_dns.ReverseDns`); the
controller judges it (controller/sidechecks/reverse_dns). Every lookup runs within one budget;
a lookup that fails (a timeout, SERVFAIL, a CNAME loop, an answer that does not parse) leaves
that part null with why, so a resolver outage never reads as a missing PTR record, and
nothing of it raises.
"""

import asyncio
import ipaddress
from collections.abc import Sequence
from functools import partial
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.message
import dns.rdatatype
import dns.resolver
import dns.reversename

from agent.dns_errors import why
from agent.dns_resolver import CanaryResolver
from agent.probers.run import default_resolver
from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks.base import AgentSideCheck, Round, Runner
from agent.tenant_bound import BOUND_BUSY, TenantBound
from shared.addresses import is_blocked
from shared.clock import Clock
from shared.dns_canary import Canary, parse_dns_canaries
from shared.sidechecks.reverse_dns import (
    PTR_ADDRESSES_MAX,
    PTR_NAMES_MAX,
    WIRE,
    PtrCheck,
    ReverseDns,
    ReverseDnsAsk,
)

BUDGET_MAX_S: Final = 10.0
GUARD_S: Final = 1.0
NAME_MAX: Final = 253  # RFC 1035 2.3.4, as text without the final dot


class ReverseDnsProbe:
    """`resolver`: `host` or `host:port` of the DNS resolver to ask (None: the system's).
    Private, loopback and reserved addresses are not looked up (an agent builds it so whatever
    AGENT_ALLOW_PRIVATE_TARGETS says): receivers only ever see public addresses, so such an
    address's PTR says nothing of the server's reputation, and its names are the agent's own
    network's. `allow_private` is for tests on loopback."""

    def __init__(
        self,
        *,
        resolver: str | None = None,
        allow_private: bool = False,
        bound: TenantBound | None = None,
        canaries: tuple[Canary, ...] | None = None,
    ) -> None:
        self._bound = bound
        self._dns = CanaryResolver(resolver, canaries)
        self._allow_private = allow_private

    async def probe(
        self, addresses: Sequence[str], budget_s: float, tenant: str = ""
    ) -> ReverseDns:
        """The PTR names of each of `addresses` (the first `PTR_ADDRESSES_MAX`, without
        repeats) and their forward confirmation, all within `budget_s` (at most
        BUDGET_MAX_S); the wait for one of `tenant`'s probes (`bound`) counts in the budget."""
        if self._bound is None:
            return await self._probe(addresses, budget_s)
        held = False
        try:
            async with self._bound.slot_within(tenant, min(budget_s, BUDGET_MAX_S)) as left:
                held = True
                return await self._probe(addresses, left)
        except TimeoutError:
            if held:
                raise
            wanted = list(dict.fromkeys(addresses))[:PTR_ADDRESSES_MAX]
            return ReverseDns(addresses=[PtrCheck(address=a, error=BOUND_BUSY) for a in wanted])

    async def _probe(self, addresses: Sequence[str], budget_s: float) -> ReverseDns:
        unique = list(dict.fromkeys(addresses))
        out = ReverseDns(truncated=len(unique) > PTR_ADDRESSES_MAX)
        wanted = unique[:PTR_ADDRESSES_MAX]
        try:
            resolver = self._dns.resolver()
        except dns.exception.DNSException as exc:
            out.addresses = [PtrCheck(address=a, error=f"no resolver: {exc}") for a in wanted]
            return out
        budget = max(0.1, min(budget_s, BUDGET_MAX_S))
        deadline = asyncio.get_running_loop().time() + budget
        # Canaries only beside lookups: a round that looks nothing up asks nothing.
        asked = self._allow_private or not all(is_blocked(a) for a in wanted)
        canaries = (
            asyncio.create_task(self._dns.canaries.answers(resolver, budget)) if asked else None
        )
        try:
            # Each lookup ends within the budget (the PTR lookups within half of it, the
            # forward lookups in what is left), so this only guards against one that overstays.
            async with asyncio.timeout(budget + GUARD_S):
                checks = await asyncio.gather(*(self._one(resolver, a, deadline) for a in wanted))
        except TimeoutError:
            checks = [(PtrCheck(address=a, error="timed out"), False) for a in wanted]
        out.addresses = [check for check, _ in checks]
        out.truncated |= any(cut for _, cut in checks)
        out.canaries = await canaries if canaries is not None else None
        return out

    async def _one(
        self, resolver: dns.asyncresolver.Resolver, address: str, deadline: float
    ) -> tuple[PtrCheck, bool]:
        """One address's check, and whether names were left out."""
        if not self._allow_private and is_blocked(address):
            private = "a private or reserved address: receivers never see it, so not looked up"
            return PtrCheck(address=address, error=private), False
        loop = asyncio.get_running_loop()
        try:
            half = (deadline - loop.time()) / 2
            async with asyncio.timeout(half):
                names, cut = await self._ptr(resolver, address, half)
        except (dns.exception.DNSException, OSError, ValueError, TimeoutError) as exc:
            return PtrCheck(address=address, error=why(exc)), False
        check = PtrCheck(address=address, names=names)
        if names:
            found: list[bool | BaseException]
            try:
                async with asyncio.timeout_at(deadline):
                    found = await asyncio.gather(
                        *(
                            self._forward(resolver, n, address, deadline - loop.time())
                            for n in names
                        ),
                        return_exceptions=True,
                    )
            except TimeoutError as exc:
                found = [exc for _ in names]
            confirmed = [n for n, ok in zip(names, found, strict=True) if ok is True]
            failed = [f for f in found if isinstance(f, BaseException)]
            if confirmed or not failed:
                check.confirmed = confirmed
            else:
                check.error = f"forward lookup: {why(failed[0])}"
        return check, cut

    async def _ptr(
        self, resolver: dns.asyncresolver.Resolver, address: str, budget: float
    ) -> tuple[list[str], bool]:
        try:
            answer = await resolver.resolve(
                dns.reversename.from_address(address),
                "PTR",
                raise_on_no_answer=False,
                lifetime=budget,
                search=False,
            )
        except dns.resolver.NXDOMAIN:
            return [], False
        if answer.rrset is None:
            return [], False
        texts = sorted(
            r.to_text().rstrip(".").lower() for r in answer.rrset if r.rdtype == dns.rdatatype.PTR
        )
        names = [t for t in dict.fromkeys(texts) if len(t) <= NAME_MAX]
        return names[:PTR_NAMES_MAX], len(names) > PTR_NAMES_MAX or len(names) < len(set(texts))

    async def _forward(
        self, resolver: dns.asyncresolver.Resolver, name: str, address: str, budget: float
    ) -> bool:
        """Whether `name`'s A (or AAAA, for an IPv6 address) records hold `address`; raises
        the lookup's failure, but a name that does not exist or has none is simply False."""
        rdtype = "AAAA" if ":" in address else "A"
        try:
            answer = await resolver.resolve(
                name, rdtype, raise_on_no_answer=False, lifetime=budget, search=False
            )
        except dns.resolver.NXDOMAIN:
            return False
        if answer.rrset is None:
            return False
        wanted = dns.rdatatype.from_text(rdtype)
        return any(r.rdtype == wanted and _same(r.to_text(), address) for r in answer.rrset)


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


async def _run(probe: ReverseDnsProbe, ask: ReverseDnsAsk, at: Round) -> ReverseDns | None:
    """The reverse DNS of the monitored host's addresses: not for a host the agent refused
    (its PTR names would be the agent's network's), nor when the check reached no server."""
    result = at.result
    if result.address is None or result.error_kind == "blocked_target":
        return None
    addresses = await _addresses(at, result.address)
    return await probe.probe(addresses, at.job.timeout_seconds, at.job.tenant)


async def _addresses(at: Round, connected: str) -> list[str]:
    """The monitored host's addresses, the one the check connected to first: each of them
    is a front end whose reverse DNS receivers see. Only that one when the name does not
    resolve again (within the check's timeout)."""
    resolver = at.resolver or default_resolver()
    try:
        async with asyncio.timeout(at.job.timeout_seconds):
            found = await resolver.resolve(at.job.hostname, at.job.tenant)
    except (OSError, TimeoutError):
        found = ()
    return [connected, *(a for a in found if a != connected)]


def runner(probe: ReverseDnsProbe) -> Runner[ReverseDnsAsk, ReverseDns]:
    return partial(_run, probe)


def build(
    settings: SideCheckSettings, targets: TargetSettings, clock: Clock
) -> Runner[ReverseDnsAsk, ReverseDns]:
    # Never private addresses, whatever AGENT_ALLOW_PRIVATE_TARGETS says: receivers only
    # ever see public ones, so a private address's PTR says nothing.
    return runner(
        ReverseDnsProbe(
            resolver=settings.agent_dns_resolver,
            bound=TenantBound(settings.agent_dns_probes_per_tenant),
            canaries=parse_dns_canaries(settings.agent_dns_canaries),
        )
    )


SIDE_CHECK: Final = AgentSideCheck(WIRE, build)
