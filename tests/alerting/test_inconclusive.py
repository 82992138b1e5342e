"""Inconclusive results (an agent whose own path failed its self-check: a canary of the port, or
its resolver check) in the alerter, on real PostgreSQL, NATS events, the outbox and its relay
and SMS peers: like missed ones, never failing, never down, never a notification, never a
confirmation round; a round mixing them with real failures is judged on the real ones."""

from tests.alerting.conftest import DOWN, UP, Rig

INC = "inconclusive"
ALL_INCONCLUSIVE = {"DE": INC, "FR": INC, "US": INC}


async def confirmations(rig: Rig, monitor_id: int) -> int:
    (row,) = await rig.fetch(
        "SELECT count(*) AS n FROM confirmation_rounds WHERE monitor_id = $1", monitor_id
    )
    n: int = row["n"]
    return n


async def test_every_country_inconclusive_for_many_rounds_never_notifies_nor_confirms(
    rig: Rig,
) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [ALL_INCONCLUSIVE] * 6)
    state = await rig.state(m)
    assert state["state"] == "missed"
    assert (state["consecutive_down_rounds"], state["consecutive_up_rounds"]) == (0, 0)
    assert await rig.incidents(m) == []
    assert await rig.outbox_rows(m) == []
    assert await confirmations(rig, m["id"]) == 0
    assert await rig.outbox().burst() == 0
    assert rig.relay.messages == [] and rig.sms.requests == []
    (event,) = await rig.events(m)  # one state change, to missed, naming the countries
    assert (event.state, event.countries) == ("missed", ["DE", "FR", "US"])
    assert event.cause.startswith("Inconclusive: the agent's own network path")
    assert "canary mx.canary.test:25 timed out too" in event.cause
    stored = await rig.fetch(
        "SELECT DISTINCT status, error_kind FROM check_results WHERE monitor_id = $1", m["id"]
    )
    assert [tuple(r.values()) for r in stored] == [(INC, INC)]


async def test_a_round_mixing_real_failures_and_inconclusive_countries_is_judged_on_the_real_ones(
    rig: Rig,
) -> None:
    m = await rig.monitor()
    mixed = {"DE": "timeout", "FR": "timeout", "US": INC}
    await rig.rounds(m, 0, [mixed, mixed])
    (incident,) = await rig.incidents(m)
    assert incident["countries"] == ["DE", "FR"]  # not the inconclusive US
    assert incident["cause_kind"] == "timeout"
    assert "US" not in incident["cause"]
    assert sorted(r["kind"] for r in await rig.outbox_rows(m)) == ["down", "down"]

    lone = await rig.monitor(name="Lone failure")
    one_real = {"DE": "refused", "FR": INC, "US": INC}  # one of three expected failed: no majority
    await rig.rounds(lone, 0, [one_real] * 4)
    assert (await rig.state(lone))["state"] == "degraded"
    assert await rig.incidents(lone) == []
    assert await rig.outbox_rows(lone) == []
    assert await confirmations(rig, lone["id"]) == 0


async def test_inconclusive_rounds_neither_recover_nor_extend_an_open_incident(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN])
    (incident,) = await rig.incidents(m)
    await rig.rounds(m, 2, [ALL_INCONCLUSIVE] * 3 + [UP, ALL_INCONCLUSIVE, UP])
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] == rig.at(5)  # two up rounds recovered it, from the first
    kinds = sorted(r["kind"] for r in await rig.outbox_rows(m))
    assert kinds == ["down", "down", "recovered", "recovered"]  # no reminder, no second outage
