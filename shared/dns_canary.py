"""Resolver canaries (issue 65): names the agent's resolver must answer as existing, and names it
must answer as not existing, asked beside a round's mail DNS and reverse DNS lookups, as a
blocklist's RFC 5782 test entries are asked beside its lookups. A resolver that answers
NXDOMAIN for everything, or records for names that do not exist, fails them, and the controller
then believes nothing it answered that round (controller/oracles/rules.py).

`AGENT_DNS_CANARIES`: comma-separated `name TYPE` entries, `!name TYPE` for a name that must not
exist; "" for none (the round's answers are then believed as they come, as from older agents).
The defaults are the best-defined names there are: `a.root-servers.net` (the first root server,
whose A record every resolver must reach through `.net`) and `mailprobe-canary.invalid` (RFC
2606 and RFC 6761 section 6.4: no `.invalid` name exists, and resolvers answer NXDOMAIN).
"""

from dataclasses import dataclass
from typing import Final

import msgspec

DEFAULT_CANARIES: Final = "a.root-servers.net A, !mailprobe-canary.invalid A"
CANARIES_MAX: Final = 4
TYPES: Final = ("A", "AAAA", "MX", "TXT", "NS", "SOA", "PTR", "CNAME")
NAME_MAX: Final = 253
ERROR_MAX: Final = 200


class DnsCanary(msgspec.Struct, kw_only=True, rename="camel"):
    """One resolver canary as the agent's resolver answered it: `name` and `type` asked,
    `exists` whether it must exist; `found` whether it had records of that type (NXDOMAIN or
    none: false), null when the lookup failed (`error` why)."""

    name: str
    type: str
    exists: bool
    found: bool | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Canary:
    name: str
    type: str
    exists: bool


def parse_dns_canaries(text: str) -> tuple[Canary, ...]:
    """`AGENT_DNS_CANARIES` as canaries; ValueError naming the entry that is wrong."""
    out: list[Canary] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        parts = entry.split()
        if len(parts) != 2 or parts[1].upper() not in TYPES:
            raise ValueError(f"{entry!r}: say `name TYPE` ({', '.join(TYPES)}), `!name TYPE`")
        name = parts[0].removeprefix("!").rstrip(".").lower()
        labels = name.split(".")
        if not name or len(name) > NAME_MAX or any(not 0 < len(x) <= 63 for x in labels):
            raise ValueError(f"{entry!r}: not a DNS name")
        out.append(Canary(name, parts[1].upper(), not parts[0].startswith("!")))
    if len(out) > CANARIES_MAX:
        raise ValueError(f"at most {CANARIES_MAX} canaries")
    return tuple(out)


def capped(canaries: list[DnsCanary] | None) -> list[DnsCanary] | None:
    """At most `CANARIES_MAX` canaries, their texts cut: what the controller keeps of any
    agent's."""
    if canaries is None:
        return None
    return [
        msgspec.structs.replace(
            c, name=c.name[:NAME_MAX], type=c.type[:8], error=c.error[:ERROR_MAX]
        )
        for c in canaries[:CANARIES_MAX]
    ]
