"""Inconclusive results (an agent whose own path failed its self-check: a canary of the port, or
its resolver check) in the alerter, on real PostgreSQL, NATS events, the outbox and its relay
and SMS peers: like missed ones, never failing, never down, never a notification, never a
confirmation round; a round mixing them with real failures is judged on the real ones."""

from datetime import timedelta

import asyncpg
import msgspec

from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from shared.timefmt import iso_ms, utcnow
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


async def store_with_tls(rig: Rig, monitor: asyncpg.Record, n: int, status: str) -> None:
    """Round `n`: FR up on the server's certificate; DE `status` on a certificate for another
    host that does not verify (what a captive portal or an intercepting proxy on DE's path
    would show), stored as the ingester stores agents' results."""
    at = rig.at(n)
    rows = []
    for cc, st, tls in (
        ("FR", "up", {"version": "TLSv1.3", "chainVerified": True, "nameMatched": True}),
        ("DE", status, {"version": "TLSv1.3", "chainVerified": False, "nameMatched": False}),
    ):
        wire = {
            "jobId": rig.job_ids.make(str(monitor["public_id"]), cc, at),
            "monitorId": str(monitor["public_id"]),
            "monitorType": "smtp",
            "country": cc,
            "agentId": f"{cc}-agent",
            "scheduledAt": iso_ms(at),
            "startedAt": iso_ms(at),
            "finishedAt": iso_ms(at + timedelta(seconds=1)),
            "status": st,
            "errorKind": None if st == "up" else INC if st == INC else "tls",
            "message": "" if st == "up" else "certificate verify failed",
            "tls": tls,
        }
        rows.append(msgspec.convert(wire, CheckedResult))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())
    await rig.alerter.burst()


async def test_what_an_inconclusive_agent_saw_is_no_posture_finding(rig: Rig) -> None:
    """An agent whose own path is broken may see a stranger's certificate: the server's
    posture is judged on conclusive results only (a `down` one with the same facts is)."""
    countries = ["DE", "FR"]
    blocked = await rig.monitor(countries)
    control = await rig.monitor(countries, name="Control")
    await store_with_tls(rig, blocked, 0, INC)
    await store_with_tls(rig, control, 0, "down")
    query = "SELECT code, country FROM posture_findings WHERE monitor_id = $1 ORDER BY code"
    seen = [tuple(r.values()) for r in await rig.fetch(query, control["id"])]
    assert ("name_mismatch", "DE") in seen
    assert await rig.fetch(query, blocked["id"]) == []
