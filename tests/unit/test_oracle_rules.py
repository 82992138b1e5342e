"""Oracle rules as tables (controller.oracles.rules, shared.dns_canary): a resolver's health from
its canaries (wrong answers unhealthy, unanswered unknown, none configured unchecked and
believed), what the operator is told to set, when a change is told (once, after the hold, never
for a flap), and the AGENT_DNS_CANARIES setting."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.operator_health.rules import HOLD, Stored, step
from controller.oracles.rules import BEHIND, RESOLVER, Health, fix, resolver_health, root_cause
from controller.sidechecks.blocklists.rules import LIST_FIX, SPAMHAUS_FIX
from controller.sidechecks.blocklists.rules import oracle_fix as lists_fix
from controller.sidechecks.oracle_fixes import own_fix
from shared.dns_canary import DEFAULT_CANARIES, Canary, DnsCanary, capped, parse_dns_canaries

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def c(name: str, exists: bool, found: bool | None, error: str = "") -> DnsCanary:
    return DnsCanary(name=name, type="A", exists=exists, found=found, error=error)


@pytest.mark.parametrize(
    ("canaries", "state", "reason"),
    [
        (None, "unchecked", ""),
        ([], "unchecked", ""),
        ([c("a.root-servers.net", True, True), c("x.invalid", False, False)], "healthy", ""),
        # NXDOMAIN for everything (the trial's resolver)
        (
            [c("a.root-servers.net", True, False), c("x.invalid", False, False)],
            "unhealthy",
            "that it does not exist (NXDOMAIN or no record) for a.root-servers.net A",
        ),
        # records for everything (a hijacking resolver)
        (
            [c("a.root-servers.net", True, True), c("x.invalid", False, True)],
            "unhealthy",
            "records for x.invalid A, which must not exist",
        ),
        # dead or slow: no answer is no verdict
        (
            [c("a.root-servers.net", True, None, "timed out"), c("x.invalid", False, False)],
            "unknown",
            "a.root-servers.net A got no answer: timed out",
        ),
        # a wrong answer outweighs an unanswered one
        (
            [c("a.root-servers.net", True, None, "timed out"), c("x.invalid", False, True)],
            "unhealthy",
            "x.invalid",
        ),
    ],
)
def test_resolver_health(canaries: list[DnsCanary] | None, state: str, reason: str) -> None:
    h = resolver_health(canaries)
    assert h.state == state and reason in h.reason
    assert h.believed == (state in ("healthy", "unchecked"))


def test_what_to_set_names_the_setting() -> None:
    """The resolver's fix is the oracle rules' own; a list's is its side check's
    (controller.sidechecks.oracle_fixes), unless the list is behind a resolver that is not
    believed."""
    assert "AGENT_DNS_RESOLVER" in fix(RESOLVER)
    assert "AGENT_SPAMHAUS_DQS_KEY" in fix("zen.spamhaus.org")
    assert "AGENT_BLOCKLIST_RESOLVER" in fix("bl.spamcop.net")
    assert "AGENT_DNS_RESOLVER" in fix("bl.spamcop.net", f"{BEHIND} (NXDOMAIN)")


def test_an_oracle_is_told_its_own_side_checks_fix_and_no_other() -> None:
    """Each side check answers for its own oracles only (a list's is its zone): one that is
    no side check's gets none, so a second side check with oracles is asked for its own."""
    assert own_fix("zen.spamhaus.org") == SPAMHAUS_FIX
    assert own_fix("bl.example.net") == LIST_FIX
    assert own_fix("ptr-canaries") is None
    assert lists_fix(RESOLVER) is None


BAD = Health("unhealthy", "NXDOMAIN")
GOOD = Health("healthy")


def test_a_change_is_told_once_after_the_hold_and_a_flap_never() -> None:
    s, told = step(None, BAD, T0)
    assert told is None and s == Stored("unhealthy", "NXDOMAIN", T0, "healthy")
    s, told = step(s, BAD, T0 + HOLD / 2)
    assert told is None and s.since == T0
    s, told = step(s, BAD, T0 + HOLD)
    assert told == "unhealthy" and s.told == "unhealthy"
    s, told = step(s, Health("unknown", "timed out"), T0 + HOLD * 2)
    assert told is None  # still not believed: the same change
    s, told = step(s, GOOD, T0 + HOLD * 3)
    assert told is None and s.since == T0 + HOLD * 3
    s, told = step(s, GOOD, T0 + HOLD * 4)
    assert told == "recovered" and s.told == "healthy"
    # a bad minute: never told
    flap, told = step(s, BAD, T0 + HOLD * 5)
    back, told2 = step(flap, GOOD, T0 + HOLD * 5 + timedelta(minutes=1))
    assert told is None and told2 is None and back.told == "healthy"


def test_an_oracle_bad_in_turns_of_two_ways_is_told_once_it_held_bad() -> None:
    """Unhealthy one minute, unknown the next (a dead list that also times out), for three
    holds: not believed all along, so told once, a hold after it went bad, and not again."""
    s: Stored | None = None
    told = []
    for minute in range(int(3 * HOLD / timedelta(minutes=1)) + 1):
        now = BAD if minute % 2 == 0 else Health("unknown", "timed out")
        s, change = step(s, now, T0 + timedelta(minutes=minute))
        if change is not None:
            told.append((minute, change))
    assert told == [(int(HOLD / timedelta(minutes=1)), "unhealthy")]


ZEN = "zen.spamhaus.org"


@pytest.mark.parametrize(
    ("resolver", "through", "zen", "quiet"),
    [
        # a resolver not believed, the lists asked through it: not judged apart, not told
        (BAD, {"DE"}, Health("unknown", f"{BEHIND} (NXDOMAIN)"), True),
        (Health("unknown", "timed out"), {"DE"}, Health("unknown", f"{BEHIND} (timed out)"), True),
        # the lists asked through a resolver of their own, or an older agent's (not known)
        (BAD, set(), BAD, False),
        # a resolver believed: each list judged on its own
        (GOOD, {"DE"}, BAD, False),
        (Health("unchecked"), {"DE"}, BAD, False),
    ],
)
def test_root_cause_first(resolver: Health, through: set[str], zen: Health, quiet: bool) -> None:
    judged = {(RESOLVER, "DE"): resolver, (ZEN, "DE"): BAD, (ZEN, "US"): BAD}
    now, quiet_keys = root_cause(judged, through)
    assert now[(ZEN, "DE")] == zen and now[(RESOLVER, "DE")] == resolver
    assert now[(ZEN, "US")] == BAD  # another country's resolver is not this one
    assert quiet_keys == ({(ZEN, "DE")} if quiet else set())
    if quiet:  # its fix is the resolver's, never a Spamhaus key
        assert fix(ZEN, now[(ZEN, "DE")].reason) == fix(RESOLVER)


def test_a_quiet_change_is_told_once_it_outlasts_its_root_cause() -> None:
    """A list behind a broken resolver is never told while it is quiet; once the resolver is
    believed again and the list is still bad, it is told (its bad spell held long since)."""
    s, told = step(None, BAD, T0, quiet=True)
    s, told = step(s, BAD, T0 + HOLD * 2, quiet=True)
    assert told is None and s.told == "healthy" and s.state == "unhealthy"
    s, told = step(s, BAD, T0 + HOLD * 3)
    assert told == "unhealthy"
    quiet, told = step(None, BAD, T0, quiet=True)
    back, told2 = step(quiet, GOOD, T0 + HOLD * 2)
    back, told3 = step(back, GOOD, T0 + HOLD * 4)
    assert told is told2 is told3 is None  # recovered with its root cause: nothing to tell


def test_unchecked_is_never_told() -> None:
    s, told = step(None, Health("unchecked"), T0)
    s, told = step(s, Health("unchecked"), T0 + HOLD * 3)
    assert told is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("", ()),
        (
            DEFAULT_CANARIES,
            (
                Canary("a.root-servers.net", "A", True),
                Canary("mailprobe-canary.invalid", "A", False),
            ),
        ),
        (
            "Mail.Example.COM. mx, !nope.example.com txt",
            (
                Canary("mail.example.com", "MX", True),
                Canary("nope.example.com", "TXT", False),
            ),
        ),
    ],
)
def test_the_canaries_setting(text: str, want: tuple[Canary, ...]) -> None:
    assert parse_dns_canaries(text) == want


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a.root-servers.net", "say `name TYPE`"),
        ("a.root-servers.net BOGUS", "say `name TYPE`"),
        ("a..b A", "not a DNS name"),
        (f"{'x' * 64}.example A", "not a DNS name"),
        (",".join(f"n{i}.example A" for i in range(5)), "at most 4"),
    ],
)
def test_a_wrong_canary_setting_names_the_entry(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_dns_canaries(text)


def test_an_agents_canaries_are_capped() -> None:
    many = [c(f"n{i}.example" + "x" * 300, True, True, "e" * 500) for i in range(9)]
    kept = capped(many)
    assert kept is not None and len(kept) == 4
    assert all(len(k.name) <= 253 and len(k.error) <= 200 for k in kept)
    assert capped(None) is None
