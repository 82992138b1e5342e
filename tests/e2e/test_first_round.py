"""A new monitor's first round: one round from each of its countries at creation, then its rounds
on its grid, with the scheduler, agents and a loopback server all running. "Check now" right
after creating is that first round when it comes before a pass sent it, else one round of its
own beside it; which comes first is the host's timing (each order is pinned in
tests/pipeline/test_scheduler.py)."""

import asyncio
import itertools
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from controller.scheduling.plan import grid_after
from shared.timefmt import parse_iso, utcnow
from testkit.peers.smtp import SmtpPeer
from tests.api.helpers import SMTP
from tests.conftest import Tenant
from tests.e2e.conftest import ABROAD, HOME, Agents, Controller
from tests.e2e.helpers import smtp_monitor, wait_results

INTERVAL = 10  # the shortest the API allows


def rounds(items: list[dict[str, Any]]) -> list[datetime]:
    """The rounds the results are of, by due time."""
    return sorted({parse_iso(i["scheduledAt"]) for i in items})


def whole(n: int) -> Any:
    """`n` rounds, each with both countries' results."""

    def done(items: list[dict[str, Any]]) -> bool:
        per_round = Counter(i["scheduledAt"] for i in items)
        return len(per_round) >= n and all(c == 2 for c in per_round.values())

    return done


async def first_rounds(
    api: httpx.AsyncClient, org: Tenant, port: int, *, check_now: bool
) -> tuple[str, datetime, datetime | None, list[dict[str, Any]]]:
    """A monitor created (and checked at once when `check_now`), followed until its first round
    and two rounds of its grid are in: its id, when it was created, the triggered round's time,
    its results."""
    created_at = utcnow()
    created = await smtp_monitor(
        api,
        org,
        port,
        allowedCheckCountryCodes=[HOME, ABROAD],
        checkInterval=INTERVAL,
        timeoutSeconds=5,
    )
    pid = created["publicId"]
    triggered = None
    if check_now:
        r = await api.post(f"{SMTP}/{pid}/trigger-check", headers=org.auth())
        assert r.status_code == 202, r.text
        triggered = parse_iso(r.json()["scheduledAt"])
    items = await wait_results(api, org, pid, whole(3), within=3 * INTERVAL, every=0.2)
    return pid, created_at, triggered, items


@pytest.mark.timeout(120)
async def test_a_new_monitor_gets_one_round_at_creation_then_rounds_at_its_interval(
    api: httpx.AsyncClient, org: Tenant, controller: Controller, agents: Agents
) -> None:
    async with SmtpPeer() as peer:
        plain, checked = await asyncio.gather(
            first_rounds(api, org, peer.port, check_now=False),
            first_rounds(api, org, peer.port, check_now=True),
        )
    for pid, created_at, triggered, items in (plain, checked):
        first, *grid = rounds(items)
        assert first - created_at < timedelta(seconds=2), (created_at, items)
        if triggered is not None and triggered != first:
            # A pass sent the first round before "Check now" came: the trigger's round is one
            # of its own, off the grid, and no third round went (the grid's checks below).
            assert triggered in grid, items
            grid.remove(triggered)
        # Then its grid, each point once: the first after the creation round, one an interval
        # after another.
        assert grid[0] == grid_after(pid, INTERVAL, first), items
        assert all(b - a == timedelta(seconds=INTERVAL) for a, b in itertools.pairwise(grid)), items
        at_first = [i for i in items if parse_iso(i["scheduledAt"]) == first]
        assert sorted((i["country"], i["status"]) for i in at_first) == [
            (HOME, "up"),
            (ABROAD, "up"),
        ]
