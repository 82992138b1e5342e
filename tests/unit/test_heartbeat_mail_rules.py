"""Heartbeat mail read from a mailbox (controller/sidechecks/heartbeat_mail, its wire), as
tables: from when a round's look reads, which heartbeats a round asks for, what of an agent's
answer is kept, the bounds of what an agent sends, and what the looks cost the round's logins
and API calls."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import msgspec
import pytest

from controller.monitors.store import RoundState, WatchedMonitor
from controller.scheduling.api_calls_store import need
from controller.secrets.seal_keys import CountryKeys
from controller.settings import SchedulingSettings
from controller.sidechecks.frame import Arrived
from controller.sidechecks.heartbeat_mail import rules
from controller.sidechecks.heartbeat_mail.rules import Reader
from shared.arrivals import TEXT_MAX, Arrival
from shared.gmail_units import UNITS
from shared.messages import FEATURE_API_MAILBOX, FEATURE_GMAIL
from shared.sealing import generate
from shared.sidechecks.heartbeat_mail import (
    ARRIVALS_MAX,
    GMAIL_LOOK_UNITS,
    GRAPH_LOOK_CALLS,
    LOOKS_MAX,
    NEWEST,
    HeartbeatMail,
    HeartbeatMailAsk,
    Look,
    Looked,
    bounded,
)
from testkit.scheduling import Readers, round_planner
from tests.unit.test_side_check_asks import BOX, IMAP, monitor

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def reader(n: int, every: int = 10, grace: int = 2) -> Reader:
    return Reader(f"00000000-0000-4000-8000-{n:012d}", "erp@example.org", "nightly", every, grace)


@pytest.mark.parametrize(
    ("every", "grace", "back"),
    [(10, 2, 12), (60, 0, 60), (1440, 30, 1470), (31 * 1440, 7 * 1440, 38 * 1440)],
)
def test_a_look_reads_one_window_back(every: int, grace: int, back: int) -> None:
    assert rules.since(reader(1, every, grace), AT) == AT - timedelta(minutes=back)


@pytest.mark.parametrize(("readers", "asked"), [(0, []), (1, [1]), (6, [1, 2, 3, 4])])
def test_a_round_asks_for_its_mailboxs_heartbeats_at_most_looks_max(
    readers: int, asked: list[int]
) -> None:
    got = rules.ask([reader(n) for n in range(readers, 0, -1)], AT)
    if not asked:
        assert got is None
        return
    assert got is not None and len(got.looks) <= LOOKS_MAX
    assert [look.monitor_id for look in got.looks] == [reader(n).heartbeat_id for n in asked]
    assert {(look.sender, look.subject, look.since) for look in got.looks} == {
        ("erp@example.org", "nightly", "2026-03-01T11:48:00.000Z")
    }
    assert rules.reads(got) == len(asked)


def _looked(n: int) -> Looked:
    return Looked(monitor_id=reader(n).heartbeat_id)


@pytest.mark.parametrize(
    ("asked", "answered", "kept"),
    [
        ([1, 2], [1, 2], [1, 2]),
        ([1, 2], [1, 3], [1]),  # a heartbeat its job did not ask for: not believed
        ([1], [], []),
        (None, [1], []),  # no ask echoed: nothing believed
    ],
)
def test_an_answer_is_kept_only_for_the_heartbeats_asked(
    asked: list[int] | None, answered: list[int], kept: list[int]
) -> None:
    ask = (
        None
        if asked is None
        else HeartbeatMailAsk(
            looks=[Look(monitor_id=reader(n).heartbeat_id, since="x") for n in asked]
        )
    )
    facts = HeartbeatMail(looks=[_looked(n) for n in answered])
    got = rules.within_ask(ask, facts)
    assert [look.monitor_id for look in got.looks] == [reader(n).heartbeat_id for n in kept]
    assert (got is facts) == (kept == answered)


def _arrival(subject: str = "nightly") -> Arrival:
    return Arrival(
        arrival_id="a",
        monitor_id="m",
        country="DE",
        agent_id="DE-1",
        arrived_at="2026-03-01T11:59:00.000Z",
        peer="imap.example.org",
        listener="mailbox",
        subject=subject,
    )


@pytest.mark.parametrize(
    ("looks", "arrivals", "subject", "truncated"),
    [
        (1, 1, "nightly", False),
        (LOOKS_MAX + 1, 1, "nightly", True),
        (1, ARRIVALS_MAX + 1, "nightly", True),
        (1, 1, "x" * (TEXT_MAX + 1), True),
    ],
)
def test_what_an_agent_answers_is_bounded(
    looks: int, arrivals: int, subject: str, truncated: bool
) -> None:
    facts = HeartbeatMail(
        looks=[
            Looked(monitor_id=reader(n).heartbeat_id, arrivals=[_arrival(subject)] * arrivals)
            for n in range(looks)
        ]
    )
    got = bounded(facts)
    assert got.truncated == truncated and (got is facts) == (not truncated)
    assert len(got.looks) <= LOOKS_MAX
    assert all(len(look.arrivals) <= ARRIVALS_MAX for look in got.looks)
    assert all(len(a.subject) <= TEXT_MAX for look in got.looks for a in look.arrivals)


def test_a_looks_api_cost_is_what_the_agent_may_spend() -> None:
    assert UNITS["messages.list"] + NEWEST * UNITS["messages.get"] == GMAIL_LOOK_UNITS
    assert GRAPH_LOOK_CALLS == 4


def test_the_looks_count_as_logins_and_api_calls_of_the_round(tmp_path: Path) -> None:
    """An IMAP monitor read by two heartbeats logs in three times a round (the login cap counts
    them); a Gmail mailbox check read by one reserves the look's units besides its own."""
    import pathlib

    keys_dir = pathlib.Path(str(tmp_path))
    for cc in ("DE", "FR"):
        (keys_dir / f"{cc}.pub").write_text(generate()[1])
    keys = CountryKeys(str(keys_dir))
    readers = Readers({7: [reader(1), reader(2)]})
    planner = round_planner(BOX, keys, readers=readers)
    rounds = RoundState(
        countries=None, since=AT, mail_dns_at=AT, login_failures=0, login_retry_at=None
    )
    live = frozenset({"DE", "FR"})
    imap = msgspec.structs.replace(monitor("imap", IMAP), next_due_at=AT)
    plan = planner.round(WatchedMonitor(imap, rounds), AT + timedelta(seconds=1), live)
    assert len(plan.jobs) + len(plan.deferred) == 2 and plan.legs == 3
    alone = round_planner(BOX, keys).round(WatchedMonitor(imap, rounds), AT, live)
    assert alone.legs == 1

    gmail = {**IMAP, "api": "gmail"}
    box = msgspec.structs.replace(monitor("imap", gmail), next_due_at=AT)
    planner = round_planner(BOX, keys, readers=Readers({7: [reader(1)]}))
    apis = {FEATURE_GMAIL: live, FEATURE_API_MAILBOX: live}
    plan = planner.round(
        WatchedMonitor(box, rounds), AT + timedelta(seconds=1), live, apis_live=apis
    )
    assert plan.jobs, plan.missed
    settings = SchedulingSettings()
    assert sorted((c.part, need(c, settings)) for c in plan.api_charges) == [
        ("check", UNITS["users.getProfile"] + UNITS["labels.get"]),
        ("look", GMAIL_LOOK_UNITS),
    ]


