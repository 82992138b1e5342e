"""The resolver the agent's DNS probes ask (mail DNS, reverse DNS, readiness:
`AGENT_DNS_RESOLVER`), and the canaries asked of it beside their lookups (agent.dns_canary,
`AGENT_DNS_CANARIES`)."""

from typing import TypeVar

import dns.asyncresolver
import dns.flags
import dns.resolver

from agent.dns_canary import CanaryAsk
from shared.dns_canary import DEFAULT_CANARIES, Canary, parse_dns_canaries


def dns_resolver(setting: str | None) -> dns.asyncresolver.Resolver:
    """The resolver of the agent's DNS probes (mail DNS, reverse DNS): `setting` is `host` or
    `host:port` (AGENT_DNS_RESOLVER), None for the system's (raises
    dns.resolver.NoResolverConfiguration without one)."""
    return _configured(dns.asyncresolver.Resolver(configure=setting is None), setting)


def blocking_resolver(setting: str | None) -> dns.resolver.Resolver:
    """The same resolver for a thread (the receiver's parsers: dkimpy and pyspf ask
    synchronously)."""
    return _configured(dns.resolver.Resolver(configure=setting is None), setting)


R = TypeVar("R", bound=dns.resolver.BaseResolver)


def _configured(resolver: R, setting: str | None) -> R:
    if setting is not None:
        host, _, port = setting.rpartition(":")
        if not host or "]" in port:  # no port given (or a bare IPv6 address)
            host, port = setting, "53"
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port)
    # AD asks the resolver to say whether it validated the answer (RFC 6840 5.7); DO makes a
    # validating resolver validate for us.
    resolver.flags = dns.flags.RD | dns.flags.AD
    resolver.use_edns(0, dns.flags.DO, 1232)
    return resolver


class CanaryResolver:
    """A DNS probe's resolver from its `setting` (see `dns_resolver`), built on first use, and
    its `canaries` (None: the defaults), asked at most once per agent.dns_canary.TTL_S."""

    def __init__(self, setting: str | None, canaries: tuple[Canary, ...] | None) -> None:
        self._setting = setting
        self._resolver: dns.asyncresolver.Resolver | None = None
        self.canaries = CanaryAsk(
            parse_dns_canaries(DEFAULT_CANARIES) if canaries is None else canaries
        )

    def resolver(self) -> dns.asyncresolver.Resolver:
        """Built on first use: the system's configuration is read only by an agent that
        resolves (raises dns.resolver.NoResolverConfiguration without one)."""
        if self._resolver is None:
            self._resolver = dns_resolver(self._setting)
        return self._resolver
