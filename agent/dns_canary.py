"""The agent's resolver canaries (shared.dns_canary, `AGENT_DNS_CANARIES`), asked of the resolver
a mail DNS or reverse DNS probe asks, beside its lookups; the agent judges nothing, the
controller does (controller/oracles/rules.py).

One probe's canaries are asked at most once per `TTL_S`: the rounds within it share the answers
(and one ask in flight), so a wave of rounds costs one query per canary; a round started after
them asks again. The ask has a timeout of its own (`TIMEOUT_S`), not any round's budget, so
one organization's tight budget never cuts the answers other rounds share; a round that cannot
wait for them reads them as not answered.
"""

import asyncio
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.resolver

from shared.dns_canary import Canary, DnsCanary

TTL_S: Final = 30.0
TIMEOUT_S: Final = 5.0


class CanaryAsk:
    def __init__(self, canaries: tuple[Canary, ...]) -> None:
        self._canaries = canaries
        self._asked: asyncio.Task[list[DnsCanary]] | None = None
        self._asked_at = -float("inf")

    async def answers(
        self, resolver: dns.asyncresolver.Resolver, budget: float
    ) -> list[DnsCanary] | None:
        """The canaries as answered lately (None: none configured), waiting at most
        `budget` for them."""
        if not self._canaries:
            return None
        loop = asyncio.get_running_loop()
        if self._asked is None or loop.time() - self._asked_at > TTL_S:
            self._asked = asyncio.create_task(self._ask(resolver))
            self._asked_at = loop.time()
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                return list(await asyncio.shield(self._asked))
        except TimeoutError:
            why = "not answered within the round's budget"
            return [
                DnsCanary(name=c.name, type=c.type, exists=c.exists, error=why)
                for c in self._canaries
            ]

    async def _ask(self, resolver: dns.asyncresolver.Resolver) -> list[DnsCanary]:
        return list(await asyncio.gather(*(self._one(resolver, c) for c in self._canaries)))

    async def _one(self, resolver: dns.asyncresolver.Resolver, c: Canary) -> DnsCanary:
        out = DnsCanary(name=c.name, type=c.type, exists=c.exists)
        try:
            answer = await resolver.resolve(
                c.name, c.type, lifetime=TIMEOUT_S, search=False, raise_on_no_answer=False
            )
            out.found = bool(answer.rrset)
        except dns.resolver.NXDOMAIN:
            out.found = False
        except dns.exception.Timeout:
            out.error = "timed out"
        except dns.resolver.NoNameservers:
            out.error = "no resolver answered (SERVFAIL or refused)"
        except dns.exception.DNSException as exc:
            out.error = (str(exc) or type(exc).__name__)[:200]
        return out
