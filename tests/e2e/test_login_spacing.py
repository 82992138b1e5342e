"""Logins to one account go country after country, end to end: a triggered round of a monitor
with credentials lists every country queued, and the second country's login reaches the server
LOGIN_SPACING_SECONDS (5 s by default, as `serve` runs the scheduler) after the first."""

import asyncio
import time

import httpx

from tests.api.helpers import SMTP
from tests.conftest import Tenant
from tests.e2e.conftest import ABROAD, HOME, Agents, Controller
from tests.e2e.helpers import smtp_monitor
from tests.peers.smtp import SmtpPeer


async def test_a_triggered_round_logs_in_from_one_country_then_the_next(
    api: httpx.AsyncClient, org: Tenant, controller: Controller, agents: Agents
) -> None:
    async with SmtpPeer(auth_in_clear=True) as peer:
        created = await smtp_monitor(
            api,
            org,
            peer.port,
            allowedCheckCountryCodes=[HOME, ABROAD],
            smtpConfig={"auth": {"user": "alice", "pass": "s3cret"}, "allowPlaintextAuth": True},
        )
        r = await api.post(f"{SMTP}/{created['publicId']}/trigger-check", headers=org.auth())
        assert r.status_code == 202, r.text
        assert sorted((j["country"], j["status"]) for j in r.json()["jobs"]) == sorted(
            [(HOME, "queued"), (ABROAD, "queued")]
        )
        seen: list[float] = []
        deadline = time.monotonic() + 12
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"logins seen: {len(seen)}"
            if len(peer.auths) > len(seen):
                seen.append(time.monotonic())
            await asyncio.sleep(0.02)
    assert seen[1] - seen[0] >= 4.5
