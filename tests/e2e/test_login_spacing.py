"""Logins to one account go country after country, end to end: a triggered round of a monitor
with credentials lists every country queued, and the second country's job is held back
LOGIN_SPACING_SECONDS (5 s by default, as `serve` runs the scheduler): its agent starts it that
long after the round's time at the earliest, after the first country's login reached the server.

The spacing is read from the agents' own start times, not from when this process noticed the
logins: the agents, the server and this test share one event loop, and a stall of a busy host
delays the first login's pickup but not the second's held-back publish, so the gap as seen at
the server can shrink without the controller sending anything early."""

import asyncio
import time

import httpx

from shared.timefmt import parse_iso
from testkit.peers.smtp import SmtpPeer
from tests.api.helpers import SMTP
from tests.conftest import Tenant
from tests.e2e.conftest import ABROAD, HOME, Agents, Controller
from tests.e2e.helpers import count, smtp_monitor, wait_results


async def test_a_rounds_logins_go_from_one_country_then_the_next(
    api: httpx.AsyncClient, org: Tenant, controller: Controller, agents: Agents
) -> None:
    """A new monitor's first round runs at once: its two countries log in one after the other,
    `LOGIN_SPACING_SECONDS` apart; a round triggered meanwhile lists its spaced logins as
    queued."""
    async with SmtpPeer(auth_in_clear=True) as peer:
        created = await smtp_monitor(
            api,
            org,
            peer.port,
            allowedCheckCountryCodes=[HOME, ABROAD],
            smtpConfig={"auth": {"user": "alice", "pass": "s3cret"}, "allowPlaintextAuth": True},
        )
        deadline = time.monotonic() + 30
        while len(peer.auths) < 2:
            assert time.monotonic() < deadline, f"logins seen: {len(peer.auths)}"
            await asyncio.sleep(0.02)
        items = await wait_results(api, org, created["publicId"], count(2), within=30)
        # One round, both countries: its next round is on its grid, over half an interval on.
        assert len({i["scheduledAt"] for i in items}) == 1, items
        assert sorted(i["country"] for i in items) == sorted([HOME, ABROAD]), items
        first, second = sorted(
            (parse_iso(i["startedAt"]) - parse_iso(i["scheduledAt"])).total_seconds() for i in items
        )
        assert second >= 4.5, (first, second)
        r = await api.post(f"{SMTP}/{created['publicId']}/trigger-check", headers=org.auth())
        assert r.status_code == 202, r.text
        assert sorted((j["country"], j["status"]) for j in r.json()["jobs"]) == sorted(
            [(HOME, "queued"), (ABROAD, "queued")]
        )
