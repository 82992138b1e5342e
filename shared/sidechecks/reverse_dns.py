"""Reverse DNS on the wire: the PTR names of the monitored server's addresses and whether they
resolve back to them, as the agent's resolver answered from its country (issue 58). Asked on an
SMTP monitor's rounds that resolve DNS; the agent answers for the address the check connected
to, so nothing is asked when the check reached no server."""

from typing import Final

import msgspec

from shared.dns_canary import DnsCanary, capped
from shared.sidechecks import SideCheckWire

PTR_NAMES_MAX: Final = 5
PTR_ADDRESSES_MAX: Final = 4
NAME_CHARS_MAX: Final = 253
ADDRESS_CHARS_MAX: Final = 45  # the longest IPv6 address as text
ERROR_CHARS_MAX: Final = 200


class ReverseDnsAsk(msgspec.Struct, kw_only=True, rename="camel"):
    """Nothing to say: the addresses are the monitored host's."""


class PtrCheck(msgspec.Struct, kw_only=True, rename="camel"):
    """One address of the monitored host as the agent's resolver answered from its country:
    `names`, its PTR names (lower case, without the final dot; at most `PTR_NAMES_MAX`, each
    at most 253 characters); [] when it has none (NXDOMAIN or no PTR); null when the lookup
    failed, with why in `error`. `confirmed`: those of `names` whose A/AAAA records hold the
    address again (forward-confirmed reverse DNS, FCrDNS); null when none did and a forward
    lookup failed, so it is not known."""

    address: str
    names: list[str] | None = None
    confirmed: list[str] | None = None
    error: str = ""


class ReverseDns(msgspec.Struct, kw_only=True, rename="camel"):
    """The reverse DNS of the monitored server's addresses (the one the check connected to,
    `CheckResult.address`, first; at most `PTR_ADDRESSES_MAX`). `truncated`: addresses or
    names were left out to stay within the bounds."""

    addresses: list[PtrCheck] = msgspec.field(default_factory=list)
    truncated: bool = False
    # The resolver canaries asked beside these lookups (shared.dns_canary); null from older
    # agents and from one with no canaries configured.
    canaries: list[DnsCanary] | None = None


WIRE: Final = SideCheckWire("reverse_dns", ReverseDnsAsk, ReverseDns)


def _names(names: list[str] | None) -> list[str] | None:
    return None if names is None else [n[:NAME_CHARS_MAX] for n in names[:PTR_NAMES_MAX]]


def bounded(r: ReverseDns) -> ReverseDns:
    """`r` within the bounds an agent keeps (applied again by the controller at ingest: an
    agent could send more): at most PTR_ADDRESSES_MAX addresses, PTR_NAMES_MAX names each,
    texts cut; `truncated` set when anything was cut (`r` itself when nothing was)."""
    addresses = [
        PtrCheck(
            address=c.address[:ADDRESS_CHARS_MAX],
            names=_names(c.names),
            confirmed=_names(c.confirmed),
            error=c.error[:ERROR_CHARS_MAX],
        )
        for c in r.addresses[:PTR_ADDRESSES_MAX]
    ]
    canaries = capped(r.canaries)
    if addresses == r.addresses and canaries == r.canaries:
        return r
    return ReverseDns(addresses=addresses, truncated=True, canaries=canaries)
