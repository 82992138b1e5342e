"""How the alerter judges one round's results (`controller.alerting.rules.rounds`,
`JudgedRound.verdict`), as a table: an inconclusive country (its agent's own path failed its
self-check) counts like a missed one, never failing and never passing; a mixed round is judged
on the real results."""

from datetime import UTC, datetime

import pytest

from controller.alerting.rules import AlertState, CountryResult, rounds
from controller.monitors.thresholds import Thresholds

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WHY = "inconclusive: canary mx.example.net:25 failed too (connect timed out)"


def row(country: str, outcome: str) -> CountryResult:
    """`up`, `inconclusive`, `no_agent` (missed) or an error kind (down)."""
    status = {"up": "up", "inconclusive": "inconclusive", "no_agent": "missed"}.get(outcome, "down")
    return CountryResult(
        scheduled_at=AT,
        country=country,
        job_id=f"job-{country}",
        status=status,
        error_kind=None if status == "up" else outcome,
        message=WHY if status == "inconclusive" else "",
    )


INC, UP = "inconclusive", "up"


@pytest.mark.parametrize(
    ("outcomes", "verdict", "failing_countries", "missed_countries", "why"),
    [
        ({"DE": INC, "FR": INC, "US": INC}, "missed", [], ["DE", "FR", "US"], "all inconclusive"),
        ({"DE": INC, "FR": "no_agent", "US": INC}, "missed", [], ["DE", "FR", "US"], "with missed"),
        ({"DE": INC, "FR": UP, "US": UP}, "up", [], ["DE"], "one inconclusive among ups"),
        ({"DE": INC, "FR": INC, "US": UP}, "up", [], ["DE", "FR"], "one real up: up"),
        (
            {"DE": "refused", "FR": INC, "US": INC},
            "degraded",
            ["DE"],
            ["FR", "US"],
            "one real failure of three expected: not a majority, as with missed",
        ),
        (
            {"DE": "auth", "FR": "auth", "US": INC},
            "failing",
            ["DE", "FR"],
            ["US"],
            "the real ones fail: failing, the inconclusive country not among them",
        ),
        (
            {"DE": "refused", "FR": UP, "US": INC},
            "degraded",
            ["DE"],
            ["US"],
            "one up, one down, one inconclusive",
        ),
    ],
)
def test_inconclusive_countries_count_like_missed_ones(
    outcomes: dict[str, str],
    verdict: str,
    failing_countries: list[str],
    missed_countries: list[str],
    why: str,
) -> None:
    (r,) = rounds([row(cc, what) for cc, what in outcomes.items()])
    assert r.verdict(Thresholds().failure_threshold, len(outcomes)) == verdict, why
    assert [cc for cc, _, _ in r.failures] == failing_countries, why
    assert [cc for cc, _, _ in r.missed] == missed_countries, why


def test_rounds_of_only_inconclusive_countries_never_open_nor_close_an_incident() -> None:
    """A hundred all-inconclusive rounds: state `missed`, neither counter moves; with an open
    incident the state stays `down` and the incident stays open, as with missed rounds."""
    t = Thresholds()
    (r,) = rounds([row(cc, INC) for cc in ("DE", "FR", "US")])
    s = AlertState()
    for _ in range(100):
        assert s.step(r.verdict(t.failure_threshold, 3), AT, t) is None
    assert (s.state, s.consecutive_down_rounds, s.consecutive_up_rounds) == ("missed", 0, 0)
    held = AlertState(state="down", consecutive_down_rounds=2, open_incident_id=7)
    for _ in range(100):
        assert held.step(r.verdict(t.failure_threshold, 3), AT, t) is None
    assert (held.state, held.consecutive_down_rounds, held.open_incident_id) == ("down", 2, 7)
