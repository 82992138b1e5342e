"""Confirmation rounds, the alerter's side: a recent failing round asks the scheduler for one
(once, within CONFIRM_ROUNDS_PER_MINUTE, unless switched off), and a failing confirmation round
counts as the next failing round, so the incident opens without waiting an interval."""

from datetime import datetime, timedelta

import asyncpg
import httpx

from controller.scheduling import confirm_store as confirmations
from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import DOWN, ONE, UP, Rig
from tests.conftest import make_tenant


async def requested(rig: Rig, m: asyncpg.Record) -> list[datetime]:
    rows = await rig.fetch(
        "SELECT after_round FROM confirmation_rounds WHERE monitor_id = $1 ORDER BY after_round",
        m["id"],
    )
    return [r["after_round"] for r in rows]


async def test_a_failing_round_asks_for_a_confirmation_that_opens_the_incident_at_once(
    rig: Rig,
) -> None:
    m = await rig.monitor()
    first = rig.clock() - timedelta(seconds=3)
    await rig.round(m, 0, DOWN, at=first)
    await rig.alerter.burst()
    assert await requested(rig, m) == [first]
    assert (await rig.state(m))["state"] == "degraded"
    assert await rig.incidents(m) == []

    await rig.alerter.burst()  # evaluated again: asked once
    assert await requested(rig, m) == [first]

    confirmation = first + timedelta(seconds=2)  # the scheduler's triggered round
    await rig.round(m, 0, DOWN, at=confirmation, trigger=True)
    await rig.alerter.burst()
    (incident,) = await rig.incidents(m)
    assert incident["started_at"] == first
    assert incident["notified"] is True
    assert {r["kind"] for r in await rig.outbox_rows(m)} == {"down"}
    assert await requested(rig, m) == [first]  # down: no further confirmation


async def test_a_confirmation_that_passes_ends_the_streak_and_notifies_nobody(rig: Rig) -> None:
    m = await rig.monitor()
    first = rig.clock() - timedelta(seconds=3)
    await rig.round(m, 0, DOWN, at=first)
    await rig.round(m, 0, UP, at=first + timedelta(seconds=1), trigger=True)
    await rig.alerter.burst()
    state = await rig.state(m)
    assert (state["state"], state["consecutive_down_rounds"]) == ("up", 0)
    assert await rig.incidents(m) == [] and await rig.outbox_rows(m) == []


async def test_a_lone_failing_country_asks_for_no_confirmation(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.round(m, 0, ONE, at=rig.clock() - timedelta(seconds=3))
    await rig.alerter.burst()
    assert await requested(rig, m) == []
    assert (await rig.state(m))["state"] == "degraded"


async def test_an_old_failing_round_judged_late_asks_for_no_confirmation(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN])  # 40 minutes ago
    assert await requested(rig, m) == []


