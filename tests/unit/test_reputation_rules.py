"""Blocklist rules as tables: every documented Spamhaus return code, RFC 5782's test entries,
health verdicts, bad answers as `unknown`, the operator's list set, and the hold time."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.scheduling.rules import first_of_window
from controller.sidechecks.blocklists.rules import (
    DEFAULT_LISTS,
    KNOWN,
    BlockList,
    Fresh,
    Listing,
    Verdict,
    ask,
    health,
    hold_step,
    lists_setting,
    parse_lists,
    read,
    vouch,
)

ZEN = KNOWN["zen.spamhaus.org"]
DBL = KNOWN["dbl.spamhaus.org"]
GENERIC = BlockList("rbl.example.net", "ip", "example")


@pytest.mark.parametrize(
    ("code", "state", "says"),
    [
        ("127.0.0.2", "listed", "SBL"),
        ("127.0.0.3", "listed", "CSS"),
        ("127.0.0.4", "listed", "XBL"),
        ("127.0.0.9", "listed", "DROP"),
        ("127.0.0.10", "listed", "PBL"),
        ("127.0.0.11", "listed", "PBL"),
        ("127.0.0.30", "listed", "BCL"),
        ("127.255.255.250", "error", "DQS key"),
        ("127.255.255.251", "error", "DQS key"),
        ("127.255.255.252", "error", "typing error"),
        ("127.255.255.254", "error", "public or open resolver"),
        ("127.255.255.255", "error", "excessive number of queries"),
        ("127.0.0.77", "unknown", "undocumented"),
        ("127.0.1.2", "unknown", "undocumented"),  # a DBL code on ZEN is no ZEN listing
    ],
)
def test_every_zen_code_reads_as_spamhaus_documents_it(code: str, state: str, says: str) -> None:
    v = read(ZEN, [code])
    assert v.state == state
    assert says in v.reason


@pytest.mark.parametrize(
    ("code", "state", "says"),
    [
        ("127.0.1.2", "listed", "low-reputation"),
        ("127.0.1.4", "listed", "phishing"),
        ("127.0.1.5", "listed", "malware"),
        ("127.0.1.6", "listed", "botnet"),
        ("127.0.1.102", "listed", "abused legitimate"),
        ("127.0.1.103", "listed", "redirector"),
        ("127.0.1.104", "listed", "phishing"),
        ("127.0.1.105", "listed", "malware"),
        ("127.0.1.106", "listed", "C&C"),
        ("127.0.1.255", "error", "IP queries not allowed"),
        ("127.255.255.252", "error", "typing error"),
        ("127.255.255.254", "error", "public or open resolver"),
        ("127.255.255.255", "error", "excessive"),
    ],
)
def test_every_dbl_code_reads_as_spamhaus_documents_it(code: str, state: str, says: str) -> None:
    v = read(DBL, [code])
    assert (v.state, says in v.reason) == (state, True)


def test_an_error_code_beside_a_listing_makes_the_answer_an_error_never_a_listing() -> None:
    assert read(ZEN, ["127.0.0.2", "127.255.255.254"]).state == "error"


def test_several_zen_codes_are_one_listing_naming_each() -> None:
    v = read(ZEN, ["127.0.0.10", "127.0.0.2", "127.0.0.4"])
    assert v.state == "listed"
    assert v.codes == ("127.0.0.2", "127.0.0.4", "127.0.0.10")
    assert "SBL" in v.reason and "XBL" in v.reason and "PBL" in v.reason


@pytest.mark.parametrize(
    ("a", "state"),
    [
        ([], "clean"),  # NXDOMAIN
        (None, "unknown"),  # the lookup failed
        (["127.0.0.2"], "listed"),
        (["127.0.0.5"], "listed"),  # any other 127/8 code of a generic list
        (["127.0.0.1"], "error"),  # RFC 5782's never-listed value: a refused query
        (["10.1.2.3"], "unknown"),  # a hijacking or wildcard resolver
        (["93.184.216.34", "127.0.0.2"], "unknown"),
        (["::1"], "unknown"),
        (["not-an-address"], "unknown"),
    ],
)
def test_generic_rfc5782_answers(a: list[str] | None, state: str) -> None:
    assert read(GENERIC, a, "timed out").state == state


def test_a_failed_lookup_says_why() -> None:
    assert read(GENERIC, None, "timed out") == Verdict("unknown", "timed out")


LISTED = Verdict("listed", "x", ("127.0.0.2",))
CLEAN = Verdict("clean")


@pytest.mark.parametrize(
    ("listed_test", "clean_test", "state", "says"),
    [
        (LISTED, CLEAN, "healthy", ""),
        (LISTED, LISTED, "unhealthy", "lists everything"),  # check_rbl's dead list
        (CLEAN, CLEAN, "unhealthy", "says nothing"),
        (read(ZEN, ["127.255.255.254"]), read(ZEN, ["127.255.255.254"]), "unhealthy", "error"),
        (read(ZEN, ["127.255.255.255"]), CLEAN, "unhealthy", "excessive"),
        (read(ZEN, ["127.255.255.252"]), CLEAN, "unhealthy", "typing error"),
        (Verdict("unknown", "timed out"), CLEAN, "unknown", "timed out"),
        (None, CLEAN, "unknown", "not asked"),
    ],
)
def test_health_from_the_rfc5782_test_entries(
    listed_test: Verdict | None, clean_test: Verdict | None, state: str, says: str
) -> None:
    h = health(ZEN, listed_test, clean_test)
    assert h.state == state
    assert says in h.reason


@pytest.mark.parametrize(
    ("tests", "state", "says"),
    [
        ({"127.0.0.2": ["127.0.0.2"], "127.0.0.1": []}, "healthy", ""),
        ({"127.0.0.2": ["127.0.0.2"], "127.0.0.1": ["127.0.0.2"]}, "unhealthy", "everything"),
        ({"127.0.0.2": [], "127.0.0.1": []}, "unhealthy", "says nothing"),
        ({"127.0.0.2": ["127.255.255.254"], "127.0.0.1": []}, "unhealthy", "public or open"),
        ({"127.0.0.2": ["127.0.0.2"]}, "unknown", "not answered beside"),  # one failed
        ({}, "unknown", "not answered beside"),
        (None, "unknown", "not answered beside"),  # skipped (an older agent's round)
    ],
)
def test_an_answer_is_vouched_for_by_its_own_rounds_test_entries(
    tests: dict[str, list[str]] | None, state: str, says: str
) -> None:
    h = vouch(ZEN, tests)
    assert (h.state, says in h.reason) == (state, True)


@pytest.mark.parametrize(
    ("entry", "a", "state"),
    [
        ("sbl.spamhaus.org:ip", ["127.255.255.255"], "error"),  # excessive queries
        ("sbl.spamhaus.org:ip", ["127.255.255.254"], "error"),  # a public resolver
        ("xbl.spamhaus.org:ip:major", ["127.255.255.252"], "error"),
        ("pbl.spamhaus.org:ip", ["127.0.0.77"], "unknown"),  # undocumented
        ("pbl.spamhaus.org:ip", ["127.0.0.10"], "listed"),
        ("zrd.spamhaus.org:domain", ["127.255.255.254"], "error"),
        ("zrd.spamhaus.org:domain", ["127.0.1.255"], "error"),
    ],
)
def test_any_spamhaus_zone_reads_spamhaus_codes(entry: str, a: list[str], state: str) -> None:
    """A Spamhaus zone the operator names beside the known two reads Spamhaus's codes too: its
    error codes (rate limit, public resolver) are never a listing, nor an undocumented code."""
    (bl,) = parse_lists(entry)
    assert read(bl, a).state == state
    assert bl.dqs


def test_test_entries_per_kind() -> None:
    assert ZEN.tests == ("127.0.0.2", "127.0.0.1")
    assert DBL.tests == ("dbltest.com", "invalid")
    assert BlockList("d.example.net", "domain", "d").tests == ("test", "invalid")


def test_the_default_set_is_current() -> None:
    zones = [b.zone for b in DEFAULT_LISTS]
    assert not any("sorbs" in z or "manitu" in z for z in zones)
    assert parse_lists("") == DEFAULT_LISTS
    assert all(b.delist for b in DEFAULT_LISTS)


@pytest.mark.parametrize(
    ("text", "zones"),
    [
        ("zen.spamhaus.org", ["zen.spamhaus.org"]),
        ("zen.spamhaus.org, rbl.example.net:ip", ["zen.spamhaus.org", "rbl.example.net"]),
        ("uri.example.net:domain:major", ["uri.example.net"]),
    ],
)
def test_the_operator_chooses_the_lists(text: str, zones: list[str]) -> None:
    assert [b.zone for b in parse_lists(text)] == zones


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("dnsbl.sorbs.net", "SORBS shut down"),
        ("ix.dnsbl.manitu.net", "gone"),
        ("rbl.example.net", "zone:ip or zone:domain"),
        ("rbl.example.net:ipv6", "zone:ip or zone:domain"),
        ("nodot", "not a zone"),
        ("zen.spamhaus.org,zen.spamhaus.org", "twice"),
    ],
)
def test_bad_list_settings_are_refused_naming_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_lists(text)


def test_a_custom_major_list_is_critical() -> None:
    (b,) = parse_lists("rbl.example.net:ip:major")
    assert b.major and b.kind == "ip"


T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOLD = timedelta(hours=1)


def test_a_listing_is_raised_once_it_held_and_cleared_when_it_ends() -> None:
    step = hold_step(None, "z", "192.0.2.1", {"DE": "SBL"}, [], T0, HOLD)
    assert step[1] is None and step[0] is not None and not step[0].raised
    step = hold_step(step[0], "z", "192.0.2.1", {"DE": "SBL"}, [], T0 + HOLD / 2, HOLD)
    assert step[1] is None
    step = hold_step(step[0], "z", "192.0.2.1", {"DE": "SBL", "US": "SBL"}, [], T0 + HOLD, HOLD)
    listing, change = step
    assert change == "raised" and listing is not None
    assert listing.since == T0 and listing.countries == {"DE", "US"}
    assert hold_step(listing, "z", "192.0.2.1", {}, ["DE", "US"], T0 + 2 * HOLD, HOLD) == (
        None,
        "cleared",
    )


def test_a_listing_shorter_than_the_hold_is_never_told() -> None:
    listing, _ = hold_step(None, "z", "n", {"DE": "SBL"}, [], T0, HOLD)
    assert hold_step(listing, "z", "n", {}, ["DE"], T0 + timedelta(minutes=10), HOLD) == (
        None,
        None,
    )


def test_no_usable_answer_neither_raises_nor_clears() -> None:
    listing = Listing("z", "n", T0, frozenset({"DE"}), raised=True)
    assert hold_step(listing, "z", "n", {}, [], T0 + HOLD, HOLD) == (listing, None)


MOVES = [
    # (seen from, raised, listed in, clean in, quiet, at) → (seen from after, change)
    ({"DE"}, True, {"DE", "US"}, set(), set(), HOLD, ({"DE", "US"}, "moved")),
    ({"DE", "US"}, True, {"DE"}, {"US"}, set(), HOLD, ({"DE"}, "moved")),
    ({"DE"}, True, {"US"}, {"DE"}, set(), HOLD, ({"US"}, "moved")),
    # The same countries again: no change, whatever else a round says.
    ({"DE", "US"}, True, {"DE", "US"}, {"FR"}, set(), HOLD, ({"DE", "US"}, None)),
    # A country whose list said nothing usable this time keeps its place.
    ({"DE", "US"}, True, {"DE"}, set(), {"US"}, HOLD, ({"DE", "US"}, None)),
    ({"DE"}, True, {"DE"}, set(), {"US"}, HOLD, ({"DE"}, None)),
    # One that no longer meets the name (the monitor's address there changed) leaves.
    ({"DE", "US"}, True, {"DE"}, set(), set(), HOLD, ({"DE"}, "moved")),
    # Before the raise the countries change untold; the raise names them, one notice.
    ({"DE"}, False, {"DE", "US"}, set(), set(), HOLD / 2, ({"DE", "US"}, None)),
    ({"DE"}, False, {"DE", "US"}, set(), set(), HOLD, ({"DE", "US"}, "raised")),
    # No country sees it listed and one sees it clean: cleared, quiet ones or not.
    ({"DE", "US"}, True, set(), {"DE"}, {"US"}, HOLD, (None, "cleared")),
]


@pytest.mark.parametrize(("before", "raised", "listed", "clean", "quiet", "at", "after"), MOVES)
def test_a_raised_listing_whose_countries_change_is_one_move(
    before: set[str],
    raised: bool,
    listed: set[str],
    clean: set[str],
    quiet: set[str],
    at: timedelta,
    after: tuple[set[str] | None, str | None],
) -> None:
    listing = Listing("z", "n", T0, frozenset(before), raised=raised, reason="SBL")
    found, change = hold_step(
        listing, "z", "n", dict.fromkeys(listed, "SBL"), clean, T0 + at, HOLD, quiet
    )
    assert (None if found is None else set(found.countries), change) == after
    if found is not None:
        assert found.since == T0  # a move never restarts the listing


def test_a_listing_seen_anew_with_another_reason_only_is_no_change() -> None:
    listing = Listing("z", "n", T0, frozenset({"DE"}), raised=True, reason="SBL")
    found, change = hold_step(listing, "z", "n", {"DE": "XBL"}, [], T0 + HOLD, HOLD)
    assert change is None and found is not None and found.reason == "XBL"


def test_one_round_per_window_asks_the_lists() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rounds = [start + timedelta(minutes=m) for m in range(0, 24 * 60)]
    due = [at for at in rounds if first_of_window("blocklists", "m-1", at, 60, 6 * 3600)]
    assert len(due) == 4  # a day of one-minute rounds, a 6 h interval
    assert first_of_window(
        "blocklists", "m-1", start, 7 * 3600, 6 * 3600
    )  # rarer rounds: every one


def test_a_round_asks_the_test_entries_and_skips_fresh_names() -> None:
    names = {"93.184.216.34", "127.0.0.2", "198.18.0.9"}
    fresh = Fresh({b.zone: names for b in DEFAULT_LISTS})
    asked = ask(DEFAULT_LISTS, "Example.com", fresh, known={"93.184.216.34"})
    assert asked.host and asked.mx_domain == "Example.com"
    assert asked.ips == ["127.0.0.2", "127.0.0.1"]
    assert asked.domains == ["dbltest.com", "invalid", "example.com"]
    # Only the fresh names this round may meet: its own, and those its last round found;
    # another monitor's fresh name does not travel in this job.
    assert asked.skip == ["127.0.0.2", "93.184.216.34"]
    assert [z.zone for z in asked.zones if z.dqs] == ["zen.spamhaus.org", "dbl.spamhaus.org"]
    assert lists_setting("") == () and lists_setting("default") == DEFAULT_LISTS


def test_a_round_asks_the_listed_outbound_names_on_lists_of_their_kind() -> None:
    listed = {"ips": ["81.2.69.160", "127.0.0.2"], "domains": ["mail.example"]}
    asked = ask(DEFAULT_LISTS, None, Fresh(), listed)
    assert asked.ips == ["127.0.0.2", "127.0.0.1", "81.2.69.160"]
    assert asked.domains == ["dbltest.com", "invalid", "mail.example"]
    ip_only = ask(tuple(b for b in DEFAULT_LISTS if b.kind == "ip"), "e.com", Fresh(), listed)
    assert ip_only.domains == [] and "81.2.69.160" in ip_only.ips


def test_a_list_that_answered_a_name_is_not_asked_again_whatever_another_list_does() -> None:
    """Freshness is per list and name: a name ZEN answered within the interval is skipped on
    ZEN alone (its zone's `skip`), even while another list never answered it; the ask's own
    `skip` (read by agents that read no list's) names only what every list of its kind
    answered."""
    ip = "93.184.216.34"
    zen = "zen.spamhaus.org"
    asked = ask(DEFAULT_LISTS, None, Fresh({zen: {ip}}), {"ips": [ip], "domains": []})
    skips = {z.zone: z.skip for z in asked.zones}
    assert skips[zen] == [ip]
    assert all(skip == [] for zone, skip in skips.items() if zone != zen)
    assert asked.skip == []
    ips = [b.zone for b in DEFAULT_LISTS if b.kind == "ip"]
    everywhere = ask(DEFAULT_LISTS, None, Fresh({z: {ip} for z in ips}), {"ips": [ip]})
    assert everywhere.skip == [ip]


def test_a_dead_list_is_not_asked_until_its_failure_is_older_than_the_interval() -> None:
    dead = next(b.zone for b in DEFAULT_LISTS if b.kind == "ip" and not b.dqs)
    asked = ask(DEFAULT_LISTS, "example.com", Fresh(dead=frozenset({dead})))
    assert dead not in {z.zone for z in asked.zones}
    assert {z.zone for z in asked.zones} == {b.zone for b in DEFAULT_LISTS} - {dead}
