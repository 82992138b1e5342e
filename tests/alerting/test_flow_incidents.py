"""One mail-flow problem, one page (issue 66): monitors failing on one server, a declared
dependency or a login failing the same way at the same time join one flow incident, told once
when it opens (after the group wait), once per material change, once when it ends, per
recipient and channel whatever the number of monitors; each monitor keeps its own incidents.
Real PostgreSQL, the rig's relay and SMS gateway."""

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from controller.alerting.alerter import Alerter
from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import LINKS, MONITOR_SECRET, Rig
from tests.conftest import make_tenant

HOST = "mail.example.test"
UP3 = {"DE": "up", "FR": "up", "US": "up"}


def failing(kind: str) -> dict[str, str]:
    return {"DE": kind, "FR": kind, "US": "up"}


def grouping(rig: Rig, wait_s: int = 30, interval_s: int = 0) -> Alerter:
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        notify_reminder_minutes=30,
        incident_group_wait_seconds=wait_s,
        incident_group_interval_seconds=interval_s,
        links=LINKS,
        clock=rig.clock,
    )
    return rig.alerter


async def dovecot_monitors(rig: Rig) -> dict[str, asyncpg.Record]:
    """IMAPS, POP3S, a round trip reading the IMAP mailbox and an SMTP submission whose SASL
    login goes through Dovecot: all on one host, one on-call address and phone."""
    imap: dict[str, Any] = {"user": "probe", "password": MONITOR_SECRET, "tls": True}
    return {
        "imap": await rig.monitor(kind="imap", name="IMAPS", hostname=HOST, port=993, config=imap),
        "pop3": await rig.monitor(
            kind="pop3",
            name="POP3S",
            hostname=HOST,
            port=995,
            config={**imap, "protocol": "pop3"},
        ),
        "trip": await rig.monitor(
            kind="roundtrip",
            name="Round trip",
            hostname=HOST,
            port=587,
            config={
                "send": {"auth": {"user": "probe", "pass": MONITOR_SECRET}},
                "to": "probe@example.test",
                "receive": {**imap, "hostname": HOST, "port": 993},
            },
        ),
        "submission": await rig.monitor(name="Submission", hostname=HOST, port=587),
    }


FAILS = {"imap": "refused", "pop3": "refused", "trip": "refused", "submission": "temporary"}


async def play(rig: Rig, ms: dict[str, asyncpg.Record], first: int, outcomes: Any) -> None:
    """Rounds `first`, `first + 1`, … of every monitor, each round judged for all at once."""
    for i, by_name in enumerate(outcomes):
        for name, m in ms.items():
            await rig.round(m, first + i, by_name[name])
        await rig.alerter.burst()


async def outbox(rig: Rig) -> list[asyncpg.Record]:
    return await rig.fetch("SELECT * FROM notification_outbox ORDER BY id")


async def flows(rig: Rig) -> list[asyncpg.Record]:
    return await rig.fetch(
        "SELECT * FROM flow_incidents WHERE organization_id = $1 ORDER BY id", rig.tenant.org_id
    )


async def test_dovecot_down_is_one_incident_one_page_one_recovery(rig: Rig) -> None:
    grouping(rig)
    ms = await dovecot_monitors(rig)
    down = {n: failing(FAILS[n]) for n in ms}
    await play(rig, ms, 0, [down, down])

    # Each monitor has its own outage, all in one flow incident, told at once: every monitor
    # on the host is judged, so the first notice does not wait out its group wait.
    for m in ms.values():
        (incident,) = await rig.incidents(m)
        assert incident["ended_at"] is None
    (flow,) = await flows(rig)
    members = await rig.fetch(
        "SELECT count(*) AS n FROM incidents WHERE flow_incident_id = $1", flow["id"]
    )
    assert members[0]["n"] == 4
    rows = await outbox(rig)
    assert sorted((r["kind"], r["channel"]) for r in rows) == [("down", "email"), ("down", "sms")]
    assert await rig.outbox().burst() == 2
    (mail,) = rig.relay.messages
    assert mail["Subject"] == "[mailprobe] DOWN: IMAPS and 3 more"
    text = mail.get_body(("plain",))
    assert text is not None
    plain = text.get_content()
    for name in ("IMAPS", "POP3S", "Round trip", "Submission"):
        assert name in plain
    assert f"{HOST}:993" in plain and f"{HOST}:995" in plain
    assert "Seen from: DE, FR" in plain
    assert MONITOR_SECRET not in plain
    assert len(rig.sms.requests) == 1

    # More failing rounds tell nothing new; the recovery is told once.
    await play(rig, ms, 2, [down])
    assert len(await outbox(rig)) == 2
    up = dict.fromkeys(ms, UP3)
    await play(rig, ms, 3, [up, up, up])
    for m in ms.values():
        (incident,) = await rig.incidents(m)
        assert incident["ended_at"] is not None
    (flow,) = await flows(rig)
    assert flow["ended_at"] is not None and flow["notified"]
    assert await rig.outbox().burst() == 2
    assert [m["Subject"] for m in rig.relay.messages][1].startswith(
        "[mailprobe] Recovered: IMAPS and 3 more after"
    )
    assert len(rig.relay.messages) == 2 and len(rig.sms.requests) == 2


