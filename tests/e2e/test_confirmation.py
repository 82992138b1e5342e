"""An outage is confirmed in seconds: a real SMTP server goes away, the agents of both countries
find it refused, the controller checks again at once (a confirmation round) and the incident
opens and is notified seconds after the first failure, though the monitor's interval is an hour
(`downAfterRounds` 2 would otherwise take two hours).

Time is the subject, so the controller runs on a skipping clock (tests/e2e/virtual.py): the
scheduler's and the alerter's passes are stepped and the waits between them skipped. Every
bound below is in the clock's seconds; the checks themselves run in real time."""

from collections import Counter
from datetime import timedelta
from typing import Any

import httpx

from shared.timefmt import parse_iso
from testkit.peers.smtp import SmtpPeer
from tests.api.helpers import SMTP
from tests.conftest import Tenant
from tests.e2e.helpers import smtp_monitor
from tests.e2e.virtual import FIRST, SECOND, Virtual, due_now, stepped_results


async def test_an_outage_seen_from_every_country_is_down_seconds_after_the_first_failure(
    virtual_api: httpx.AsyncClient, virtual_org: Tenant, virtual: Virtual
) -> None:
    api, org = virtual_api, virtual_org
    async with SmtpPeer() as peer:
        created = await smtp_monitor(
            api,
            org,
            peer.port,
            allowedCheckCountryCodes=[FIRST, SECOND],
            timeoutSeconds=2,
            notificationEmail="oncall@customer.test",
        )
        pid = created["publicId"]

        def whole(items: list[dict[str, Any]]) -> bool:
            per_round = Counter(i["scheduledAt"] for i in items)
            return bool(per_round) and all(n == 2 for n in per_round.values())

        # The first round (at creation) ran from both countries while the server was there.
        passed = await stepped_results(virtual, api, org, pid, whole, within=30)
        assert [i["status"] for i in passed] == ["up", "up"], passed
    # The server is gone: its port refuses. The next round finds it so from both countries.
    await due_now(virtual, pid)
    items = await stepped_results(
        virtual, api, org, pid, lambda i: sum(r["status"] == "down" for r in i) >= 2, within=30
    )
    first_failure = min(parse_iso(r["finishedAt"]) for r in items if r["status"] == "down")

    async def opened() -> list[dict[str, Any]] | None:
        r = await api.get(f"{SMTP}/{pid}/incidents", headers=org.auth())
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["items"]
        return found or None

    # The bound is the clock's, from the failing round's results: 15 s.
    (incident,) = await virtual.stepper.until("an incident", opened, within=15)
    assert incident["causeKind"] == "refused"
    assert sorted(incident["countries"]) == sorted([FIRST, SECOND])
    assert parse_iso(incident["startedAt"]) - first_failure < timedelta(seconds=15), incident
    queued = await virtual.pool.fetch(
        "SELECT o.kind, o.created_at FROM notification_outbox o JOIN monitors m"
        " ON m.id = o.monitor_id WHERE m.public_id = $1",
        pid,
    )
    assert [q["kind"] for q in queued] == ["down"]
    assert first_failure <= queued[0]["created_at"] < first_failure + timedelta(seconds=15)
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
    assert parse_iso(failing_rounds[-1]) - parse_iso(failing_rounds[0]) < timedelta(seconds=15)
