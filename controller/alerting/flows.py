"""Incidents as mail-flow problems: which monitors' outages are one problem, and what the
people told of it hear. Pure rules, no I/O (the store is controller.alerting.flow_store).

A monitor's own outage (a row of `incidents`: its history, uptime and status page) joins one
**flow incident** of its organization, the problem people are told of. An outage that opens
**joins** the oldest open flow incident it is related to, else opens one of its own; younger related
flow incidents nobody was told of yet merge into that one (the outage bridged them). Outages of
two customers of the organization are never related: each customer's addresses, channels and
status page hear of its own monitors only. Two outages of one customer are related (`related`)
when:

- **same server** (`same_server`, `same_host`): a host one's failures point to is one the other's
  point to, whatever the ports and protocols (Dovecot's IMAPS and POP3S, Postfix's submission
  and SMTPS on one host are one server), or two host names the agents connected to at one
  address (`Addresses`: the addresses the monitors' recent results connected to, by host name;
  a host name that is an IP address is its own). A round trip's failures point to the leg that
  failed (`send leg:` / `mailbox leg:` in the agents' messages), or to both hosts when the
  message names none (not delivered); any other monitor's to its own host. While a flow
  incident holds an open outage of a server, any outage on that server joins it, whatever its
  cause and however late in the outage it starts (a submission whose SASL login fails 80 s
  after Dovecot stopped, with a `protocol` cause);
- **declared**: one monitor declares the other (`dependsOn`: a monitor id), or a host the
  other's failing servers are on (`dependsOn`: a host name, compared as above): what the server
  rule cannot see (a relay in front of the MX, a SASL backend on another address);
- **a login failing the same way at the same time**: two submissions on other servers whose
  logins both fail with a temporary error (`temporary` on an SMTP monitor that logs in, or on
  a round trip's send leg: a SASL backend they share, down), starting within `SAME_TIME` of
  each other.

Notices (`tell`, `when_due`, `due`, `first_now`): an outage opening wants the flow incident's
next notice, its first as soon as its monitors' siblings (the same host name, `dependsOn`) are
judged (each checked at once by a confirmation round, `controller.scheduling.confirm`), at
most `group_wait` after the first outage (so the others join it), or, for a material change (a
monitor, countries or a cause nobody was told of), `group_interval` after the notice before;
the alerter's pass sends it when due. Its first notice is the monitor's own (its texts and dedupe
keys) while it has one monitor, else the flow incident's for all of them; changes meanwhile are
told together. Reminders once per reminder period whatever the number of outages; one
`recovered` (or `no_data`) when its last open outage ends, none when nobody was told it began.
Each goes to every recipient of its monitors once (the dedupe key is the flow incident's, made
per address and channel).
"""

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from controller.notify.texts import Kind
from controller.settings import AlertingSettings
from shared.messages import RoundTripConfig, SmtpConfig

if TYPE_CHECKING:  # the type only: the rules read no store
    from controller.monitors.store import Monitor

SAME_TIME = timedelta(minutes=5)
# The error kinds of a submission whose login failed (a SASL backend down answers 4xx).
LOGIN_KINDS = frozenset({"auth", "temporary"})
# The way two submissions on other servers fail at once when they share a SASL backend that is
# down (a rejected password is the account's own: no shared cause).
BACKEND_DOWN = "temporary"
SEND_LEG, MAILBOX_LEG = "send leg:", "mailbox leg:"

Server = str  # a host name (`host`): every port and protocol on it is one server
Relation = Literal["same server", "declared", "login at the same time"]
# The addresses (`address`) the agents connected to for each host name (`host`), from the
# monitors' recent results: two names sharing one are one server.
Addresses = Mapping[str, Collection[str]]
NO_ADDRESSES: Addresses = {}


def host(name: str) -> str:
    """A host name as compared: lower case, no trailing dot."""
    return name.strip().rstrip(".").lower()


