"""A new monitor's first round: one round from each of its countries at creation, then its rounds
on its grid, with the scheduler, agents and a loopback server all running. "Check now" right
after creating is that first round, as no pass has sent it yet; the other order (a pass first,
then a round of its own beside it) is pinned in tests/pipeline/test_scheduler.py.

Time is the subject, so the controller runs on a skipping clock (tests/e2e/virtual.py): the
scheduler's passes are stepped and the waits between rounds skipped. Every bound below is in
the clock's seconds; the checks themselves run in real time."""

import itertools
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from controller.scheduling.plan import grid_after_first
from shared.timefmt import parse_iso
from testkit.peers.smtp import SmtpPeer
from tests.api.helpers import SMTP
from tests.conftest import Tenant
from tests.e2e.helpers import smtp_monitor
from tests.e2e.virtual import FIRST, SECOND, Virtual, stepped_results

pytestmark = pytest.mark.usefixtures("unjudged")

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


async def created(
    virtual: Virtual, api: httpx.AsyncClient, org: Tenant, port: int, *, check_now: bool
) -> tuple[str, datetime, datetime | None]:
    """A monitor created (and checked at once when `check_now`): its id, when it was created on
    the controller's clock, the triggered round's time."""
    created_at = virtual.clock.now()
    monitor = await smtp_monitor(
        api,
        org,
        port,
        allowedCheckCountryCodes=[FIRST, SECOND],
        checkInterval=INTERVAL,
        timeoutSeconds=5,
    )
    pid = monitor["publicId"]
    if not check_now:
        return pid, created_at, None
    r = await api.post(f"{SMTP}/{pid}/trigger-check", headers=org.auth())
    assert r.status_code == 202, r.text
    return pid, created_at, parse_iso(r.json()["scheduledAt"])


async def test_a_new_monitor_gets_one_round_at_creation_then_rounds_at_its_interval(
    virtual_api: httpx.AsyncClient, virtual_org: Tenant, virtual: Virtual
) -> None:
    api, org = virtual_api, virtual_org
    async with SmtpPeer() as peer:
        # Both made between steps: no pass runs, and the clock skips nothing, meanwhile.
        plain = await created(virtual, api, org, peer.port, check_now=False)
        checked = await created(virtual, api, org, peer.port, check_now=True)
        followed = [
            (
                pid,
                created_at,
                triggered,
                await stepped_results(virtual, api, org, pid, whole(3), within=4 * INTERVAL),
            )
            for pid, created_at, triggered in (plain, checked)
        ]
    for pid, created_at, triggered, items in followed:
        first, *grid = rounds(items)
        assert first - created_at < timedelta(seconds=2), (created_at, items)
        # "Check now" before any pass is the first round itself: no round of its own.
        assert triggered in (None, first), (triggered, items)
        # Then its grid, each point once: the first more than half an interval after the
        # creation round, one an interval after another.
        assert grid[0] == grid_after_first(pid, INTERVAL, first), items
        assert grid[0] - first > timedelta(seconds=INTERVAL / 2), items
        assert all(b - a == timedelta(seconds=INTERVAL) for a, b in itertools.pairwise(grid)), items
        at_first = [i for i in items if parse_iso(i["scheduledAt"]) == first]
        assert sorted((i["country"], i["status"]) for i in at_first) == [
            (FIRST, "up"),
            (SECOND, "up"),
        ]
