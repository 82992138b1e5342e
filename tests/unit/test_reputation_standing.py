"""Where a name stands on a list in a country (controller.sidechecks.blocklists.standing_rules),
as a table: a healthy list's answer is listed or not listed, an unhealthy list's is
`list_unhealthy` whatever it says, no answer or no known health is `unknown` (the monitor's own
failed lookup saying why); a cell is dated by the monitor's own round, never by the shared
answer; a listing says its codes and the list's TXT text; a name's lists are those of its kind,
its sources and countries from the rounds, the lists' test entries left out."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.sidechecks.blocklists.rules import KNOWN, BlockList, ListHealth, Listing, read
from controller.sidechecks.blocklists.standing_rules import Own, Seen, cell, reason, standing

T0 = datetime(2026, 5, 1, tzinfo=UTC)
RBL = BlockList("rbl.example.net", "ip", "RBL", delist="https://x/{name}")
DBL = KNOWN["dbl.spamhaus.org"]
HEALTHY = ListHealth("healthy")


@pytest.mark.parametrize(
    ("seen", "health", "state", "reason"),
    [
        (Seen(["127.0.0.2"]), HEALTHY, "listed", "127.0.0.2"),
        (Seen(["127.0.0.2"], "Listed: see x"), HEALTHY, "listed", "the list says: Listed: see x"),
        (Seen([]), HEALTHY, "not_listed", ""),
        (None, HEALTHY, "unknown", "its last lookup failed: timed out"),
        (Seen(["10.0.0.1"]), HEALTHY, "unknown", "outside 127.0.0.0/8"),
        (Seen([]), ListHealth("unhealthy", "lists everything"), "list_unhealthy", "lists"),
        (Seen(["127.0.0.2"]), ListHealth("unhealthy", "dead"), "list_unhealthy", "dead"),
        (None, ListHealth("unhealthy", "dead"), "list_unhealthy", "dead"),
        (Seen([]), ListHealth("unknown", "no usable answer"), "unknown", "no usable"),
    ],
)
def test_a_cell(seen: Seen | None, health: ListHealth, state: str, reason: str) -> None:
    own = Own(T0, {"81.2.69.160": {RBL.zone: "timed out"}})
    got = cell(RBL, "DE", seen, health, None, own, "81.2.69.160")
    assert got.state == state and reason in got.reason
    assert got.checked_at == T0


def test_no_answer_and_no_own_failure_is_not_asked() -> None:
    got = cell(RBL, "DE", None, HEALTHY, None, Own(T0), "81.2.69.160")
    assert got.state == "unknown" and "not asked from here" in got.reason


def test_listed_since_the_monitors_listing_opened_else_since_its_own_round() -> None:
    """Never the shared answer's time: that is whichever round asked first (maybe another
    organization's)."""
    seen = Seen(["127.0.0.2"])
    listing = Listing(RBL.zone, "81.2.69.160", T0, frozenset({"DE"}))
    own = Own(T0 + timedelta(hours=3))
    assert cell(RBL, "DE", seen, HEALTHY, listing, own).since == T0
    assert cell(RBL, "DE", seen, HEALTHY, None, own).since == T0 + timedelta(hours=3)


@pytest.mark.parametrize(
    ("a", "txt", "said"),
    [
        (["127.0.0.2"], None, "SBL: Spamhaus Blocklist (127.0.0.2)"),
        (
            ["127.0.0.4"],
            "https://check.spamhaus.org/query/ip/192.0.2.1\n",
            "XBL: exploited or infected host (127.0.0.4); the list says:"
            " https://check.spamhaus.org/query/ip/192.0.2.1",
        ),
    ],
)
def test_a_listings_reason_has_its_code_and_the_lists_text(
    a: list[str], txt: str | None, said: str
) -> None:
    assert reason(read(KNOWN["zen.spamhaus.org"], a), txt) == said


def test_an_undocumented_code_is_said_once() -> None:
    assert reason(read(RBL, ["127.0.0.2"]), " Listed\tfor spam ") == (
        "127.0.0.2; the list says: Listed for spam"
    )


def test_names_on_the_lists_of_their_kind_without_the_test_entries() -> None:
    names = {
        "DE": {"81.2.69.160": "host", "127.0.0.2": "listed", "dbltest.com": "listed"},
        "US": {"81.2.69.160": "host", "mail.example": "listed"},
    }
    shown = standing((RBL, DBL), names, ["mail.example", "81.2.69.7"], {}, {}, {})
    assert [(n.name, n.kind, n.sources, n.countries) for n in shown] == [
        ("mail.example", "domain", ("listed",), ("US",)),
        ("81.2.69.160", "ip", ("host",), ("DE", "US")),
        ("81.2.69.7", "ip", ("listed",), ()),  # listed, no round found it yet
    ]
    assert [[on.list.zone for on in n.lists] for n in shown] == [
        [DBL.zone],
        [RBL.zone],
        [RBL.zone],
    ]
    assert [c.state for c in shown[1].lists[0].cells] == ["unknown", "unknown"]