async def test_confirmations_switched_off_for_the_monitor_or_the_organization(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m, n = await rig.monitor(), await rig.monitor()
    url = f"/api/smtp-monitors/{m['public_id']}/alert-settings"
    r = await api.put(url, headers=rig.tenant.auth("member"), json={"confirmFailures": False})
    assert r.status_code == 200, r.text
    assert r.json()["effective"]["confirmFailures"] is False
    first = rig.clock() - timedelta(seconds=3)
    await rig.round(m, 0, DOWN, at=first)
    await rig.alerter.burst()
    assert await requested(rig, m) == []

    r = await api.put(
        "/api/alert-settings", headers=rig.tenant.auth(), json={"confirmFailures": False}
    )
    assert r.status_code == 200 and r.json()["confirmFailures"] is False
    await rig.round(n, 0, DOWN, at=first)
    await rig.alerter.burst()
    assert await requested(rig, n) == []
    r = await api.put(url, headers=rig.tenant.auth("member"), json={"confirmFailures": True})
    assert r.json()["effective"]["confirmFailures"] is True  # the monitor's own value wins


async def claim(rig: Rig, now: datetime, per_minute: int) -> confirmations.Claimed:
    async with rig.pool.acquire() as conn, conn.transaction():
        return await confirmations.claim(conn, now, per_minute, 1000)


async def fresh_budget(rig: Rig) -> None:
    """No request of an earlier test waiting, the global budget whole."""
    async with rig.pool.acquire() as conn:
        await conn.execute("DELETE FROM confirmation_rounds")
        await conn.execute("UPDATE confirmation_budget SET tat = NULL")


async def test_confirmations_past_the_rate_are_not_sent_and_expire_with_the_interval(
    rig: Rig,
) -> None:
    """Pins the global cap, now applied when sending: with 1 a minute the second request waits,
    and once its monitor's interval has passed (the next scheduled round has come) it is
    dropped unsent, counted `capped`."""
    await fresh_budget(rig)
    m, n = await rig.monitor(), await rig.monitor()
    first = rig.clock() - timedelta(seconds=3)
    for x in (m, n):
        await rig.round(x, 0, DOWN, at=first)
        await rig.alerter.burst()
    assert await requested(rig, m) == [first] and await requested(rig, n) == [first]
    now = rig.clock()
    assert (await claim(rig, now, 1)).rounds == [(m["id"], first)]
    assert (await claim(rig, now + timedelta(seconds=30), 1)).rounds == []
    late = await claim(rig, now + timedelta(seconds=61), 1)
    assert (late.rounds, late.expired) == ([], 1)
    assert await requested(rig, n) == []
    state = await rig.state(n)  # judged as ever: the streak waits for the next round
    assert (state["state"], state["consecutive_down_rounds"]) == ("degraded", 1)


async def test_confirmations_switched_off_by_a_zero_rate_are_not_asked_for(rig: Rig) -> None:
    """Pins `CONFIRM_ROUNDS_PER_MINUTE=0`: no request waits for a budget that never comes."""
    none = wired_alerter(
        rig.pool, rig.js, rig.job_ids, confirm_rounds_per_minute=0, clock=rig.clock
    )
    m = await rig.monitor()
    await rig.round(m, 0, DOWN, at=rig.clock() - timedelta(seconds=3))
    await none.burst()
    assert await requested(rig, m) == []


async def test_confirmations_draw_on_the_organizations_trigger_allowance(rig: Rig) -> None:
    """Confirmation rounds draw on the organization's allowance for triggered checks
    (ORG_MAX_CHECKS_PER_MINUTE a minute): here 6 checks, two rounds of three countries. The
    first organization's third failing monitor gets no confirmation; another organization's
    allowance is its own."""
    alerter = wired_alerter(
        rig.pool, rig.js, rig.job_ids, org_max_checks_per_minute=6, clock=rig.clock
    )
    mine = [await rig.monitor(name=f"Mine {i}") for i in range(3)]
    theirs = await rig.monitor(name="Theirs", tenant=await make_tenant(rig.pool))
    first = rig.clock() - timedelta(seconds=3)
    for m in [*mine, theirs]:
        await rig.round(m, 0, DOWN, at=first)
        await alerter.burst()
    assert [await requested(rig, m) for m in mine] == [[first], [first], []]
    assert await requested(rig, theirs) == [first]
    state = await rig.state(mine[2])  # judged as ever: the streak waits for the next round
    assert (state["state"], state["consecutive_down_rounds"]) == ("degraded", 1)


async def test_one_organization_flapping_at_its_whole_allowance_delays_anothers_by_a_slot(
    rig: Rig,
) -> None:
    """Pins the fair share at the defaults (CONFIRM_ROUNDS_PER_MINUTE 600,
    ORG_MAX_CHECKS_PER_MINUTE 2000): one organization's 166 two-country monitors at the
    shortest interval (10 s: 1,992 scheduled checks a minute, within its budget) fail every
    round, so it asks 996 confirmations a minute, all within its trigger allowance and more
    than the global budget. Another organization's one failing monitor, 45 s in (after the
    flood has asked 750), still has its confirmation sent at the scheduler's next pass. Before,
    the flood took the whole minute's budget and the other's request was refused (`capped`):
    its incident waited for the next scheduled round. Simulated time, a pass every 0.5 s
    (the scheduler's longest idle); the trigger allowance runs on the database's clock."""
    await fresh_budget(rig)
    tenant = await make_tenant(rig.pool)
    flood = [await rig.monitor(["DE", "FR"], name=f"Flap {i}", tenant=tenant) for i in range(166)]
    other = await rig.monitor(["DE", "FR"], name="Real outage")
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET check_interval = 10 WHERE organization_id = $1", tenant.org_id
        )
    cost_s = 2 * 60.0 / 2000  # as the alerter: two countries of ORG_MAX_CHECKS_PER_MINUTE
    start = rig.clock().replace(microsecond=0)
    step = timedelta(milliseconds=500)
    sent: dict[int, datetime] = {}  # monitor (the other's) → when sent
    flood_sent: list[datetime] = []
    asked = 0
    other_at = start + timedelta(seconds=45)
    for k in range(1, 121):  # 60 s
        now = start + k * step
        async with rig.pool.acquire() as conn, conn.transaction():
            for i, m in enumerate(flood):  # monitor i fails its rounds at i/166 of 10 s
                at = start + timedelta(seconds=i * 10 / 166)
                while at <= now:
                    if at > now - step:
                        outcome = await confirmations.request(
                            conn, m["id"], at, now, tenant.org_id, cost_s
                        )
                        assert outcome == "requested"
                        asked += 1
                    at += timedelta(seconds=10)
            if now == other_at:
                outcome = await confirmations.request(
                    conn, other["id"], now, now, rig.tenant.org_id, cost_s
                )
                assert outcome == "requested"  # before: `capped`, the flood had asked 750
        for monitor_id, _ in (await claim(rig, now, 600)).rounds:
            if monitor_id == other["id"]:
                sent[monitor_id] = now
            else:
                flood_sent.append(now)
    assert asked > 600
    assert sent == {other["id"]: other_at}  # at the pass it was asked in
    # The flood alone had the whole budget (10 a second, after a burst of at most 5 s)...
    assert 10 * 45 <= len([t for t in flood_sent if t <= other_at]) <= 50 + 10 * 45
    # ...and the global rate held with both asking.
    assert len(flood_sent) + len(sent) <= 50 + 10 * 60
