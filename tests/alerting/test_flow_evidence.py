"""Evidence from the world joins an open incident (issue 66): a finding about a monitor (its
posture, a listing, a report finding) while a mail-flow problem touching it is open, on its
own outage or one of the same host or mail domain, is attached to that incident instead of
paging on its own, and the incident's next notice lists it; outside an incident a finding is
sent as before. Real PostgreSQL, the rig's relay."""

from typing import Any

import asyncpg

from controller.monitors import store as monitors
from controller.notify.entry import Notice, Source, notify
from controller.notify.evidence_store import EVIDENCE_MAX
from controller.notify.recipients import to_recipients
from controller.notify.texts import Texts
from shared.timefmt import utcnow
from tests.alerting.conftest import MONITOR_SECRET, Rig

HOST = "mail.example.test"
FAILING = {"DE": "refused", "FR": "refused", "US": "up"}
UP3 = {"DE": "up", "FR": "up", "US": "up"}
CHANNELS = 2  # a rig monitor's notes: e-mail and SMS


async def finding(rig: Rig, m: asyncpg.Record, what: str, source: Source = Source.FINDING) -> None:
    """What posture, the blocklists or a report would send about `m`, through the one entry."""
    async with rig.pool.acquire() as conn, conn.transaction():
        monitor = await monitors.get(conn, m["id"], [m["type"]], None)
        assert monitor is not None
        texts = Texts(f"[mailprobe] Finding: {what}", f"{what}\n", f"<p>{what}</p>", what)
        notes = to_recipients("finding", monitor, texts, f"finding:{m['id']}:{what}")
        await notify(conn, Notice(source, monitor.organization_id, monitor, None, notes), utcnow())


async def kinds(rig: Rig, m: asyncpg.Record) -> list[str]:
    return [r["kind"] for r in await rig.outbox_rows(m)]


async def test_a_finding_during_an_outage_is_evidence_and_the_recovery_lists_it(rig: Rig) -> None:
    box: dict[str, Any] = {"user": "probe", "password": MONITOR_SECRET, "tls": True}
    imap = await rig.monitor(kind="imap", name="IMAPS", hostname=HOST, port=993, config=box)
    mx = await rig.monitor(name="MX", hostname=HOST, port=25, config={})
    elsewhere = await rig.monitor(name="Elsewhere", hostname="mx.other.test", port=25, config={})
    await rig.rounds(imap, 0, [FAILING, FAILING])
    assert await kinds(rig, imap) == ["down", "down"]  # e-mail and SMS

    await finding(rig, mx, "STARTTLS missing on mail.example.test:25")  # the same host
    await finding(rig, imap, "listed on zen.spamhaus.org", Source.FINDING)
    await finding(rig, mx, "TLS-RPT: 40 sessions failed for mail.example.test", Source.REPORT)
    await finding(rig, elsewhere, "SPF missing for other.test")  # no incident there
    assert await kinds(rig, mx) == []
    assert [k for k in await kinds(rig, imap) if k == "finding"] == []
    assert await kinds(rig, elsewhere) == ["finding", "finding"]
    evidence = await rig.fetch(
        "SELECT source, kind, summary FROM flow_incident_evidence ORDER BY id"
    )
    assert [(e["source"], e["kind"]) for e in evidence] == [
        ("finding", "finding"),
        ("finding", "finding"),
        ("report", "finding"),
    ]

    await rig.rounds(imap, 2, [UP3, UP3])
    assert await rig.outbox().burst() == 6  # down, recovered (e-mail, SMS); Elsewhere's two
    (recovered,) = [
        m for m in rig.relay.messages if m["Subject"].startswith("[mailprobe] Recovered")
    ]
    body = recovered.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Evidence: [mailprobe] Finding: STARTTLS missing on mail.example.test:25" in text
    assert "TLS-RPT: 40 sessions failed" in text and "(report)" in text

    # Over: a finding is a finding again.
    await finding(rig, mx, "STARTTLS missing again")
    assert await kinds(rig, mx) == ["finding", "finding"]


async def test_evidence_of_one_incident_is_bounded(rig: Rig) -> None:
    imap = await rig.monitor(kind="imap", name="IMAPS", hostname=HOST, port=993, config={})
    await rig.rounds(imap, 0, [FAILING, FAILING])
    for n in range(EVIDENCE_MAX + 5):
        await finding(rig, imap, f"report {n}", Source.REPORT)
    count = await rig.fetch("SELECT count(*) AS n FROM flow_incident_evidence")
    assert count[0]["n"] == EVIDENCE_MAX
    # Past its room a report finding is not attached, and is sent as it is (its own budget).
    assert [k for k in await kinds(rig, imap) if k == "finding"] == ["finding"] * 5 * CHANNELS


async def test_reports_filling_the_evidence_never_drop_a_genuine_findings_notice(rig: Rig) -> None:
    """110 anonymous report findings during an outage, then the monitor's own posture finding
    (`auth_in_clear`): reports' evidence is bounded apart from the findings', and a finding
    with no room is sent, never neither kept nor sent."""
    imap = await rig.monitor(kind="imap", name="IMAPS", hostname=HOST, port=993, config={})
    await rig.rounds(imap, 0, [FAILING, FAILING])
    for n in range(EVIDENCE_MAX + 10):
        await finding(rig, imap, f"TLS-RPT: forged report {n}", Source.REPORT)
    await finding(rig, imap, "auth_in_clear: the server offers login before TLS")
    kept = await rig.fetch(
        "SELECT summary FROM flow_incident_evidence WHERE source = 'finding' ORDER BY id"
    )
    sent = [r for r in await rig.outbox_rows(imap) if r["kind"] == "finding"]
    print(f"{EVIDENCE_MAX + 10} report findings: {len(kept)} findings kept, {len(sent)} sent")
    assert [r["summary"] for r in kept] == [
        "[mailprobe] Finding: auth_in_clear: the server offers login before TLS"
    ]
    # Each finding's room apart: its own fills only its own, and past it the finding is sent.
    for n in range(EVIDENCE_MAX):
        await finding(rig, imap, f"posture {n}")
    counted = await rig.fetch(
        "SELECT source, count(*) AS n FROM flow_incident_evidence GROUP BY source ORDER BY source"
    )
    assert [(r["source"], r["n"]) for r in counted] == [
        ("finding", EVIDENCE_MAX),
        ("report", EVIDENCE_MAX),
    ]
    assert len([k for k in await kinds(rig, imap) if k == "finding"]) == (10 + 1) * CHANNELS
