"""Confirmation rounds, the alerter's side: a recent failing round asks the scheduler for one
(once, within CONFIRM_ROUNDS_PER_MINUTE, unless switched off), and a failing confirmation round
counts as the next failing round, so the incident opens without waiting an interval."""

from datetime import datetime, timedelta

import asyncpg
import httpx

from controller.alerting import Alerter
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


async def test_confirmations_past_the_cap_per_minute_are_not_asked_for(rig: Rig) -> None:
    capped = Alerter(rig.pool, rig.js, rig.job_ids, confirm_per_minute=1, clock=rig.clock)
    m, n = await rig.monitor(), await rig.monitor()
    first = rig.clock() - timedelta(seconds=3)
    await rig.round(m, 0, DOWN, at=first)
    await capped.burst()
    await rig.round(n, 0, DOWN, at=first)
    await capped.burst()
    assert await requested(rig, m) == [first]
    assert await requested(rig, n) == []
    state = await rig.state(n)
    assert (state["state"], state["consecutive_down_rounds"]) == ("degraded", 1)


async def test_one_organizations_failures_cannot_use_up_the_confirmations_of_others(
    rig: Rig,
) -> None:
    """Confirmation rounds draw on the organization's allowance for triggered checks
    (ORG_MAX_CHECKS_PER_MINUTE a minute): here 6 checks, two rounds of three countries. The
    first organization's third failing monitor gets no confirmation, so the global cap of three
    still has room for another organization's."""
    alerter = Alerter(
        rig.pool, rig.js, rig.job_ids, confirm_per_minute=3, checks_per_minute=6, clock=rig.clock
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
