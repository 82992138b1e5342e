"""The short fault campaign of `make soak` (testkit.campaigns.soak SHORT): real `python -m agent`
and `python -m controller serve` processes, embedded PostgreSQL and NATS of its own, a healthy SMTP
server on loopback; an agent, the controller and NATS killed by PID in turn. Run once for the
module; each test pins one of issue 13's correctness targets over every fault window.

The timing target (every part back to normal within 10 s of its return) is printed here and
asserted by the full campaign, `make soak`: a busy machine's seconds are no verdict.

`make soak` runs this file too (SOAK_FULL=1), not `make test`: each target it pins is pinned
there in less CPU. One row per grid cell: through an agent's kill,
tests/e2e/test_check_pipeline.py::test_an_agent_process_killed_mid_check_leaves_exactly_one_stored_result;
through a controller's kill, tests/pipeline/test_ingest_handover.py (a dead ingester's results
stored by another once, a batch held past the ack wait delivered once),
tests/pipeline/test_scheduler.py (a replayed round or a second replica publishes no duplicate;
the catch-up after time away) and the simulation's kills mid-pass (tests/sim); through a NATS
kill -9,
tests/pipeline/test_ingest_faults.py::test_the_rounds_through_a_nats_kill_9_get_one_row_each_and_no_alert
(this campaign's figures, soak_figures, on a smaller rig), which also pins no false `down`, no
`no_agent` while the agent lives, no real result dropped and no alert or incident through it.
No false `no_agent`: tests/pipeline/test_live_agents.py (NATS away ages no agent, none while
the view warms up). In-flight checks within the concurrency after a NATS kill:
tests/agent/test_worker_outage.py. A real result never replaced by a synthetic one:
tests/pipeline/test_ingest.py (a real result replaces the `expired` row of a closed round, and
an agent's own `expired`). No false `down`, alert or incident through a controller kill: the
simulation (tests/sim), against its world's truth.
"""

import os
from collections.abc import Iterator

import pytest

from testkit.campaigns.soak import CAMPAIGNS, report, run_campaign
from testkit.campaigns.soak_figures import Figures

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.environ.get("SOAK_FULL") != "1", reason="make soak runs it"),
]

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
