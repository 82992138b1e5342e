"""The open relay test end to end on real parts (issue 58): the agent's check with `relayCheck`
against Debian's Postfix on loopback, configured as an open relay and then fixed; the results
go in as the ingester stores them, the alerter judges the rounds, and `open_relay` comes out of
the posture API, the results API, the EVENTS stream and the outbox. Postfix's own log shows
that no DATA was ever sent."""

import asyncpg
import httpx
import pytest

from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from controller.ingest import store as results
from shared.clock import WALL
from shared.messages import SmtpConfig, encode
from shared.timefmt import iso_ms, utcnow
from testkit.peers.jobs import make_job
from testkit.peers.postfix import RelayPostfix, missing
from tests.alerting.conftest import Rig
from tests.alerting.test_posture import open_codes, posture

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


async def round_(rig: Rig, monitor: asyncpg.Record, n: int, port: int) -> None:
    """Round `n` from DE, as the worker runs a job whose config has `relayCheck`."""
    at = rig.at(n)
    public_id = str(monitor["public_id"])
    job = make_job("smtp", port, SmtpConfig(relay_check=True), country="DE")
    checked = await run_check(job, "DE-agent", True, build_ssl_contexts(), clock=WALL)
    checked.job_id = rig.job_ids.make(public_id, "DE", at, False)
    checked.monitor_id = public_id
    checked.scheduled_at = iso_ms(at)
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, [results.decode_result(encode(checked))], now=utcnow())
    await rig.alerter.burst()


async def test_an_open_relay_is_a_critical_finding_told_once_and_cleared_when_fixed(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    monitor = await rig.monitor(["DE"], config={"relayCheck": True})
    async with RelayPostfix(open_relay=True) as open_:
        for n in range(2):
            await round_(rig, monitor, n, open_.port)
        sessions = await open_.sessions(2)
    body = await posture(api, rig, monitor)
    assert open_codes(body) == {("open_relay", "DE")}
    finding = body["findings"][0]
    assert finding["severity"] == "critical" and body["worst"] == "critical"
    assert "mailprobe-relay-test@example.net" in finding["detail"]
    assert "250" in finding["detail"] and "reject_unauth_destination" in finding["advice"]
    async with RelayPostfix(open_relay=False) as closed:
        await round_(rig, monitor, 2, closed.port)
        sessions += await closed.sessions(1)
    assert open_codes(await posture(api, rig, monitor)) == set()
    # every session: MAIL, RCPT, RSET, QUIT, and never DATA
    assert len(sessions) == 3 and not any("data" in s for s in sessions), sessions
    assert all(" mail=1 " in s and " rset=1 quit=1 " in s for s in sessions), sessions
    page = await api.get(
        f"/api/smtp-monitors/{monitor['public_id']}/results",
        params={"country": "DE"},
        headers=rig.tenant.auth("readonly"),
    )
    stored = {r["scheduledAt"]: r for r in page.json()["items"]}
    assert stored[iso_ms(rig.at(0))]["relay"]["rcptTo"].startswith("250")
    assert stored[iso_ms(rig.at(2))]["relay"]["rcptTo"].startswith("554")
    notes = await rig.outbox_rows(monitor)
    assert [(n["kind"], n["channel"]) for n in notes] == [("finding", "email")]
    assert "Open relay" in notes[0]["subject"]
    events = [e.posture for e in await rig.events(monitor) if e.posture is not None]
    assert [(p.change, p.code) for p in events if p.change != "changed"] == [
        ("appeared", "open_relay"),
        ("cleared", "open_relay"),
    ]


async def test_a_monitor_that_stops_asking_has_its_finding_cleared(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    monitor = await rig.monitor(["DE"], config={"relayCheck": True})
    async with RelayPostfix(open_relay=True) as open_:
        await round_(rig, monitor, 0, open_.port)
        assert open_codes(await posture(api, rig, monitor)) == {("open_relay", "DE")}
        async with rig.pool.acquire() as conn:
            await conn.execute(
                "UPDATE monitors SET config = '{}'::jsonb WHERE id = $1", monitor["id"]
            )
        await round_(rig, monitor, 1, open_.port)
    assert open_codes(await posture(api, rig, monitor)) == set()
