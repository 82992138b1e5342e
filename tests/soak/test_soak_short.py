"""The short fault campaign of `make soak` (testkit.campaigns.soak SHORT): real `python -m agent`
and `python -m controller serve` processes, embedded PostgreSQL and NATS of its own, a healthy SMTP
server on loopback; an agent, the controller and NATS killed by PID in turn. Run once for the
module; each test pins one of issue 13's correctness targets over every fault window.

The timing target (every part back to normal within 10 s of its return) is printed here and
asserted by the full campaign, `make soak`: a busy machine's seconds are no verdict.
"""

from collections.abc import Iterator

import pytest

from testkit.campaigns.soak import CAMPAIGNS, report, run_campaign
from testkit.campaigns.soak_figures import Figures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CAMPAIGN = CAMPAIGNS["short"]


@pytest.fixture(scope="module")
def windows() -> Iterator[list[Figures]]:
    found = run_campaign(CAMPAIGN, say=lambda _: None)
    report(found, CAMPAIGN.concurrency)  # every figure in the output of a failing run
    yield found


def _each(windows: list[Figures], bad: str) -> dict[str, object]:
    return {f.name: getattr(f, bad) for f in windows if getattr(f, bad)}


def test_every_grid_cell_gets_exactly_one_row_through_every_fault(windows: list[Figures]) -> None:
    assert all(f.expected > 0 for f in windows)
    assert _each(windows, "missing") == {}
    assert _each(windows, "duplicated") == {}


def test_no_agent_is_recorded_only_for_a_country_without_live_agents(
    windows: list[Figures],
) -> None:
    assert _each(windows, "phantom_no_agent") == {}


def test_a_healthy_target_never_gets_down_through_our_faults(windows: list[Figures]) -> None:
    assert _each(windows, "down") == {}


def test_no_agent_runs_more_checks_than_its_concurrency(windows: list[Figures]) -> None:
    over = {
        f.name: f.in_flight
        for f in windows
        if max(f.in_flight.values(), default=0) > CAMPAIGN.concurrency
    }
    assert over == {}
    assert any(f.in_flight for f in windows), "the agents' in-flight gauge was never sampled"


def test_no_real_result_is_dropped_in_favour_of_a_synthetic_one(windows: list[Figures]) -> None:
    assert _each(windows, "dropped") == {}


def test_no_alert_is_queued_and_no_incident_opened_for_a_healthy_target(
    windows: list[Figures],
) -> None:
    assert _each(windows, "alerts") == {}
    assert _each(windows, "incidents") == {}