async def test_a_monitor_joining_later_is_one_change_notice_then_silence(rig: Rig) -> None:
    grouping(rig, wait_s=0)
    imap: dict[str, Any] = {"user": "probe", "password": MONITOR_SECRET, "tls": True}
    first = await rig.monitor(kind="imap", name="IMAPS", hostname=HOST, port=993, config=imap)
    await rig.rounds(first, 0, [failing("refused")] * 2)
    # One monitor: its own notice, as before flows.
    assert [m["Subject"] for m in rig.relay.messages] == []
    assert await rig.outbox().burst() == 2
    assert rig.relay.messages[0]["Subject"] == "[mailprobe] DOWN: IMAPS"

    second = await rig.monitor(
        kind="imap",
        name="IMAPS webmail",
        hostname=HOST.upper() + ".",
        port=993,
        config=imap,
        email="webmail@customer.test",
    )
    await rig.rounds(second, 2, [failing("refused")] * 2)
    (flow,) = await flows(rig)
    assert (await rig.incidents(second))[0]["flow_incident_id"] == flow["id"]
    assert await rig.outbox().burst() == 3  # the change: both addresses, the one phone
    changed = sorted(m["To"] for m in rig.relay.messages[1:])
    assert changed == ["oncall@customer.test", "webmail@customer.test"]
    subject = rig.relay.messages[1]["Subject"]
    assert subject == "[mailprobe] DOWN, new monitor: IMAPS and 1 more"

    # The second one recovering and failing again changes nothing anyone is told.
    await rig.rounds(second, 4, [UP3, UP3, failing("refused"), failing("refused")])
    assert len(await rig.incidents(second)) == 2
    assert await rig.outbox().burst() == 0

    await rig.rounds(first, 8, [UP3, UP3])
    assert await rig.outbox().burst() == 0  # the second is still down
    await rig.rounds(second, 8, [UP3, UP3])
    assert await rig.outbox().burst() == 3
    ends = [m["Subject"] for m in rig.relay.messages[3:]]
    assert all(s.startswith("[mailprobe] Recovered: IMAPS and 1 more") for s in ends), ends


async def test_a_declared_dependency_joins_and_unrelated_servers_do_not(rig: Rig) -> None:
    grouping(rig)
    relay = await rig.monitor(name="Relay", hostname="relay.example.test", port=25, config={})
    mx = await rig.monitor(name="MX", hostname="mx.example.test", port=25, config={})
    other = await rig.monitor(name="Elsewhere", hostname="smtp.other.test", port=25, config={})
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET depends_on = $2 WHERE id = $1",
            mx["id"],
            [str(relay["public_id"])],
        )
    ms = {"relay": relay, "mx": mx, "other": other}
    down = dict.fromkeys(ms, failing("timeout"))
    await play(rig, ms, 0, [down, down])
    found = await flows(rig)
    assert len(found) == 2
    by_flow = await rig.fetch(
        "SELECT flow_incident_id, array_agg(monitor_id ORDER BY monitor_id) AS ms"
        " FROM incidents WHERE monitor_id = ANY($1::bigint[]) GROUP BY flow_incident_id",
        [m["id"] for m in ms.values()],
    )
    assert sorted(r["ms"] for r in by_flow) == sorted([[relay["id"], mx["id"]], [other["id"]]])
    # Two problems: two first notices per channel, not three.
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    assert await rig.outbox().burst() == 4
    subjects = sorted(m["Subject"] for m in rig.relay.messages)
    assert subjects == ["[mailprobe] DOWN: Elsewhere", "[mailprobe] DOWN: Relay and 1 more"]


async def test_two_alerters_at_once_make_one_flow_incident_and_one_page(rig: Rig) -> None:
    """Eight monitors of one server, judged by two alerters (lanes and replicas) at once: one
    flow incident, and its first notice queued once per recipient."""
    one = grouping(rig)
    other = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        incident_group_wait_seconds=30,
        links=LINKS,
        clock=rig.clock,
        batch=1,
    )
    ms = {
        f"m{i}": await rig.monitor(name=f"Relay {i}", hostname=HOST, port=587, phone=None)
        for i in range(8)
    }
    for n in (0, 1):
        for m in ms.values():
            await rig.round(m, n, failing("timeout"))
    await asyncio.gather(one.burst(), other.burst(), one.burst())
    assert len(await flows(rig)) == 1
    joined = await rig.fetch(
        "SELECT count(DISTINCT flow_incident_id) AS f, count(*) AS n FROM incidents"
        " WHERE monitor_id = ANY($1::bigint[])",
        [m["id"] for m in ms.values()],
    )
    assert (joined[0]["f"], joined[0]["n"]) == (1, 8)
    rig.clock.shift += timedelta(seconds=31)
    await asyncio.gather(one.burst(), other.burst())
    rows = await outbox(rig)
    assert [(r["kind"], r["channel"]) for r in rows] == [("down", "email")], [
        (r["dedupe_key"], r["subject"]) for r in rows
    ]


