"""Every notice goes through the one notify entry and names its source; each source draws on
its own hourly budget per organization, so a flood of findings and report findings (which
strangers can cause) never costs an outage notice: it is claimed first, delivered by the
worker's first pass, and never `dropped`. Past their own budgets the flooded notices are
dropped with a history line naming their setting; another organization's flood never touches
this one's budgets. Maintenance is decided in the entry, per source and kind. Real PostgreSQL,
the real outbox worker, a real SMTP relay on loopback."""

from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from controller.monitors import store as monitors
from controller.monitors.store import Monitor
from controller.notify.budget import Budget
from controller.notify.entry import Notice, Source, notify
from controller.notify.recipients import Outgoing
from shared.timefmt import utcnow
from tests.alerting.conftest import DOWN, Rig
from tests.alerting.test_notification_budget import MidHour, sent_to, worker
from tests.conftest import make_tenant

FLOOD = 1_000
REPORTS = 300
SPREAD = 25  # monitors the flood is about
BUDGET = Budget(finding=10, report=5)  # outage notices keep the defaults (500 e-mails an hour)


async def _monitor(rig: Rig, row: asyncpg.Record) -> Monitor:
    async with rig.pool.acquire() as conn:
        watched = await monitors.watched(conn, row["id"])
    assert watched is not None
    return watched.monitor


async def flood(rig: Rig, rows: list[asyncpg.Record], source: Source, n: int, kind: str) -> None:
    """`n` notices from `source` about the monitors of `rows` in turn, each to the monitor's
    e-mail, through `notify`. (Notices to one recipient about one monitor go one at a time, in
    the order written, so the flood is spread over monitors to drain quickly.)"""
    ms = [await _monitor(rig, row) for row in rows]
    async with rig.pool.acquire() as conn, conn.transaction():
        for i in range(n):
            m = ms[i % len(ms)]
            assert m.notification_email is not None
            note = Outgoing(
                kind,
                "email",
                m.notification_email,
                f"[mailprobe] {source} {i}",
                "text",
                None,
                f"flood:{source}:{m.id}:{i}",
            )
            await notify(conn, Notice(source, m.organization_id, m, None, [note]), utcnow())


async def statuses(rig: Rig, organization_id: int) -> dict[tuple[str, str], int]:
    """(source, status) → how many outbox rows about the organization's monitors."""
    found = await rig.fetch(
        "SELECT o.source, o.status, count(*) AS n FROM notification_outbox o"
        " JOIN monitors m ON m.id = o.monitor_id WHERE m.organization_id = $1"
        " GROUP BY o.source, o.status",
        organization_id,
    )
    return {(r["source"], r["status"]): r["n"] for r in found}


async def budgets(rig: Rig, organization_id: int) -> dict[tuple[str, str], tuple[int, int]]:
    found = await rig.fetch(
        "SELECT source, channel, used, held FROM notification_budget WHERE organization_id = $1",
        organization_id,
    )
    return {(r["source"], r["channel"]): (r["used"], r["held"]) for r in found}


def dropped_count(source: str) -> float:
    labels = {"source": source, "channel": "email"}
    return REGISTRY.get_sample_value("mailprobe_notifications_dropped_total", labels) or 0.0


async def test_an_outage_during_a_flood_of_findings_and_reports_goes_out_first_never_dropped(
    rig: Rig,
) -> None:
    m = await rig.monitor(name="Inbound MX", phone=None)
    dropped = {s: dropped_count(s) for s in ("outage", "finding", "report")}
    others = [await rig.monitor(name=f"Other {i}", phone=None) for i in range(SPREAD - 1)]
    await flood(rig, [m, *others], Source.FINDING, FLOOD, "finding")
    await flood(rig, [m, *others], Source.REPORT, REPORTS, "finding")
    await rig.rounds(m, 0, [DOWN, DOWN])  # the real outage, as the alerter queues it
    outbox = worker(rig, MidHour(), BUDGET)

    # The worker's first pass, as without a flood: the outage notice is claimed first.
    assert await outbox.deliver() >= 1
    assert "[mailprobe] DOWN: Inbound MX" in sent_to(rig, "oncall@customer.test")
    await outbox.burst()

    got = await statuses(rig, rig.tenant.org_id)
    print(
        f"\noutbox after a flood of {FLOOD} findings and {REPORTS} reports: {sorted(got.items())}"
    )
    assert got == {
        ("outage", "sent"): 1,
        ("finding", "sent"): 10,
        ("finding", "dropped"): FLOOD - 10,
        ("report", "sent"): 5,
        ("report", "dropped"): REPORTS - 5,
        ("owners", "sent"): 2,  # the owners' notices, outside the budgets
    }
    # Each dropped notice's history line names its own source's setting.
    lines = await rig.fetch(
        "SELECT o.source, h.error FROM alert_history h JOIN notification_outbox o"
        " ON o.id = h.outbox_id JOIN monitors m ON m.id = h.monitor_id"
        " WHERE m.organization_id = $1 AND h.status = 'dropped'",
        rig.tenant.org_id,
    )
    assert len(lines) == FLOOD - 10 + REPORTS - 5
    setting = {
        "finding": "ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR",
        "report": "ORG_MAX_REPORT_NOTIFICATIONS_PER_HOUR",
    }
    assert all(setting[r["source"]] in r["error"] for r in lines)
    assert not any("ORG_MAX_NOTIFICATIONS_PER_HOUR" in r["error"] for r in lines)
    counted = {s: dropped_count(s) - before for s, before in dropped.items()}
    assert counted == {"outage": 0, "finding": FLOOD - 10, "report": REPORTS - 5}
    # The outage budget was drawn on by the outage notice alone.
    assert await budgets(rig, rig.tenant.org_id) == {
        ("outage", "email"): (1, 0),
        ("finding", "email"): (10, FLOOD - 10),
        ("report", "email"): (5, REPORTS - 5),
    }
    # The owners heard once per budget reached, outside every budget.
    assert sorted(" ".join(s.split()) for s in sent_to(rig, rig.tenant.emails["owner"])) == [
        "[mailprobe] finding e-mail notifications held back: hourly budget reached",
        "[mailprobe] report finding e-mail notifications held back: hourly budget reached",
    ]


