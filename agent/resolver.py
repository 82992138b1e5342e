"""Resolving check targets on the event loop, without threads (issue 22).

The answers are those the system's getaddrinfo gave, by the same rules:
- a name under `.invalid` never resolves (RFC 6761 section 6.4): no query is sent;
- an IP literal is itself;
- a name in the hosts file (/etc/hosts, or what `ip netns exec` mounts over it) has that file's
  addresses; `localhost` and names under it (RFC 6761 section 6.3) are loopback otherwise;
- any other name is asked of the nameservers of /etc/resolv.conf (its search list and ndots
  too): A and AAAA at once, IPv6 first unless this host has no route to it (RFC 6724 rules 1
  and 6), each lookup bounded as glibc bounds one (`timeout` times `attempts` times nameservers).

A failure is the socket.gaierror getaddrinfo raised: EAI_NONAME for a name that does not exist,
EAI_NODATA for one without addresses, EAI_AGAIN when no nameserver answered. A lookup is a
coroutine: the check's deadline cancels it, and nothing of it stays queued.

Each tenant has at most `per_tenant` DNS lookups in flight (agent.tenant_bound); one past its
bound waits within its own check's deadline, so an unanswered zone slows only the monitors that
name it. Both files are read again when they change, as glibc does.
"""

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from agent.tenant_bound import TenantBound

RESOLV_CONF: Final = "/etc/resolv.conf"
HOSTS: Final = "/etc/hosts"
# glibc's defaults and caps (resolv.h: RES_TIMEOUT, RES_DFLRETRY, RES_MAXRETRANS, RES_MAXRETRY)
TIMEOUT_DEFAULT_S, TIMEOUT_MAX_S = 5, 30
ATTEMPTS_DEFAULT, ATTEMPTS_MAX = 2, 5
NAMESERVERS_MAX = 3  # MAXNS: glibc asks no more than the first three
LOOPBACK: Final = ("127.0.0.1", "::1")
DEFAULT_NAMESERVER: Final = "127.0.0.1"  # glibc's when resolv.conf names none

# What one query type found: addresses, or why none.
Outcome = tuple[str, ...] | Literal["nxdomain", "nodata", "transient"]


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...]
    timeout_s: float
    attempts: int

    @property
    def lifetime_s(self) -> float:
        """How long glibc spends on one lookup before it gives up: every attempt at every
        nameserver, each within `timeout`."""
        return self.timeout_s * self.attempts * max(1, len(self.nameservers))


def parse_resolv_conf(text: str) -> ResolvConf:
    """The nameservers (at most three, as glibc) and timing options of a resolv.conf."""
    nameservers: list[str] = []
    timeout, attempts = TIMEOUT_DEFAULT_S, ATTEMPTS_DEFAULT
    for line in text.splitlines():
        tokens = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(tokens) >= 2 and tokens[0] == "nameserver":
            nameservers.append(tokens[1])
        elif tokens[:1] == ["options"]:
            for option in tokens[1:]:
                name, _, value = option.partition(":")
                if not value.isdigit():
                    continue
                if name == "timeout":
                    timeout = min(max(int(value), 1), TIMEOUT_MAX_S)
                elif name == "attempts":
                    attempts = min(max(int(value), 1), ATTEMPTS_MAX)
    return ResolvConf(tuple(nameservers[:NAMESERVERS_MAX]), float(timeout), attempts)


def hosts_addresses(text: str, name: str) -> tuple[str, ...]:
    """The addresses a hosts file gives `name` (canonical name or alias, any case), in file
    order, without duplicates; lines whose address is not an IP address are skipped."""
    return hosts_table(text).get(name.rstrip(".").lower(), ())


def hosts_table(text: str) -> dict[str, tuple[str, ...]]:
    """Every name of a hosts file (lower case, without a trailing dot) with its addresses, as
    `hosts_addresses` gives them: the file is parsed once, not once per lookup."""
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or (address := literal(fields[0])) is None:
            continue
        for name in fields[1:]:
            table.setdefault(name.rstrip(".").lower(), []).append(address)
    return {name: tuple(dict.fromkeys(found)) for name, found in table.items()}


def literal(name: str) -> str | None:
    """`name` as an IP address (a scoped IPv6 one keeps its zone), or None when it is not one."""
    if ":" not in name and not name[:1].isdigit():  # neither IPv6 nor dotted IPv4: a name
        return None
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return None


