"""Which monitors' outages are one mail-flow problem (controller.alerting.flows.related,
joins, same_server), what telling of one changes (material) and what a monitor's notice
becomes (tell): tables."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from controller.alerting import flows
from controller.alerting.flows import Dependent, Flow, Outage, Told
from controller.notify.texts import Kind

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
IMAP = POP3 = SUBMISSION = "mail.example.com"  # Postfix and Dovecot on one host
MX = "mx.example.com"
OTHER = "mail.other.test"
# The addresses the agents connected to: imap.example.com is mail.example.com's second name,
# mx.example.com has an address of its own; mail.other.test none known.
ADDRESSES = {
    "mail.example.com": ["192.0.2.10", "2001:db8::10"],
    "imap.example.com": ["2001:db8:0:0::10"],
    "mx.example.com": ["192.0.2.25"],
}

ID = {n: f"00000000-0000-4000-8000-00000000000{n}" for n in range(10)}


def dep(
    n: int,
    kind: str,
    send: str,
    mailbox: str | None = None,
    *,
    logs_in: bool = False,
    on: tuple[str, ...] = (),
) -> Dependent:
    ids = frozenset(ID[int(x[1:])] for x in on if x.startswith("#"))
    hosts = frozenset(x for x in on if not x.startswith("#"))
    return Dependent(n, ID[n], kind, send, mailbox, logs_in or mailbox is not None, ids, hosts)


def out(
    d: Dependent,
    kind: str = "refused",
    *,
    minutes: float = 0,
    countries: tuple[str, ...] = ("DE", "FR"),
    messages: tuple[str, ...] = (),
) -> Outage:
    return Outage(d, T0 + timedelta(minutes=minutes), kind, frozenset(countries), messages)


IMAPS = dep(1, "imap", IMAP)
POP3S = dep(2, "pop3", POP3)
SUBMIT = dep(3, "smtp", SUBMISSION, logs_in=True)
TRIP = dep(4, "roundtrip", SUBMISSION, IMAP)
MXD = dep(5, "smtp", MX)
ELSEWHERE = dep(6, "imap", OTHER)
SUBMIT_ELSEWHERE = dep(7, "smtp", "smtp.other.test", logs_in=True)
DECLARES_TRIP = dep(8, "imap", "imap.third.test", on=("#4",))
DECLARES_HOST = dep(9, "smtp", "relay.third.test", on=("mail.other.test",))
SECOND_NAME = dep(0, "imap", "imap.example.com")  # mail.example.com's address
TRIP_ELSEWHERE = dep(4, "roundtrip", "smtp.other.test", IMAP)  # sends elsewhere


def other_customer(d: Dependent) -> Dependent:
    return dataclasses.replace(d, customer_id=d.customer_id + 1)


MAILBOX_LEG = ("mailbox leg: connection refused by mail.example.com",)
SEND_LEG = ("send leg: 454 4.7.0 Temporary authentication failure",)


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        # same host and port
        (out(IMAPS), out(dep(0, "imap", IMAP)), "same server"),
        # IMAP and POP3 on one host, other ports and protocols: one server
        (out(IMAPS), out(POP3S), "same server"),
        # the submission on that host, whatever its cause and however late it starts
        (out(SUBMIT, "protocol", minutes=80 / 60), out(IMAPS), "same server"),
        (out(SUBMIT, "timeout", minutes=45), out(POP3S), "same server"),
        # a round trip's mailbox leg on the IMAP server
        (out(TRIP_ELSEWHERE, messages=MAILBOX_LEG), out(IMAPS), "same server"),
        # ... its send leg failing elsewhere is not the IMAP server's problem by the server
        (out(TRIP_ELSEWHERE, messages=("send leg: connection refused",)), out(IMAPS), None),
        # not delivered names no leg: both servers
        (out(TRIP_ELSEWHERE, "not_delivered", messages=("nf",)), out(IMAPS), "same server"),
        (out(TRIP, "not_delivered"), out(SUBMIT, "auth"), "same server"),
        # a round trip whose two legs are on one host: its send leg is that server too
        (out(TRIP, messages=("send leg: connection refused",)), out(IMAPS), "same server"),
        # two submissions on other servers whose logins fail the same way at once
        (
            out(SUBMIT, "temporary"),
            out(SUBMIT_ELSEWHERE, "temporary", minutes=2),
            "login at the same time",
        ),
        # ... not when they started long apart
        (out(SUBMIT, "temporary", minutes=6), out(SUBMIT_ELSEWHERE, "temporary"), None),
        (out(SUBMIT, "temporary"), out(SUBMIT_ELSEWHERE, "auth"), None),
        # ... a rejected password is the account's own
        (out(SUBMIT, "auth"), out(SUBMIT_ELSEWHERE, "auth"), None),
        # ... and a submission's login is no other server's IMAP problem
        (out(SUBMIT_ELSEWHERE, "temporary"), out(IMAPS), None),
        # an SMTP monitor with no login is no submission
        (out(MXD, "temporary"), out(SUBMIT_ELSEWHERE, "temporary"), None),
        # declared: a monitor, both ways; a host
        (out(DECLARES_TRIP), out(TRIP), "declared"),
        (out(TRIP), out(DECLARES_TRIP), "declared"),
        (out(DECLARES_HOST), out(ELSEWHERE), "declared"),
        (out(DECLARES_HOST), out(IMAPS), None),
        # other servers
        (out(IMAPS), out(ELSEWHERE), None),
        (out(MXD), out(IMAPS), None),
        (out(SECOND_NAME), out(IMAPS), None),  # no address known: by the name only
        # another customer of the organization: never, by the server, a declaration or a login
        (out(IMAPS), out(other_customer(dep(0, "imap", IMAP))), None),
        (out(other_customer(DECLARES_TRIP)), out(TRIP), None),
        (out(SUBMIT, "temporary"), out(other_customer(SUBMIT_ELSEWHERE), "temporary"), None),
    ],
)
def test_related(a: Outage, b: Outage, why: str | None) -> None:
    assert flows.related(a, b) == why
    assert flows.related(b, a) == why


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        # two names the agents connected to at one address (IPv6, written two ways)
        (out(SECOND_NAME), out(POP3S), "same server"),
        (out(SECOND_NAME), out(SUBMIT, "protocol", minutes=30), "same server"),
        # a host name that is an address is its own address
        (out(dep(0, "imap", "192.0.2.10")), out(IMAPS), "same server"),
        (out(dep(0, "imap", "[2001:db8::10]")), out(SECOND_NAME), "same server"),
        # other addresses, or none known
        (out(MXD), out(IMAPS), None),
        (out(ELSEWHERE), out(IMAPS), None),
        # a declared host that resolves to the failing server's address
        (out(dep(0, "smtp", "relay.third.test", on=("imap.example.com",))), out(POP3S), "declared"),
        # another customer's monitor on that address: never
        (out(other_customer(SECOND_NAME)), out(IMAPS), None),
    ],
)
def test_related_by_address(a: Outage, b: Outage, why: str | None) -> None:
    assert flows.related(a, b, ADDRESSES) == why
    assert flows.related(b, a, ADDRESSES) == why


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (IMAPS, POP3S, True),
        (SUBMIT, IMAPS, True),
        (TRIP_ELSEWHERE, POP3S, True),  # its mailbox leg
        (TRIP_ELSEWHERE, SUBMIT_ELSEWHERE, True),  # its send leg
        (SECOND_NAME, POP3S, True),  # by address
        (SECOND_NAME, other_customer(POP3S), False),
        (MXD, IMAPS, False),
        (DECLARES_HOST, ELSEWHERE, False),  # declared is no server of its own
    ],
)
def test_same_server(a: Dependent, b: Dependent, same: bool) -> None:
    """The monitors checking one server: what an outage of one may be grouped with."""
    assert flows.same_server(a, b, ADDRESSES) is same
    assert flows.same_server(b, a, ADDRESSES) is same


def flow(n: int, *outages: Outage, minutes: float = 0) -> Flow:
    return Flow(n, T0 + timedelta(minutes=minutes), outages)


def test_an_outage_joins_the_oldest_related_open_flow_incident() -> None:
    older = flow(1, out(TRIP, "not_delivered"), minutes=-10)
    newer = flow(2, out(dep(0, "imap", IMAP)), minutes=-1)
    unrelated = flow(3, out(ELSEWHERE), minutes=-20)
    assert flows.joins(out(IMAPS), [newer, unrelated, older]) == flows.Joined(
        older, "same server", (newer,)
    )
    assert flows.joins(out(IMAPS), [unrelated]) is None
    assert flows.joins(out(IMAPS), []) is None
    # its own earlier outage (still open in the flow incident) relates it to nothing
    assert flows.joins(out(IMAPS), [flow(4, out(IMAPS))]) is None


def test_an_outage_bridging_two_flow_incidents_merges_the_untold_one() -> None:
    """mail.example.com's POP3S opened its own before its second name's IMAPS had an address
    known; an outage of imap.example.com relates them by the address: the younger merges,
    unless its people were told of it already."""
    imaps = flow(1, out(SECOND_NAME), minutes=-2)
    pop3s = flow(2, out(POP3S), minutes=-1)
    told = Flow(3, T0, (out(dep(0, "pop3", POP3)),), notified=True)
    joined = flows.joins(out(dep(9, "smtp", "imap.example.com")), [pop3s, imaps, told], ADDRESSES)
    assert joined == flows.Joined(imaps, "same server", (pop3s,))


@pytest.mark.parametrize(
    ("monitors", "countries", "causes", "outage", "changes"),
    [
        ({1}, {"DE", "FR"}, {"refused"}, out(IMAPS), []),
        ({1}, {"DE", "FR"}, {"refused"}, out(POP3S), ["new monitor"]),
        ({1, 2}, {"DE"}, {"refused"}, out(POP3S), ["new countries"]),
        ({1, 2}, {"DE", "FR"}, {"refused"}, out(POP3S, "timeout"), ["new cause"]),
        (set(), set(), set(), out(TRIP, "auth"), ["new monitor", "new countries", "new cause"]),
    ],
)
def test_material_changes(
    monitors: set[int], countries: set[str], causes: set[str], outage: Outage, changes: list[str]
) -> None:
    assert flows.material(outage, monitors, countries, causes) == changes


@pytest.mark.parametrize(
    ("kind", "members", "notified", "changes", "still_open", "due", "told"),
    [
        # an outage opening: told in the flow incident's next notice, unless nothing changes
        ("down", 1, False, ["new monitor"], 0, False, flows.LATER),
        ("down", 2, False, [], 0, False, flows.LATER),
        ("down", 3, True, ["new monitor"], 0, False, flows.LATER),
        ("down", 3, True, [], 0, False, flows.SILENT),
        # one monitor: its own reminders and end, as before flows
        ("reminder", 1, True, [], 0, True, flows.AS_MONITOR),
        ("recovered", 1, True, [], 0, False, flows.AS_MONITOR),
        # ... none when nobody was told it began (it ended within the group wait)
        ("recovered", 1, False, [], 0, False, flows.SILENT),
        ("reminder", 1, False, [], 0, True, flows.SILENT),
        # reminders: once per period for the flow incident, whatever its monitors
        ("reminder", 4, True, [], 0, True, Told("flow", "reminder")),
        ("reminder", 4, True, [], 0, False, flows.SILENT),
        # an end: only the last open outage's, only when someone was told
        ("recovered", 4, True, [], 2, False, flows.SILENT),
        ("recovered", 4, True, [], 0, False, Told("flow", "recovered")),
        ("no_data", 4, True, [], 0, False, Told("flow", "no_data")),
        ("recovered", 4, False, [], 0, False, flows.SILENT),
    ],
)
def test_tell(
    kind: Kind,
    members: int,
    notified: bool,
    changes: list[str],
    still_open: int,
    due: bool,
    told: Told,
) -> None:
    got = flows.tell(
        kind,
        members=members,
        flow_notified=notified,
        changes=changes,
        still_open=still_open,
        reminder_due=due,
    )
    assert got == told


@pytest.mark.parametrize(
    ("members", "notified", "told"),
    [
        (1, False, flows.AS_MONITOR),  # one monitor: its own down notice
        (4, False, Told("flow", "down")),
        (4, True, Told("flow", "changed")),
        (1, True, Told("flow", "changed")),  # a cause or country it had not told
    ],
)
def test_when_due(members: int, notified: bool, told: Told) -> None:
    assert flows.when_due(members=members, notified=notified) == told


WAIT = flows.Timing(timedelta(seconds=30), timedelta(minutes=5))


@pytest.mark.parametrize(
    ("notified", "last", "due_at", "expected"),
    [
        (False, None, None, T0 + timedelta(seconds=30)),  # the first notice: group wait
        (False, None, T0 + timedelta(seconds=10), T0 + timedelta(seconds=10)),  # set already
        (True, T0 - timedelta(minutes=1), None, T0 + timedelta(minutes=4)),  # group interval
        (True, T0 - timedelta(minutes=9), None, T0),  # long past: now
    ],
)
def test_due(
    notified: bool, last: datetime | None, due_at: datetime | None, expected: datetime
) -> None:
    got = flows.due(T0, WAIT, notified=notified, last_notified_at=last, due_at=due_at)
    assert got == expected


def test_dovecot_down_is_one_problem() -> None:
    """IMAPS, POP3S, the round trip's mailbox leg and the submission's SASL login, all failing
    as Dovecot stops, join the flow incident the first of them opened: the submission though
    Postfix noticed the missing SASL socket on its next round, with a `protocol` cause."""
    first = out(IMAPS)
    open_ = [flow(1, first)]
    for later in (
        out(TRIP_ELSEWHERE, messages=MAILBOX_LEG, minutes=1),
        out(SUBMIT, "protocol", minutes=80 / 60),
        out(POP3S, minutes=2),
    ):
        found = flows.joins(later, open_)
        assert found is not None and not found.merged, later
        open_ = [Flow(1, T0, (*open_[0].open, later))]
    assert len(open_[0].open) == 4


def test_addresses_are_read_only_for_flow_incidents_the_names_do_not_relate() -> None:
    """An outage on mail.example.com needs no address to join IMAPS's flow incident; only
    the other servers' outages (whose names differ) could be related by an address."""
    imaps = flow(1, out(IMAPS), minutes=-2)
    other = flow(2, out(SECOND_NAME), out(ELSEWHERE), minutes=-1)
    assert flows.by_address(out(POP3S), [imaps]) == []
    assert flows.by_address(out(POP3S), [imaps, other]) == list(other.open)
    assert flows.by_address(out(POP3S), []) == []
