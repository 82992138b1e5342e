"""Which blocklist facts a round asked for (controller/sidechecks/blocklists/asked.py, issue
78), as tables: with the job's ask, and without one (an agent older than sealed asks)."""

import pytest

from controller.sidechecks.blocklists.asked import within_ask
from shared.sidechecks.blocklists import BlocklistAnswer, BlocklistAsk, BlocklistZone, Reputation

ZEN = BlocklistZone(zone="zen.test", tests=["127.0.0.2", "127.0.0.1"])
DBL = BlocklistZone(zone="dbl.test", kind="domain", tests=["test"])


def facts(names: dict[str, str], answered: list[tuple[str, str]]) -> Reputation:
    return Reputation(
        names=names, answers=[BlocklistAnswer(zone=z, name=n, a=[]) for z, n in answered]
    )


def kept(r: Reputation) -> tuple[set[str], set[tuple[str, str]]]:
    return set(r.names), {(a.zone, a.name) for a in r.answers}


HOST = BlocklistAsk(zones=[ZEN], host=True)
LISTED = BlocklistAsk(zones=[ZEN, DBL], ips=["192.0.2.1"], domains=["Example.COM."])
MX = BlocklistAsk(zones=[ZEN], mx_domain="example.com", skip=["198.51.100.9"])


@pytest.mark.parametrize(
    ("ask", "names", "answered", "want_names", "want_answers"),
    [
        # what the host resolved to, and the test entries: all asked
        (
            HOST,
            {"192.0.2.5": "host"},
            [("zen.test", "192.0.2.5"), ("zen.test", "127.0.0.2")],
            {"192.0.2.5"},
            {("zen.test", "192.0.2.5"), ("zen.test", "127.0.0.2")},
        ),
        # a name the facts do not name, a list the ask does not name: cut
        (
            HOST,
            {"192.0.2.5": "host"},
            [("zen.test", "203.0.113.7"), ("other.test", "192.0.2.5")],
            {"192.0.2.5"},
            set(),
        ),
        # "listed" only for what the ask lists; an MX source when it names no mxDomain: cut
        (
            LISTED,
            {
                "192.0.2.1": "listed",
                "example.com": "listed",
                "203.0.113.7": "listed",
                "192.0.2.9": "mx:mx.example.com",
            },
            [
                ("zen.test", "192.0.2.1"),
                ("dbl.test", "example.com"),
                ("zen.test", "203.0.113.7"),
                ("zen.test", "192.0.2.9"),
                ("dbl.test", "test"),
            ],
            {"192.0.2.1", "example.com"},
            {("zen.test", "192.0.2.1"), ("dbl.test", "example.com"), ("dbl.test", "test")},
        ),
        # a "host" source when the ask does not ask the host: cut
        (LISTED, {"192.0.2.5": "host"}, [("zen.test", "192.0.2.5")], set(), set()),
        # MX hosts' addresses asked; a skipped name named but not answered again
        (
            MX,
            {"192.0.2.7": "mx:mx.example.com", "198.51.100.9": "mx:mx2.example.com"},
            [("zen.test", "192.0.2.7"), ("zen.test", "198.51.100.9")],
            {"192.0.2.7", "198.51.100.9"},
            {("zen.test", "192.0.2.7")},
        ),
        # no ask: answers about the names the facts name, and test entries
        (
            None,
            {"192.0.2.5": "host"},
            [("zen.test", "192.0.2.5"), ("zen.test", "127.0.0.2"), ("zen.test", "203.0.113.7")],
            {"192.0.2.5"},
            {("zen.test", "192.0.2.5"), ("zen.test", "127.0.0.2")},
        ),
    ],
)
def test_within_ask(
    ask: BlocklistAsk | None,
    names: dict[str, str],
    answered: list[tuple[str, str]],
    want_names: set[str],
    want_answers: set[tuple[str, str]],
) -> None:
    assert kept(within_ask(ask, facts(names, answered))) == (want_names, want_answers)


def test_facts_all_asked_are_returned_as_they_are() -> None:
    f = facts({"192.0.2.5": "host"}, [("zen.test", "192.0.2.5")])
    assert within_ask(HOST, f) is f and within_ask(None, f) is f
