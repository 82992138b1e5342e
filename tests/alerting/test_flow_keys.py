"""One flow incident, one alert at a pager (issue 80): its opening, each change and its end go
under one key however its outages started. POP3S (slower to call down: 4 failing rounds) fails
a round before IMAPS on the same server, but IMAPS's outage opens first and is told alone (its
own notice); POP3S's outage, which started earlier, joins later. PagerDuty must see one alert,
triggered, updated and resolved under the key of the outage that opened the flow incident.
Real PostgreSQL, the rig, a loopback receiver speaking PagerDuty's Events API."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from controller.settings import ControllerSettings
from testkit.alerting.receivers import Receiver
from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import LINKS, MONITOR_SECRET, Rig
from tests.alerting.test_channels import SECRETS, create, sender, worker
from tests.alerting.test_flow_incidents import failing

HOST = "mail.example.test"
UP = {"DE": "up", "FR": "up", "US": "up"}


@pytest.fixture
async def pagerduty() -> AsyncIterator[Receiver]:
    r = Receiver("pagerduty", SECRETS["pagerduty"])
    await r.__aenter__()
    yield r
    await r.__aexit__(None, None, None)


async def test_a_later_joining_outage_that_started_earlier_keeps_the_pagers_one_alert(
    rig: Rig,
    settings: ControllerSettings,
    channel_api: httpx.AsyncClient,
    pagerduty: Receiver,
) -> None:
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        notify_reminder_minutes=30,
        incident_group_wait_seconds=30,
        incident_group_interval_seconds=0,
        links=LINKS,
        clock=rig.clock,
    )
    box: dict[str, Any] = {"user": "probe", "password": MONITOR_SECRET, "tls": True}
    imaps = await rig.monitor(
        kind="imap", name="IMAPS", hostname=HOST, port=993, config=box, email=None, phone=None
    )
    pop3s = await rig.monitor(
        kind="pop3",
        name="POP3S",
        hostname=HOST,
        port=995,
        config={**box, "protocol": "pop3"},
        email=None,
        phone=None,
    )
    r = await channel_api.put(
        f"/api/imap-pop-monitors/{pop3s['public_id']}/alert-settings",
        json={"downAfterRounds": 4},
        headers=rig.tenant.auth("admin"),
    )
    assert r.status_code == 200, r.text
    ids = [str(imaps["public_id"]), str(pop3s["public_id"])]
    await create(channel_api, rig.tenant, "pagerduty", pagerduty.url, monitorIds=ids)
    send = worker(rig, sender(rig, settings))

    async def play(first: int, rounds: list[tuple[dict[str, str], dict[str, str]]]) -> None:
        for i, (imap, pop3) in enumerate(rounds):
            await rig.round(imaps, first + i, imap)
            await rig.round(pop3s, first + i, pop3)
            await rig.alerter.burst()

    down = failing("refused")
    # POP3S fails from round 0, IMAPS from round 1: IMAPS's outage opens first (round 2).
    await play(0, [(UP, down), (down, down), (down, down)])
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    assert await send.burst() == 1  # IMAPS's own notice: the flow incident had one monitor
    # POP3S's outage (started at round 0) opens at round 3 and joins: one change.
    await play(3, [(down, down)])
    assert await send.burst() == 1
    opened = {name: (await rig.incidents(m))[0] for name, m in (("imap", imaps), ("pop3", pop3s))}
    assert opened["pop3"]["started_at"] < opened["imap"]["started_at"]
    assert opened["pop3"]["flow_incident_id"] == opened["imap"]["flow_incident_id"]
    # Both recover: one resolve.
    await play(4, [(UP, UP)] * 3)
    assert await send.burst() == 1

    sent = [s.json() for s in pagerduty.delivered]
    assert [d["event_action"] for d in sent] == ["trigger", "trigger", "resolve"]
    keys = {d["dedup_key"] for d in sent}
    assert len(keys) == 1, keys
    (key,) = keys
    assert str(imaps["public_id"]) in key  # the outage that opened the flow incident
    assert pagerduty.closed == [key] and not pagerduty.open_alerts
