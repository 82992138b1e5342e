"""An outage is confirmed in seconds: a real SMTP server goes away, the agents of both countries
find it refused, the controller checks again at once (a confirmation round) and the incident
opens and is notified seconds after the first failure, though the monitor's interval is an hour
(`downAfterRounds` 2 would otherwise take two hours)."""

import asyncio
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx

from controller.alerting.alerter import Alerter
from shared.timefmt import parse_iso
from testkit.peers.smtp import SmtpPeer
from tests.api.helpers import SMTP
from tests.conftest import Tenant
from tests.e2e.conftest import ABROAD, HOME, Agents, Controller
from tests.e2e.helpers import make_due_now, of_rounds_since, smtp_monitor, wait_results


async def test_an_outage_seen_from_every_country_is_down_seconds_after_the_first_failure(
    api: httpx.AsyncClient, org: Tenant, controller: Controller, agents: Agents, alerter: Alerter
) -> None:
    async with SmtpPeer() as peer:
        created = await smtp_monitor(
            api,
            org,
            peer.port,
            allowedCheckCountryCodes=[HOME, ABROAD],
            timeoutSeconds=2,
            notificationEmail="oncall@customer.test",
        )
        pid = created["publicId"]
        due = await make_due_now(controller.pool, pid)
        # The round made due, and the first round (claimed on creation) when it is another,
        # ran from both countries while the server was there: none is left to fail.
        made_due = of_rounds_since(due, 2)

        def settled(items: list[dict[str, Any]]) -> bool:
            per_round = Counter(i["scheduledAt"] for i in items)
            return made_due(items) and all(n == 2 for n in per_round.values())

        await wait_results(api, org, pid, settled)
    # The server is gone: its port refuses. The next round finds it so from both countries.
    await make_due_now(controller.pool, pid)
    items = await wait_results(api, org, pid, lambda i: sum(r["status"] == "down" for r in i) >= 2)
    first_failure = min(parse_iso(r["finishedAt"]) for r in items if r["status"] == "down")
    deadline = time.monotonic() + 15
    while True:
        r = await api.get(f"{SMTP}/{pid}/incidents", headers=org.auth())
        assert r.status_code == 200, r.text
        if r.json()["items"]:
            break
        assert time.monotonic() < deadline, "no incident within 15 s of the failing round"
        await asyncio.sleep(0.05)
    (incident,) = r.json()["items"]
    assert incident["causeKind"] == "refused"
    assert sorted(incident["countries"]) == sorted([ABROAD, HOME])
    async with controller.pool.acquire() as conn:
        queued = await conn.fetch(
            "SELECT o.kind, o.created_at FROM notification_outbox o JOIN monitors m"
            " ON m.id = o.monitor_id WHERE m.public_id = $1",
            pid,
        )
    assert [q["kind"] for q in queued] == ["down"]
    assert queued[0]["created_at"] >= first_failure
    results = (await api.get(f"{SMTP}/{pid}/results", headers=org.auth())).json()["items"]
    failing_rounds = sorted({r["scheduledAt"] for r in results if r["status"] == "down"})
    assert len(failing_rounds) == 2, (
        "the scheduled round and its confirmation round",
        incident.get("startedAt"),
        sorted(
            (r["scheduledAt"], r["country"], r["status"], r.get("errorKind"), r.get("finishedAt"))
            for r in results
        ),
    )
    # The confirmation round went at once, not at the next round of the hourly grid.
    assert parse_iso(failing_rounds[-1]) - parse_iso(failing_rounds[0]) < timedelta(hours=1)