def address(text: str) -> str | None:
    """An IP address as compared (its compressed form, an IPv4-mapped IPv6 address as IPv4),
    None when `text` is none."""
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _addresses(name: Server, addresses: Addresses) -> set[str]:
    found = {a for a in map(address, addresses.get(name, ())) if a is not None}
    if (own := address(name)) is not None:
        found.add(own)
    return found


def same_host(a: Server, b: Server, addresses: Addresses = NO_ADDRESSES) -> bool:
    """Whether the host names `a` and `b` (`host`) are one server: the same name, or names the
    agents connected to at one address."""
    return a == b or not _addresses(a, addresses).isdisjoint(_addresses(b, addresses))


def _any_same(a: Iterable[Server], b: Iterable[Server], addresses: Addresses) -> bool:
    others = tuple(b)
    return any(same_host(x, y, addresses) for x in a for y in others)


@dataclass(frozen=True, slots=True)
class Dependent:
    """A monitor as the grouping reads it: its servers, by leg for a round trip."""

    monitor_id: int
    public_id: str
    kind: str  # the monitor type
    send: Server  # its host (a round trip's send leg)
    mailbox: Server | None = None  # a round trip's mailbox leg
    logs_in: bool = False  # an SMTP monitor with a login, or a round trip (its send leg)
    on_monitors: frozenset[str] = frozenset()  # `dependsOn`: monitor public ids
    on_hosts: frozenset[str] = frozenset()  # `dependsOn`: host names (`host`)
    customer_id: int = 0  # the organization's customer it belongs to

    @classmethod
    def of(cls, monitor: "Monitor") -> "Dependent":
        config = monitor.config
        send = host(monitor.hostname)
        declared = monitor.depends_on or []
        on_hosts = frozenset(host(d) for d in declared if not _is_id(d))
        on_monitors = frozenset(d.lower() for d in declared if _is_id(d))
        if isinstance(config, RoundTripConfig):
            mailbox = host(config.receive.hostname)
            return cls(
                monitor.id,
                str(monitor.public_id),
                monitor.type,
                send,
                mailbox,
                True,
                on_monitors,
                on_hosts,
                monitor.customer_id,
            )
        logs_in = isinstance(config, SmtpConfig) and config.auth is not None
        return cls(
            monitor.id,
            str(monitor.public_id),
            monitor.type,
            send,
            None,
            logs_in,
            on_monitors,
            on_hosts,
            monitor.customer_id,
        )

    @property
    def servers(self) -> frozenset[Server]:
        """Every server it checks (a round trip's two legs)."""
        return frozenset({self.send} if self.mailbox is None else {self.send, self.mailbox})


def same_server(a: Dependent, b: Dependent, addresses: Addresses = NO_ADDRESSES) -> bool:
    """Whether `a` and `b` check one server (`same_host`: any port and protocol, a round trip
    by either leg), and are one customer's (another customer's monitors are never grouped with
    them): the monitors an outage of one may be grouped with."""
    return a.customer_id == b.customer_id and _any_same(a.servers, b.servers, addresses)


def by_host(found: Iterable[tuple[Dependent, Collection[str]]]) -> dict[Server, set[str]]:
    """`Addresses` from the addresses each monitor's recent results connected to: a round
    trip's are left out (its result names one address for two legs)."""
    hosts: dict[Server, set[str]] = {}
    for d, seen in found:
        if d.mailbox is None:
            hosts.setdefault(d.send, set()).update(seen)
    return hosts