async def test_the_api_lists_one_incident_per_mail_flow_problem_to_its_organization(
    rig: Rig, api: httpx.AsyncClient, alert_pool: asyncpg.Pool
) -> None:
    grouping(rig, wait_s=0)
    imap: dict[str, Any] = {"user": "probe", "password": MONITOR_SECRET, "tls": True}
    a = await rig.monitor(kind="imap", name="IMAPS", hostname=HOST, port=993, config=imap)
    b = await rig.monitor(kind="imap", name="Webmail", hostname=HOST, port=993, config=imap)
    await play(
        rig,
        {"a": a, "b": b},
        0,
        [{"a": failing("refused"), "b": {"DE": "timeout", "FR": "timeout", "US": "refused"}}] * 2,
    )
    r = await api.get("/api/incidents", headers=rig.tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    (incident,) = r.json()["items"]
    assert incident["state"] == "open" and incident["notified"]
    assert incident["countries"] == ["DE", "FR", "US"]
    assert incident["causeKinds"] == ["refused", "timeout"]
    assert [m["name"] for m in incident["monitors"]] == ["IMAPS", "Webmail"]
    assert {m["monitorId"] for m in incident["monitors"]} == {
        str(a["public_id"]),
        str(b["public_id"]),
    }
    assert all(m["hostname"] == HOST and m["port"] == 993 for m in incident["monitors"])
    assert MONITOR_SECRET not in r.text
    other = await make_tenant(alert_pool)
    theirs = await api.get("/api/incidents", headers=other.auth())
    assert theirs.status_code == 200 and theirs.json()["items"] == []
    assert (await api.get("/api/incidents")).status_code == 401


async def test_a_flow_incident_whose_monitors_are_deleted_before_its_notice_ends_untold(
    rig: Rig,
) -> None:
    grouping(rig)
    m = await rig.monitor(name="Gone soon", hostname=HOST, port=25, config={})
    # Another monitor on the host is still being checked (a failing round short of an
    # incident): the first notice waits for it, at most the group wait.
    checked = await rig.monitor(name="Still checked", hostname=HOST, port=587, config={})
    await rig.rounds(checked, 0, [failing("timeout")])
    await rig.rounds(m, 0, [failing("timeout")] * 2)
    (flow,) = await flows(rig)
    assert flow["due_at"] is not None and flow["ended_at"] is None
    async with rig.pool.acquire() as conn:
        await conn.execute("DELETE FROM monitors WHERE id = $1", m["id"])
    rig.clock.shift += timedelta(seconds=31)
    assert await rig.alerter.teller.send_due() == 0
    (flow,) = await flows(rig)
    assert flow["ended_at"] is not None and not flow["notified"]
    assert await rig.alerter.teller.send_due() == 0


async def history(api: httpx.AsyncClient, rig: Rig, m: asyncpg.Record) -> list[Any]:
    kind = {"smtp": "smtp", "roundtrip": "roundtrip"}.get(m["type"], "imap-pop")
    r = await api.get(
        f"/api/{kind}-monitors/{m['public_id']}/alert-history",
        headers=rig.tenant.auth("readonly"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["items"]), body
    items: list[Any] = body["items"]
    return items


async def test_every_monitor_a_grouped_notice_names_lists_its_delivery_attempts(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    grouping(rig)
    ms = await dovecot_monitors(rig)
    down = {n: failing(FAILS[n]) for n in ms}
    await play(rig, ms, 0, [down, down])
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    assert await rig.outbox().burst() == 2  # one e-mail, one SMS for the four monitors

    seen = {n: await history(api, rig, m) for n, m in ms.items()}
    for name, items in seen.items():
        assert sorted((a["kind"], a["channel"], a["status"]) for a in items) == [
            ("down", "email", "sent"),
            ("down", "sms", "sent"),
        ], name
        # each names that monitor's own outage
        (incident,) = await rig.incidents(ms[name])
        assert {a["incidentId"] for a in items} == {str(incident["public_id"])}, name
    # one notice: the same attempts under every monitor
    ids = {n: sorted(a["id"] for a in items) for n, items in seen.items()}
    assert len({tuple(v) for v in ids.values()}) == 1, ids
