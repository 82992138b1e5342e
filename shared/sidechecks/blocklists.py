"""Blocklists on the wire (issue 58): what a round asks the DNS blocklists about from the
agent's country, and what they answered, as served (the controller reads the codes). Asked on
the first round of each BLOCKLIST_INTERVAL_SECONDS window of a monitor; bounded by
`shared.sidechecks.blocklists_bound`."""

from typing import Final

import msgspec

from shared.sidechecks import SideCheckWire


class BlocklistZone(msgspec.Struct, kw_only=True, rename="camel"):
    """One blocklist to ask: its public `zone`; `kind` "ip" (RFC 5782 section 2.1: reversed
    octets, section 2.4: reversed nibbles for IPv6) or "domain" (section 2.2: the name itself);
    `dqs`: a Spamhaus zone that an agent holding a DQS key (`AGENT_SPAMHAUS_DQS_KEY`) asks as
    `<key>.<list>.dq.spamhaus.net` instead, so the key never travels; `tests`: its RFC 5782
    test entries (section 5: the one it must list, the one it must not), asked beside anything
    else the round asks of it, even when `skip` names them, so each answer comes with the
    same round's proof of the list's health ([] from older controllers); `skip`: names this
    list answered in the agent's country within the interval, which this round may meet: not
    asked of it again, whatever another list answered ([] from older controllers). Plain strs:
    a newer controller's kinds still decode (an agent skips a kind it does not know)."""

    zone: str
    kind: str = "ip"
    dqs: bool = False
    tests: list[str] = msgspec.field(default_factory=list)
    skip: list[str] = msgspec.field(default_factory=list)


class BlocklistAsk(msgspec.Struct, kw_only=True, rename="camel"):
    """What a round asks of the blocklists from the agent's country: the addresses of the job's
    `hostname` (A and AAAA) when `host`, those of the MX hosts of `mxDomain`, and the `ips`
    and `domains` listed, each on the `zones` of its kind. `skip`: names the controller had
    answered in this country within the interval on every list of their kind (another monitor
    asked) that this round may meet (its own, and those its monitor's last round there found):
    the agent still names them in `Reputation.names` but asks no list about them (a list's own
    `skip` says which names that list answered)."""

    zones: list[BlocklistZone] = msgspec.field(default_factory=list)
    host: bool = False
    mx_domain: str | None = None
    ips: list[str] = msgspec.field(default_factory=list)
    domains: list[str] = msgspec.field(default_factory=list)
    skip: list[str] = msgspec.field(default_factory=list)


class BlocklistAnswer(msgspec.Struct, kw_only=True, rename="camel"):
    """What one list answered about one name, as served: `a`, its A records (at most
    `shared.sidechecks.blocklists_bound.A_MAX`), [] for NXDOMAIN or no A record, null when the
    lookup failed (`error` says why: timed out, SERVFAIL, a CNAME loop...); `txt`, its first TXT
    record when it answered A records (cut to `TXT_CHARS_MAX`). The agent judges nothing: the
    controller reads the codes (controller/sidechecks/blocklists/rules.py), so a list's
    documented codes change without an agent upgrade."""

    zone: str  # the public zone (a DQS zone as its public name: the key never shows)
    name: str  # the address or domain asked about, not the query name
    a: list[str] | None = None
    txt: str | None = None
    error: str = ""
    ms: float | None = None


class Reputation(msgspec.Struct, kw_only=True, rename="camel"):
    """A job's `blocklists` as answered from this country: `names` maps each name the mail
    depends on to where it came from (`host`, `mx:<mx host>`, `listed`), `answers` one per list
    and name asked (none for a name in `skip`), `errors` why a source could not be resolved
    (`host`, `mx`); `truncated`: answers or names were cut to the bound
    (`shared.sidechecks.blocklists_bound`). `resolver`: which resolver the lists were asked
    through: `dns`, the one mail DNS and reverse DNS ask (AGENT_DNS_RESOLVER, else the
    system's), whose canaries then vouch for the lists' answers too; `own`, the agent's
    AGENT_BLOCKLIST_RESOLVER; "" from older agents (not known)."""

    names: dict[str, str] = msgspec.field(default_factory=dict)
    answers: list[BlocklistAnswer] = msgspec.field(default_factory=list)
    errors: dict[str, str] = msgspec.field(default_factory=dict)
    truncated: bool = False
    resolver: str = ""


# `Reputation.resolver`'s values (any other is kept as "": not known).
RESOLVERS: Final = ("dns", "own")

WIRE: Final = SideCheckWire("blocklists", BlocklistAsk, Reputation)