def _is_id(declared: str) -> bool:
    """A `dependsOn` entry naming a monitor (its public id, a UUID) rather than a host."""
    try:
        UUID(declared)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Outage:
    """A monitor's open outage as the grouping reads it."""

    monitor: Dependent
    started_at: datetime
    cause_kind: str
    countries: frozenset[str]
    messages: tuple[str, ...] = ()  # the agents' messages of the round that opened it

    @property
    def servers(self) -> frozenset[Server]:
        """The servers its failures point to."""
        m = self.monitor
        if m.mailbox is None:
            return frozenset({m.send})
        send = any(msg.startswith(SEND_LEG) for msg in self.messages)
        mailbox = any(msg.startswith(MAILBOX_LEG) for msg in self.messages)
        if send == mailbox:  # neither leg named (not delivered), or both
            return frozenset({m.send, m.mailbox})
        return frozenset({m.send if send else m.mailbox})

    @property
    def login_failed(self) -> bool:
        m = self.monitor
        if self.cause_kind not in LOGIN_KINDS:
            return False
        if m.mailbox is not None:
            return m.send in self.servers
        return m.kind == "smtp" and m.logs_in


def _declares(a: Outage, b: Outage, addresses: Addresses) -> bool:
    on = a.monitor
    return b.monitor.public_id in on.on_monitors or _any_same(on.on_hosts, b.servers, addresses)


def related(a: Outage, b: Outage, addresses: Addresses = NO_ADDRESSES) -> Relation | None:
    """Why `a` and `b` are one mail-flow problem, or None (always for two customers')."""
    if a.monitor.customer_id != b.monitor.customer_id:
        return None
    if _any_same(a.servers, b.servers, addresses):
        return "same server"
    if _declares(a, b, addresses) or _declares(b, a, addresses):
        return "declared"
    if (
        abs(a.started_at - b.started_at) <= SAME_TIME
        and a.login_failed
        and b.login_failed
        and a.cause_kind == b.cause_kind == BACKEND_DOWN
    ):
        return "login at the same time"
    return None


@dataclass(frozen=True, slots=True)
class Flow:
    """An open flow incident: its outages still open, and what it has touched so far."""

    id: int
    opened_at: datetime
    open: tuple[Outage, ...]
    monitors: frozenset[int] = frozenset()  # the monitors its people were told of
    countries: frozenset[str] = frozenset()  # the countries they were told of
    cause_kinds: frozenset[str] = frozenset()  # the causes they were told of
    notified: bool = False  # its first notice went out


def _relation(outage: Outage, flow: Flow, addresses: Addresses) -> Relation | None:
    for other in flow.open:
        if other.monitor.monitor_id != outage.monitor.monitor_id:
            why = related(outage, other, addresses)
            if why is not None:
                return why
    return None


def by_address(outage: Outage, flows: Iterable[Flow]) -> list[Outage]:
    """The open outages of `flows` whose flow incident `outage` is not related to by the host
    names alone: those only the addresses their names were found at could relate (none: no
    address needs reading)."""
    return [o for f in flows if _relation(outage, f, NO_ADDRESSES) is None for o in f.open]


@dataclass(frozen=True, slots=True)
class Joined:
    """The flow incident an outage joins, why, and the younger ones it is related to that
    nobody was told of yet: they merge into it (the outage bridges them)."""

    flow: Flow
    why: Relation
    merged: tuple[Flow, ...] = ()


def joins(
    outage: Outage, flows: Iterable[Flow], addresses: Addresses = NO_ADDRESSES
) -> Joined | None:
    """The oldest open flow incident `outage` is related to (to one of its open outages), and
    why; None: it opens one of its own."""
    found = [
        (f, why)
        for f in sorted(flows, key=lambda f: (f.opened_at, f.id))
        if (why := _relation(outage, f, addresses)) is not None
    ]
    if not found:
        return None
    (oldest, why), rest = found[0], found[1:]
    return Joined(oldest, why, tuple(f for f, _ in rest if not f.notified))


