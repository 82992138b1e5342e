"""Where a name stands on a list in a country (controller.sidechecks.blocklists.standing_rules),
as a table: a healthy list's answer is listed or not listed, an unhealthy list's is
`list_unhealthy` whatever it says, no answer or no known health is `unknown`; a name's lists are
those of its kind, its sources and countries from the rounds, the lists' test entries left out."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.sidechecks.blocklists.rules import KNOWN, BlockList, ListHealth, Listing
from controller.sidechecks.blocklists.standing_rules import Seen, cell, standing

T0 = datetime(2026, 5, 1, tzinfo=UTC)
RBL = BlockList("rbl.example.net", "ip", "RBL", delist="https://x/{name}")
DBL = KNOWN["dbl.spamhaus.org"]
HEALTHY = ListHealth("healthy")


@pytest.mark.parametrize(
    ("seen", "health", "state", "reason"),
    [
        (Seen(["127.0.0.2"], "", T0), HEALTHY, "listed", "127.0.0.2"),
        (Seen([], "", T0), HEALTHY, "not_listed", ""),
        (Seen(None, "timed out", T0), HEALTHY, "unknown", "timed out"),
        (Seen(["10.0.0.1"], "", T0), HEALTHY, "unknown", "outside 127.0.0.0/8"),
        (Seen([], "", T0), ListHealth("unhealthy", "lists everything"), "list_unhealthy", "lists"),
        (Seen(["127.0.0.2"], "", T0), ListHealth("unhealthy", "dead"), "list_unhealthy", "dead"),
        (None, ListHealth("unhealthy", "dead"), "list_unhealthy", "dead"),
        (Seen([], "", T0), ListHealth("unknown", "no usable answer"), "unknown", "no usable"),
        (None, HEALTHY, "unknown", "not asked from here"),
    ],
)
def test_a_cell(seen: Seen | None, health: ListHealth, state: str, reason: str) -> None:
    got = cell(RBL, "DE", seen, health, None)
    assert got.state == state and reason in got.reason


def test_listed_since_the_monitors_listing_opened_else_since_the_answer() -> None:
    seen = Seen(["127.0.0.2"], "", T0 + timedelta(hours=3))
    listing = Listing(RBL.zone, "81.2.69.160", T0, frozenset({"DE"}))
    assert cell(RBL, "DE", seen, HEALTHY, listing).since == T0
    assert cell(RBL, "DE", seen, HEALTHY, None).since == T0 + timedelta(hours=3)


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
