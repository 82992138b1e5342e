"""Audited claims of issue 66 about flow incidents, each reproduced on real PostgreSQL and the
rig's relay and SMS gateway: a flow incident's reminder reaches its recipients whichever of its
monitors recovered; the incidents API is read-only and one organization's; deleting or pausing
the last monitor down ends its incident; evidence survives a merge; two customers' monitors are
never one incident; a round no country passed does not recover an incident; a first notice
falling in maintenance, or a monitor's part of it, is told after the maintenance."""

import dataclasses
from datetime import timedelta

import asyncpg
import httpx

from controller.access import customers_store as customers
from controller.monitors import store as monitors
from controller.notify.entry import Notice, Source, notify
from controller.notify.recipients import to_recipients
from controller.notify.texts import Texts
from shared.timefmt import utcnow
from tests.alerting.conftest import Rig
from tests.alerting.test_flow_incidents import grouping
from tests.conftest import make_tenant

HOST = "mail.example.test"
UP3 = {"DE": "up", "FR": "up", "US": "up"}
DOWN3 = {"DE": "refused", "FR": "refused", "US": "refused"}


async def statuses(rig: Rig, kind: str) -> list[tuple[str, str, str]]:
    rows = await rig.fetch(
        "SELECT channel, status, coalesce(last_error, '') AS error FROM notification_outbox"
        " WHERE kind = $1 ORDER BY id",
        kind,
    )
    return [(r["channel"], r["status"], r["error"]) for r in rows]


