"""A notice sent at the instant the PostgreSQL primary dies is neither lost nor late (issue 69),
on real engines: a primary with a synchronous standby, the outbox worker, an e-mail sink and a
webhook receiver counting every notice by its idempotency key (testkit.campaigns.notice_failover).
One failover per instant of the kill: while a receiver holds the send, as the write-back commits,
during the worker's claims, the three at once, each on its own cluster and receivers; `make soak`
runs many seeds of each."""

import pytest

from testkit.campaigns.notice_failover import INSTANTS, SeedFigures, line, report, run_campaign

pytestmark = [pytest.mark.breadth, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
async def seeds() -> list[SeedFigures]:
    found = await run_campaign(range(len(INSTANTS)), say=lambda _: None, lanes=len(INSTANTS))
    report(found)  # every figure in the output of a failing run
    return found


def test_every_instant_of_the_kill_is_tried(seeds: list[SeedFigures]) -> None:
    assert sorted(f.instant for f in seeds) == sorted(INSTANTS)
    assert all(f.notices == 4 for f in seeds)  # down and recovered, by e-mail and webhook


def test_no_notice_is_lost_or_late_beyond_30_s(seeds: list[SeedFigures]) -> None:
    figures = "\n".join(map(line, seeds))
    assert {f.seed: f.lost for f in seeds if f.lost} == {}, figures
    assert {f.seed: f.late for f in seeds if f.late} == {}, figures
