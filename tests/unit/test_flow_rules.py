"""Which monitors' outages are one mail-flow problem (controller.alerting.flows.related,
joins), what telling of one changes (material) and what a monitor's notice becomes (tell):
tables."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from controller.alerting import flows
from controller.alerting.flows import Dependent, Flow, Outage, Told

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
IMAP = ("mail.example.com", 993)
POP3 = ("mail.example.com", 995)
SUBMISSION = ("mail.example.com", 587)
MX = ("mx.example.com", 25)
OTHER = ("mail.other.test", 993)

ID = {n: f"00000000-0000-4000-8000-00000000000{n}" for n in range(10)}


def dep(
    n: int,
    kind: str,
    send: tuple[str, int],
    mailbox: tuple[str, int] | None = None,
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
SUBMIT_ELSEWHERE = dep(7, "smtp", ("smtp.other.test", 587), logs_in=True)
DECLARES_TRIP = dep(8, "imap", ("imap.third.test", 993), on=("#4",))
DECLARES_HOST = dep(9, "smtp", ("relay.third.test", 25), on=("mail.other.test",))


def other_customer(d: Dependent) -> Dependent:
    return dataclasses.replace(d, customer_id=d.customer_id + 1)


MAILBOX_LEG = ("mailbox leg: connection refused by mail.example.com",)
SEND_LEG = ("send leg: 454 4.7.0 Temporary authentication failure",)


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        # same host and port
        (out(IMAPS), out(dep(0, "imap", IMAP)), "same server"),
        # a round trip's mailbox leg on the IMAP server
        (out(TRIP, messages=MAILBOX_LEG), out(IMAPS), "same server"),
        # ... its send leg failing is not the IMAP server's problem by the server
        (out(TRIP, "refused", messages=("send leg: connection refused",)), out(IMAPS), None),
        # not delivered names no leg: both servers
        (out(TRIP, "not_delivered", messages=("not found",)), out(IMAPS), "same server"),
        (out(TRIP, "not_delivered"), out(SUBMIT, "auth"), "same server"),
        # IMAP and POP3 on one host, other ports, both refused: unrelated by the server alone
        (out(IMAPS), out(POP3S), None),
        # the submission's SASL login fails with Dovecot down at the same time, on its host
        (out(SUBMIT, "temporary", minutes=1), out(IMAPS), "login at the same time"),
        (out(IMAPS), out(SUBMIT, "auth", minutes=-4), "login at the same time"),
        # ... not when it started long apart
        (out(SUBMIT, "temporary", minutes=6), out(IMAPS), None),
        # ... not when the submission fails otherwise
        (out(SUBMIT, "timeout", minutes=1), out(IMAPS), None),
        # two submissions on other hosts whose logins fail the same way at once
        (
            out(SUBMIT, "temporary"),
            out(SUBMIT_ELSEWHERE, "temporary", minutes=2),
            "login at the same time",
        ),
        (out(SUBMIT, "temporary"), out(SUBMIT_ELSEWHERE, "auth"), None),
        # ... a rejected password is the account's own
        (out(SUBMIT, "auth"), out(SUBMIT_ELSEWHERE, "auth"), None),
        # a round trip's send leg login, with the IMAP server down on its host
        (out(TRIP, "temporary", messages=SEND_LEG), out(IMAPS), "login at the same time"),
        # an SMTP monitor with no login is no submission
        (out(MXD, "temporary"), out(dep(0, "smtp", ("mx.example.com", 587))), None),
        # declared: a monitor, both ways; a host
        (out(DECLARES_TRIP), out(TRIP), "declared"),
        (out(TRIP), out(DECLARES_TRIP), "declared"),
        (out(DECLARES_HOST), out(ELSEWHERE), "declared"),
        (out(DECLARES_HOST), out(IMAPS), None),
        # other servers
        (out(IMAPS), out(ELSEWHERE), None),
        (out(MXD), out(IMAPS), None),
        # another customer of the organization: never, by the server, a declaration or a login
        (out(IMAPS), out(other_customer(dep(0, "imap", IMAP))), None),
        (out(other_customer(DECLARES_TRIP)), out(TRIP), None),
        (out(SUBMIT, "temporary"), out(other_customer(SUBMIT_ELSEWHERE), "temporary"), None),
    ],
)
def test_related(a: Outage, b: Outage, why: str | None) -> None:
    assert flows.related(a, b) == why
    assert flows.related(b, a) == why


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
    """POP3S opened its own before the submission's login failed; the submission relates it
    to IMAPS's: the younger merges, unless its people were told of it already."""
    imaps = flow(1, out(IMAPS), minutes=-2)
    pop3s = flow(2, out(POP3S), minutes=-1)
    told = Flow(3, T0, (out(dep(0, "pop3", POP3)),), notified=True)
    joined = flows.joins(out(SUBMIT, "temporary"), [pop3s, imaps, told])
    assert joined == flows.Joined(imaps, "login at the same time", (pop3s,))


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
    kind: flows.Kind,
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
    as Dovecot stops, join the flow incident the first of them opened."""
    first = out(IMAPS)
    open_ = [flow(1, first)]
    for later in (
        out(TRIP, messages=MAILBOX_LEG, minutes=1),
        out(SUBMIT, "temporary", minutes=1),
        out(POP3S, minutes=2),
    ):
        found = flows.joins(later, open_)
        assert found is not None and not found.merged, later
        open_ = [Flow(1, T0, (*open_[0].open, later))]
    assert len(open_[0].open) == 4