async def test_another_organizations_flood_never_touches_this_ones_budgets(rig: Rig) -> None:
    other = await make_tenant(rig.pool)
    theirs = [
        await rig.monitor(name=f"Theirs {i}", email="ops@other.test", phone=None, tenant=other)
        for i in range(SPREAD)
    ]
    ours = await rig.monitor(name="Ours", phone=None)
    await flood(rig, theirs, Source.FINDING, FLOOD, "finding")
    await flood(rig, [ours], Source.FINDING, 3, "finding")
    await rig.rounds(ours, 0, [DOWN, DOWN])
    await worker(rig, MidHour(), BUDGET).burst()

    assert await statuses(rig, rig.tenant.org_id) == {("outage", "sent"): 1, ("finding", "sent"): 3}
    assert await budgets(rig, rig.tenant.org_id) == {
        ("outage", "email"): (1, 0),
        ("finding", "email"): (3, 0),
    }
    assert await budgets(rig, other.org_id) == {("finding", "email"): (10, FLOOD - 10)}
    assert sent_to(rig, rig.tenant.emails["owner"]) == []


async def test_a_notice_about_another_organizations_monitor_is_refused(rig: Rig) -> None:
    other = await make_tenant(rig.pool)
    m = await _monitor(rig, await rig.monitor())
    note = Outgoing("finding", "email", "x@customer.test", "s", "t", None, "cross:1")
    async with rig.pool.acquire() as conn:
        with pytest.raises(ValueError, match="organization"):
            await notify(conn, Notice(Source.FINDING, other.org_id, m, None, [note]), utcnow())
        channels = Outgoing("finding", "channels", "", "s", "t", None, "cross:2")
        with pytest.raises(ValueError, match="channels"):
            await notify(conn, Notice(Source.FLEET, other.org_id, None, None, [channels]), utcnow())
    assert (
        await rig.fetch("SELECT 1 FROM notification_outbox WHERE dedupe_key LIKE 'cross:%'") == []
    )


@pytest.mark.parametrize("how", ["status", "window"])
async def test_maintenance_holds_back_what_it_holds_for_every_writer(rig: Rig, how: str) -> None:
    """In maintenance (the status, or a window of the customer open now) the entry queues no
    outage notice, finding (posture, blocklists) or back-off; report findings, login caps and
    refused OAuth2 tokens still go."""
    row = await rig.monitor(status="maintenance" if how == "status" else "active", phone=None)
    if how == "window":
        await rig.fetch(
            "INSERT INTO maintenance_windows (organization_id, customer_id, kind, starts_at,"
            " ends_at) VALUES ($1, $2, 'once', $3, $4)",
            rig.tenant.org_id,
            rig.tenant.customer_id,
            utcnow() - timedelta(minutes=5),
            utcnow() + timedelta(hours=1),
        )
    m = await _monitor(rig, row)
    sent = [
        (Source.OUTAGE, "down"),
        (Source.FINDING, "finding"),
        (Source.FINDING, "cert_expiry"),
        (Source.ACCOUNT, "credentials"),
        (Source.ACCOUNT, "delivery"),
        (Source.REPORT, "finding"),
        (Source.ACCOUNT, "login_cap"),
        (Source.ACCOUNT, "oauth2_token"),
    ]
    async with rig.pool.acquire() as conn:
        for source, kind in sent:
            note = Outgoing(kind, "email", "x@customer.test", "s", "t", None, f"{how}:{kind}")
            await notify(conn, Notice(source, m.organization_id, m, None, [note]), utcnow())
    queued = await rig.outbox_rows(row)
    assert sorted((r["source"], r["kind"]) for r in queued) == [
        ("account", "login_cap"),
        ("account", "oauth2_token"),
        ("report", "finding"),
    ]