async def first_recovered(rig: Rig) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Two monitors of one server down together (one flow incident); the first recovers."""
    first = await rig.monitor(name="Relay one", hostname=HOST, port=587, config={})
    second = await rig.monitor(name="Relay two", hostname=HOST, port=587, config={})
    for n in (0, 1):
        await rig.round(first, n, DOWN3)
        await rig.round(second, n, DOWN3)
        await rig.alerter.burst()
    rig.clock.shift += timedelta(seconds=31)  # the group wait
    await rig.alerter.burst()
    await rig.rounds(first, 2, [UP3, UP3])
    return first, second


async def test_a_flow_reminder_is_sent_while_its_first_monitor_has_recovered(rig: Rig) -> None:
    """Two monitors of one server page once; the older recovers, the other stays down: the
    flow incident is still open, so its reminder goes out (it is not dropped as the reminder
    of a closed incident)."""
    grouping(rig, wait_s=30)
    _, second = await first_recovered(rig)
    assert await rig.outbox().burst() == 2  # one page: e-mail and SMS, for both monitors
    await rig.rounds(second, 2, [DOWN3, DOWN3])
    (flow,) = await open_flows(rig)
    assert flow["ended_at"] is None
    rig.clock.shift += timedelta(minutes=31)
    await rig.rounds(second, 4, [DOWN3])
    await rig.outbox().burst()
    reminders = await statuses(rig, "reminder")
    print("flow reminders:", reminders)
    assert sorted((c, s) for c, s, _ in reminders) == [("email", "sent"), ("sms", "sent")]
    subjects = [m["Subject"] for m in rig.relay.messages]
    assert len(subjects) == 2 and "Relay one and 1 more" in subjects[1], subjects


async def test_incidents_read_only_for_every_role_and_one_organization_each(
    rig: Rig, api: httpx.AsyncClient, alert_pool: asyncpg.Pool
) -> None:
    """Two organizations' monitors on one shared MX fail together: each organization lists one
    incident of its own monitors, nothing of the other's (names, hosts, counts); no role can
    change an incident through the API; bad paging is a 400 naming the parameter."""
    grouping(rig, wait_s=0)
    other = await make_tenant(alert_pool)
    ours = [await rig.monitor(name=f"Ours {i}", hostname=HOST, port=25) for i in range(3)]
    theirs = await rig.monitor(name="Theirs secret-name", hostname=HOST, port=25, tenant=other)
    for n in (0, 1):
        for m in [*ours, theirs]:
            await rig.round(m, n, DOWN3)
        await rig.alerter.burst()
    for role in ("readonly", "member", "admin", "owner"):
        r = await api.get("/api/incidents", headers=rig.tenant.auth(role))
        assert r.status_code == 200, (role, r.text)
        (incident,) = r.json()["items"]
        assert sorted(m["name"] for m in incident["monitors"]) == ["Ours 0", "Ours 1", "Ours 2"]
        assert "secret-name" not in r.text and str(theirs["public_id"]) not in r.text
        assert r.json()["total"] == 1
    r = await api.get("/api/incidents", headers=other.auth("readonly"))
    (mine,) = r.json()["items"]
    assert [m["name"] for m in mine["monitors"]] == ["Theirs secret-name"]
    assert "Ours" not in r.text
    for role in ("readonly", "member", "admin"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for path in ("/api/incidents", f"/api/incidents/{incident['id']}"):
                got = await api.request(method, path, headers=rig.tenant.auth(role), json={})
                assert got.status_code in (404, 405), (role, method, path, got.status_code)
    for bad, field in (("page=0", "page"), ("perPage=101", "perPage"), ("page=x", "page")):
        got = await api.get(f"/api/incidents?{bad}", headers=rig.tenant.auth("readonly"))
        assert got.status_code == 400 and field in got.text, (bad, got.status_code, got.text)
    flows = await rig.fetch(
        "SELECT organization_id FROM flow_incidents WHERE organization_id = ANY($1::bigint[])",
        [rig.tenant.org_id, other.org_id],
    )
    assert sorted(f["organization_id"] for f in flows) == sorted([rig.tenant.org_id, other.org_id])


async def test_deleting_the_last_monitor_down_closes_its_incident(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """A flow incident whose last open outage's monitor is deleted ends: it is not listed
    open (with nothing down) until some other outage of the organization happens to open."""
    grouping(rig, wait_s=0)
    _, second = await first_recovered(rig)
    r = await api.delete(
        f"/api/smtp-monitors/{second['public_id']}", headers=rig.tenant.auth("admin")
    )
    assert r.status_code == 204, r.text
    r = await api.get("/api/incidents", headers=rig.tenant.auth("readonly"))
    (incident,) = r.json()["items"]
    print("after the delete:", incident["state"], [m["state"] for m in incident["monitors"]])
    assert incident["state"] == "closed" and incident["endedAt"] is not None
    (flow,) = await rig.fetch(
        "SELECT * FROM flow_incidents WHERE organization_id = $1", rig.tenant.org_id
    )
    assert flow["ended_at"] is not None and flow["due_at"] is None


async def test_pausing_the_last_monitor_down_closes_its_incident(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """Pausing a monitor closes its open incident (silently) at the alerter's next pass, and
    with it the flow incident it was the last open outage of."""
    grouping(rig, wait_s=0)
    _, second = await first_recovered(rig)
    r = await api.patch(
        f"/api/smtp-monitors/{second['public_id']}",
        headers=rig.tenant.auth("admin"),
        json={"status": "paused"},
    )
    assert r.status_code == 200, r.text
    for _ in range(3):
        rig.clock.shift += timedelta(minutes=2)
        await rig.alerter.burst()
    (incident,) = (await api.get("/api/incidents", headers=rig.tenant.auth())).json()["items"]
    print("after the pause:", incident["state"], [m["state"] for m in incident["monitors"]])
    assert [m["state"] for m in incident["monitors"]] == ["closed", "closed"]
    assert incident["state"] == "closed"


async def test_evidence_of_a_flow_incident_merged_into_another_is_kept(rig: Rig) -> None:
    """Two untold flow incidents merge when an outage bridges them (a monitor declaring both
    servers' monitors): the finding attached as evidence to the younger one (never sent on
    its own) moves with its outages instead of being deleted with it."""
    grouping(rig, wait_s=60)
    one = await rig.monitor(name="MX one", hostname="mx1.example.test", port=25, config={})
    two = await rig.monitor(name="MX two", hostname="mx2.example.test", port=25, config={})
    both = await rig.monitor(name="Gateway", hostname="gw.example.test", port=25, config={})
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET depends_on = $2 WHERE id = $1",
            both["id"],
            [str(one["public_id"]), str(two["public_id"])],
        )
    # The gateway fails first, short of an incident: the servers' first notices wait for it.
    await rig.rounds(both, 0, [DOWN3])
    await rig.rounds(one, 0, [DOWN3, DOWN3])
    await rig.rounds(two, 0, [DOWN3, DOWN3])
    assert len(await open_flows(rig)) == 2
    assert not await finding(rig, two, "listed on zen.spamhaus.org")  # evidence: not sent
    await rig.rounds(both, 1, [DOWN3])
    (flow,) = await open_flows(rig)
    evidence = await rig.fetch(
        "SELECT flow_incident_id, summary FROM flow_incident_evidence e"
        " JOIN flow_incidents f ON f.id = e.flow_incident_id WHERE f.organization_id = $1",
        rig.tenant.org_id,
    )
    print("evidence after the merge:", [(e["flow_incident_id"], e["summary"]) for e in evidence])
    assert [e["flow_incident_id"] for e in evidence] == [flow["id"]]
    rig.clock.shift += timedelta(seconds=61)
    await rig.alerter.burst()
    assert await rig.outbox().burst() == 2
    body = rig.relay.messages[0].get_body(("plain",))
    assert body is not None and "zen.spamhaus.org" in body.get_content()


async def open_flows(rig: Rig) -> list[asyncpg.Record]:
    return await rig.fetch(
        "SELECT * FROM flow_incidents WHERE organization_id = $1 AND ended_at IS NULL",
        rig.tenant.org_id,
    )


async def finding(rig: Rig, m: asyncpg.Record, what: str) -> bool:
    """A posture finding about `m` through the one entry; True when queued."""
    async with rig.pool.acquire() as conn, conn.transaction():
        monitor = await monitors.get(conn, m["id"], [m["type"]], None)
        assert monitor is not None
        texts = Texts(f"[mailprobe] Finding: {what}", f"{what}\n", f"<p>{what}</p>", what)
        notes = to_recipients("finding", monitor, texts, f"finding:{m['id']}:{what}")
        return await notify(
            conn, Notice(Source.FINDING, monitor.organization_id, monitor, None, notes), utcnow()
        )


async def test_two_customers_on_one_mx_are_told_of_their_own_monitors_only(rig: Rig) -> None:
    """An organization's two customers (each with its own addresses, channels and status
    page) have monitors on one shared MX: its outage is an incident of each customer, told
    to each customer's recipients with its own monitors only (names, hosts, counts); a
    finding about one customer's monitor is never the evidence of the other's incident."""
    grouping(rig, wait_s=30)
    async with rig.pool.acquire() as conn:
        second = await customers.create(conn, rig.tenant.org_id, "Second customer")
    tenant2 = dataclasses.replace(rig.tenant, customer_id=second.id)
    ours = await rig.monitor(name="Alpha inbound", hostname=HOST, port=25, config={}, phone=None)
    theirs = await rig.monitor(
        name="Beta inbound",
        hostname=HOST,
        port=25,
        config={},
        email="noc@beta.test",
        phone=None,
        tenant=tenant2,
    )
    beta_web = await rig.monitor(
        name="Beta web relay",
        hostname=HOST,
        port=587,
        config={},
        email="noc@beta.test",
        phone=None,
        tenant=tenant2,
    )
    for n in (0, 1):
        await rig.round(ours, n, DOWN3)
        await rig.round(theirs, n, DOWN3)
        await rig.alerter.burst()
    # Beta's relay on the same host is up: a finding about it is evidence of Beta's incident.
    assert not await finding(rig, beta_web, "STARTTLS missing on mail.example.test:587")
    (evidence,) = await rig.fetch(
        "SELECT array_agg(DISTINCT i.monitor_id) AS ms FROM flow_incident_evidence e"
        " JOIN incidents i ON i.flow_incident_id = e.flow_incident_id"
        " JOIN flow_incidents f ON f.id = e.flow_incident_id WHERE f.organization_id = $1",
        rig.tenant.org_id,
    )
    assert evidence["ms"] == [theirs["id"]]
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    await rig.outbox().burst()
    by_to: dict[str, list[str]] = {}
    for m in rig.relay.messages:
        body = m.get_body(("plain",))
        assert body is not None
        by_to.setdefault(m["To"], []).append(f"{m['Subject']}\n{body.get_content()}")
    print({to: [t.splitlines()[0] for t in texts] for to, texts in by_to.items()})
    alpha = "\n".join(by_to["oncall@customer.test"])
    beta = "\n".join(by_to["noc@beta.test"])
    assert "Beta" not in alpha and "Alpha" not in beta
    assert "DOWN: Alpha inbound" in alpha and "DOWN: Beta inbound" in beta
    assert "STARTTLS" not in alpha
    flows = await open_flows(rig)
    assert len(flows) == 2


async def test_late_results_of_two_countries_do_not_recover_an_open_incident(rig: Rig) -> None:
    """The server answers one round (a flap) in a long outage; of the next round only DE's
    failure is in when it closes, FR's and US's failures come late: nobody saw it recover."""
    m = await rig.monitor(name="Relay", hostname=HOST, port=587, config={})
    await rig.rounds(m, 0, [DOWN3, DOWN3, UP3])
    await rig.round(m, 3, {"DE": "refused"})
    await rig.rounds(m, 4, [DOWN3])  # round 3 is judged closed, with DE's result alone
    await rig.round(m, 3, {"FR": "refused", "US": "refused"})
    await rig.alerter.burst()
    await rig.rounds(m, 5, [DOWN3, DOWN3])
    found = await rig.incidents(m)
    kinds = [r["kind"] for r in await rig.outbox_rows(m)]
    print("incidents:", [(i["started_at"], i["ended_at"]) for i in found], "notices:", kinds)
    assert len(found) == 1 and found[0]["ended_at"] is None
    assert "recovered" not in kinds


async def test_an_outage_whose_first_notice_fell_in_maintenance_is_told_after_it(
    rig: Rig,
) -> None:
    """The monitor goes into maintenance during its flow incident's group wait: the first
    notice, due then, is held; still down once the maintenance is over, people hear of it (as
    a monitor that opened in maintenance always did)."""
    grouping(rig, wait_s=30)
    m = await rig.monitor(name="Relay", hostname=HOST, port=587, config={})
    # Another monitor on the host is still being checked (a failing round short of an
    # incident): the first notice waits for it, the whole group wait.
    checked = await rig.monitor(name="Still checked", hostname=HOST, port=25, config={})
    await rig.rounds(checked, 0, [DOWN3])
    await rig.rounds(m, 0, [DOWN3, DOWN3])
    assert await rig.outbox_rows(m) == []  # the group wait
    await set_status(rig, m, "maintenance")
    rig.clock.shift += timedelta(seconds=31)
    await rig.rounds(m, 2, [DOWN3])
    assert await rig.outbox_rows(m) == []  # held: in maintenance
    await set_status(rig, m, "active")
    await rig.rounds(m, 3, [DOWN3])
    rig.clock.shift += timedelta(seconds=31)
    await rig.rounds(m, 4, [DOWN3])
    kinds = [r["kind"] for r in await rig.outbox_rows(m)]
    print("after the maintenance:", kinds)
    assert kinds == ["down", "down"]  # e-mail and SMS


async def set_status(rig: Rig, m: asyncpg.Record, status: str) -> None:
    async with rig.pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET status = $2 WHERE id = $1", m["id"], status)


async def test_a_monitor_in_maintenance_in_a_told_flow_incident_is_told_after_it(
    rig: Rig,
) -> None:
    """A monitor in maintenance joins another's flow incident, whose first notice skips its
    recipients; still down after its maintenance, its own recipients hear of the incident
    then, once, and nobody else is paged again."""
    grouping(rig, wait_s=30)
    held = await rig.monitor(
        name="Held relay", hostname=HOST, port=587, config={}, email="held@customer.test"
    )
    other = await rig.monitor(name="Other relay", hostname=HOST, port=587, config={})
    await set_status(rig, held, "maintenance")
    for n in (0, 1):
        await rig.round(held, n, DOWN3)
        await rig.round(other, n, DOWN3)
        await rig.alerter.burst()
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    assert [r["target"] for r in await rig.outbox_rows(other) if r["channel"] == "email"] == [
        "oncall@customer.test"
    ]
    await set_status(rig, held, "active")
    for n in (2, 3):
        await rig.round(held, n, DOWN3)
        await rig.round(other, n, DOWN3)
        rig.clock.shift += timedelta(seconds=301)
        await rig.alerter.burst()
    targets = [r["target"] for r in await rig.outbox_rows(held) if r["channel"] == "email"]
    print("the held monitor's e-mails after its maintenance:", targets)
    assert targets == ["held@customer.test"]
    others = [r["target"] for r in await rig.outbox_rows(other) if r["channel"] == "email"]
    assert others == ["oncall@customer.test"]
    (late,) = [r for r in await rig.outbox_rows(held) if r["channel"] == "email"]
    assert late["subject"] == "[mailprobe] DOWN: Held relay and 1 more", late["subject"]
    # Its recovery, with the other's, ends the flow incident once for everybody.
    for n in (4, 5):
        await rig.round(held, n, UP3)
        await rig.round(other, n, UP3)
        await rig.alerter.burst()
    ends = await rig.fetch(
        "SELECT target FROM notification_outbox WHERE kind = 'recovered' AND channel = 'email'"
        " AND monitor_id = ANY($1::bigint[]) ORDER BY target",
        [held["id"], other["id"]],
    )
    assert [r["target"] for r in ends] == ["held@customer.test", "oncall@customer.test"]
