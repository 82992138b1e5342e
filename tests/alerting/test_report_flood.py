"""A flood of reports naming something new each time (strangers can send them) against an
organization's real outage: the reports go through the real intake, their findings' notices
draw on the report budget and, after each monitor's first, wait for one digest; the outage
notice is claimed by the outbox worker's first pass and sent, never dropped. Real PostgreSQL,
the real alerter and outbox worker, a real SMTP relay on loopback."""

import uuid
from datetime import timedelta

import pytest

from controller.notify.budget import Budget
from controller.reports import intake
from testkit.reports import made
from tests.alerting.conftest import DOWN, LINKS, Rig
from tests.alerting.test_notice_sources import budgets, statuses
from tests.alerting.test_notification_budget import MidHour, sent_to, worker

pytestmark = pytest.mark.breadth

DOMAINS = 10  # monitors, each naming its own domain
ROUNDS = 4  # reports about each domain, each naming NEW MX not reported before
NEW = 10


async def test_an_outage_during_a_report_finding_flood_is_sent_first_and_the_flood_digested(
    rig: Rig,
) -> None:
    # The outage is on a server of its own: findings about a server in an open incident are
    # that incident's evidence, not notices (tests/reports/test_report_burst_in_outage.py).
    # One clock for the intake, the digests and the outbox worker: half past an hour, the
    # digests due 10 minutes after each domain's first notice, inside the same budget window.
    clock = MidHour()
    limits = intake.Limits(digest=timedelta(minutes=10))
    down = await rig.monitor(name="Inbound MX", phone=None, hostname="mx-in.customer.test")
    reported = [await rig.monitor(name=f"Reported {i}", phone=None) for i in range(DOMAINS)]
    domains = [f"d{i}-{uuid.uuid4().hex[:8]}.example.com" for i in range(DOMAINS)]
    async with rig.pool.acquire() as conn:
        for m, d in zip(reported, domains, strict=True):
            await conn.execute("UPDATE monitors SET mail_domain = $2 WHERE id = $1", m["id"], d)
    for k in range(ROUNDS):
        for d in domains:
            failures = [
                {
                    "result-type": "starttls-not-supported",
                    "receiving-mx-hostname": f"mx{k}-{j}.{d}",
                    "failed-session-count": 10,
                }
                for j in range(NEW)
            ]
            report = made.tls_gzip(made.tls_json(d, failures=failures))
            taken = await intake.take(
                rig.pool,
                rig.tenant.org_id,
                report,
                "https",
                "flood",
                LINKS,
                limits=limits,
                now=clock(),
            )
            assert taken.stored, taken
    await rig.rounds(down, 0, [DOWN, DOWN])  # the real outage, as the alerter queues it

    outbox = worker(rig, clock, Budget())
    assert await outbox.deliver() >= 1  # the worker's first pass, as without a flood
    assert "[mailprobe] DOWN: Inbound MX" in sent_to(rig, "oncall@customer.test")
    await outbox.burst()
    news = DOMAINS * ROUNDS * NEW
    got = await statuses(rig, rig.tenant.org_id)
    print(f"\n{DOMAINS * ROUNDS} reports naming {news} new MX: outbox {sorted(got.items())}")
    # One notice per domain went; the rest of the news waits for its digest.
    assert got == {("outage", "sent"): 1, ("report", "sent"): DOMAINS}
    held = await rig.fetch(
        "SELECT news, codes FROM report_fact_notices WHERE organization_id = $1",
        rig.tenant.org_id,
    )
    assert (
        sorted((r["news"], tuple(r["codes"])) for r in held)
        == [((ROUNDS - 1) * NEW, ("tls_failures_reported",))] * DOMAINS
    )

    assert await intake.send_digests(rig.pool, LINKS, clock()) == 0  # none due yet
    clock.shift = timedelta(minutes=11)
    assert await intake.send_digests(rig.pool, LINKS, clock()) >= DOMAINS
    await outbox.burst()
    got = await statuses(rig, rig.tenant.org_id)
    assert got == {("outage", "sent"): 1, ("report", "sent"): 2 * DOMAINS}
    digests = [
        s for s in sent_to(rig, "oncall@customer.test") if s.startswith("[mailprobe] Digest")
    ]
    assert len(digests) == DOMAINS
    assert await budgets(rig, rig.tenant.org_id) == {
        ("outage", "email"): (1, 0),
        ("report", "email"): (2 * DOMAINS, 0),
    }