def outcome_of(exc: BaseException) -> Outcome:
    """What a failed query of one type says about the name."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return "nxdomain"
    if isinstance(exc, dns.resolver.NoAnswer):
        return "nodata"
    # Timeouts, SERVFAIL or REFUSED from every nameserver, a send that failed: no answer.
    return "transient"


def verdict(v6: Outcome, v4: Outcome, routable: Callable[[str], bool]) -> tuple[str, ...]:
    """The addresses of a name from its AAAA and A outcomes, usable ones first and IPv6 before
    IPv4 among equals (RFC 6724 rules 1 and 6); socket.gaierror as getaddrinfo's when none.
    One type answering is enough: the other's failure does not hide what was found."""
    found = [*(v6 if isinstance(v6, tuple) else ()), *(v4 if isinstance(v4, tuple) else ())]
    if found:
        unique = list(dict.fromkeys(found))
        return tuple(sorted(unique, key=lambda a: not routable(a)))  # stable: v6 first
    if "nxdomain" in (v6, v4):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    if "transient" in (v6, v4):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    raise socket.gaierror(socket.EAI_NODATA, "No address associated with hostname")


def routable(address: str) -> bool:
    """Whether this host has a route to `address`: a UDP socket connects (no packet is sent),
    as glibc's getaddrinfo finds its source address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address, 9))
    except OSError:
        return False
    return True


def _special(name: str) -> tuple[str, ...] | None:
    """The answer to a name no nameserver is asked about, or None for any other."""
    if name == "invalid" or name.endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK
    return None


class _Watched:
    """A small file's text, read again when its inode, size or modification time changes;
    "" while it is missing or unreadable."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self.text = ""

    def changed(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            key = None
        else:
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._key and (key is not None or self.text == ""):
            return False
        self._key = key
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                self.text = f.read()
        except OSError:
            self.text = ""
        return True


class TargetResolver:
    """`per_tenant`: DNS lookups one tenant may have in flight (None: no bound, for a caller of
    its own, as the self-checks)."""

    def __init__(
        self,
        *,
        per_tenant: int | None = None,
        resolv_conf: str = RESOLV_CONF,
        hosts: str = HOSTS,
    ) -> None:
        self.bound = TenantBound(per_tenant) if per_tenant is not None else None
        self._conf_file = _Watched(resolv_conf)
        self._hosts_file = _Watched(hosts)
        self._hosts: dict[str, tuple[str, ...]] | None = None
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._lifetime_s = float(TIMEOUT_DEFAULT_S * ATTEMPTS_DEFAULT)

    async def resolve(self, hostname: str, tenant: str = "") -> tuple[str, ...]:
        """The name's addresses; socket.gaierror when it has none (module docstring)."""
        name = hostname.rstrip(".").lower()
        if (address := literal(name)) is not None:
            return (address,)
        if (special := _special(name)) is not None:
            return self._from_hosts(name) or special
        if found := self._from_hosts(name):
            return found
        if self.bound is None:
            return await self._ask(name)
        async with self.bound.slot(tenant):
            return await self._ask(name)

    def _from_hosts(self, name: str) -> tuple[str, ...]:
        if self._hosts_file.changed() or self._hosts is None:
            self._hosts = hosts_table(self._hosts_file.text)
        return self._hosts.get(name, ())

    async def _ask(self, name: str) -> tuple[str, ...]:
        resolver = self._configured()
        v6, v4 = await asyncio.gather(
            self._query(resolver, name, "AAAA"), self._query(resolver, name, "A")
        )
        return verdict(v6, v4, routable)

    def _configured(self) -> dns.asyncresolver.Resolver:
        if not self._conf_file.changed() and self._resolver is not None:
            return self._resolver
        conf = parse_resolv_conf(self._conf_file.text)
        resolver = dns.asyncresolver.Resolver(configure=False)
        # The search list, domain and ndots; without a file or a nameserver in it, glibc asks
        # the local host.
        with contextlib.suppress(dns.exception.DNSException):
            resolver.read_resolv_conf(self._conf_file.path)
        resolver.nameservers = list(conf.nameservers or (DEFAULT_NAMESERVER,))
        resolver.timeout = conf.timeout_s
        self._resolver, self._lifetime_s = resolver, conf.lifetime_s
        return resolver

    async def _query(self, resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> Outcome:
        try:
            answer = await resolver.resolve(
                name, rdtype, raise_on_no_answer=False, lifetime=self._lifetime_s, search=True
            )
        except (dns.exception.DNSException, OSError) as exc:
            return outcome_of(exc)
        if answer.rrset is None:
            return "nodata"
        wanted = dns.rdatatype.from_text(rdtype)
        return _addresses(r.to_text() for r in answer.rrset if r.rdtype == wanted) or "nodata"


def _addresses(texts: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(texts))