def material(
    outage: Outage,
    monitors: Collection[int],
    countries: Collection[str],
    cause_kinds: Collection[str],
) -> list[str]:
    """What telling of `outage` changes in a flow incident whose people were told of
    `monitors`, `countries` and `cause_kinds` (empty: nothing they must hear): a new monitor,
    new countries, a new cause."""
    changes = []
    if outage.monitor.monitor_id not in monitors:
        changes.append("new monitor")
    if set(outage.countries) - set(countries):
        changes.append("new countries")
    if outage.cause_kind not in cause_kinds:
        changes.append("new cause")
    return changes


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a flow incident's notices wait for more outages to join them: its first
    `group_wait` at most (INCIDENT_GROUP_WAIT_SECONDS; sooner when `first_now`), a change at
    least `group_interval` after the notice before it (INCIDENT_GROUP_INTERVAL_SECONDS), as
    Alertmanager groups alerts."""

    group_wait: timedelta = timedelta()
    group_interval: timedelta = timedelta()

    @classmethod
    def of(cls, alerting: AlertingSettings) -> "Timing":
        return cls(
            timedelta(seconds=alerting.incident_group_wait_seconds),
            timedelta(seconds=alerting.incident_group_interval_seconds),
        )


def due(
    now: datetime,
    timing: Timing,
    *,
    notified: bool,
    last_notified_at: datetime | None,
    due_at: datetime | None,
) -> datetime:
    """When the flow incident's next notice goes, once an outage wants one: the time already
    set, else its first `group_wait` from now, else a change `group_interval` after the last
    notice (now, when that is past)."""
    if due_at is not None:
        return due_at
    if not notified or last_notified_at is None:
        return now + timing.group_wait
    return max(now, last_notified_at + timing.group_interval)


def first_now(*, notified: bool, due_at: datetime | None, now: datetime, unsettled: int) -> bool:
    """Whether a flow incident's first notice goes `now`, before its `group_wait` is over: its
    monitors' siblings (the same host name, `dependsOn`, a host name at one of their addresses)
    are all judged (`unsettled`: how many are still being checked,
    `controller.scheduling.confirm_store.unsettled`), so it says which are down. The
    `group_wait` bounds the wait for them; a change after it waits `group_interval`."""
    return not notified and due_at is not None and now < due_at and unsettled == 0


Say = Literal["as_monitor", "flow", "later", "silent"]


@dataclass(frozen=True, slots=True)
class Told:
    """What a monitor's notice becomes: `as_monitor` (sent as that outage's own, as before
    flows), `flow` (the flow incident's notice of `kind`, for all its monitors), `later` (the
    flow incident's next notice, when `due`, tells of it), `silent`."""

    say: Say
    kind: str = ""  # down, changed, reminder, recovered, no_data


AS_MONITOR = Told("as_monitor")
LATER = Told("later")
SILENT = Told("silent")


def tell(
    kind: Kind,
    *,
    members: int,
    flow_notified: bool,
    changes: Sequence[str] = (),
    still_open: int = 0,
    reminder_due: bool = False,
) -> Told:
    """What an outage's notice of `kind` (as `judge` wants it) becomes in its flow incident of
    `members` monitors (this one's included). `flow_notified`: the flow incident's first
    notice went out; `changes`: what telling of this outage changes (`material`, for `down`);
    `still_open`: the flow's other outages still open (for an end); `reminder_due`: the flow
    incident was last told at least a reminder period ago."""
    if kind == "down":
        return LATER if not flow_notified or changes else SILENT
    if not flow_notified:
        return SILENT  # nobody was told it began
    if kind == "reminder":
        if members <= 1:
            return AS_MONITOR
        return Told("flow", "reminder") if reminder_due else SILENT
    # recovered / no_data: the flow incident ends with its last open outage
    if members <= 1:
        return AS_MONITOR
    return SILENT if still_open else Told("flow", kind)


def when_due(*, members: int, notified: bool) -> Told:
    """The flow incident's notice when it is due: its first (`down`: the monitor's own while
    it has one monitor), or a change."""
    if notified:
        return Told("flow", "changed")
    return AS_MONITOR if members <= 1 else Told("flow", "down")