def _arrived(country: str, *looks: Looked) -> Arrived[HeartbeatMail]:
    return Arrived("job", UUID(int=7), country, AT, AT, HeartbeatMail(looks=list(looks)))


def test_a_read_arrival_is_its_heartbeats_with_an_id_scoped_to_it() -> None:
    """The same message read from two countries is one arrival (one id); the same id an agent
    gives for two heartbeats is two arrivals, so none can take another monitor's place; each is
    the look's heartbeat's, in the result's country, listener `mailbox`."""
    one, two = reader(1).heartbeat_id, reader(2).heartbeat_id
    sent = msgspec.structs.replace(_arrival(), monitor_id="someone else's", country="XX")
    de = rules.arrivals(_arrived("DE", Looked(monitor_id=one, arrivals=[sent])))
    fr = rules.arrivals(_arrived("FR", Looked(monitor_id=one, arrivals=[sent])))
    both = rules.arrivals(
        _arrived("DE", *(Looked(monitor_id=m, arrivals=[sent]) for m in (one, two)))
    )
    assert [a.arrival_id for a in de] == [a.arrival_id for a in fr]
    assert len({a.arrival_id for a in both}) == 2
    assert {(a.monitor_id, a.country, a.listener) for a in both} == {
        (one, "DE", "mailbox"),
        (two, "DE", "mailbox"),
    }
    assert rules.arrivals(_arrived("DE", Looked(monitor_id="not-a-uuid", arrivals=[sent]))) == []
