"""The resolver canary end to end on real parts (issue 65): behind a resolver that answers
NXDOMAIN for every name (the trial's), a monitored domain's mail DNS raises nothing (no
`spf_missing`, `dmarc_missing`, `mx_mismatch`) and nobody is told about the domain; the
country's resolver is found unhealthy, its organization's owners get one notice saying what to
set once it held, and one when it recovers; the other country, behind a truthful resolver, is
judged as always."""

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from agent.sidechecks.mail_dns import MailDnsProbe
from controller.ingest import store as results
from controller.operator_health import store as health_db
from controller.operator_health.rules import HOLD
from controller.oracles import store as oracles_db
from controller.oracles.rules import RESOLVER
from controller.oracles.watch import OracleWatch
from shared.clock import WALL
from shared.messages import SmtpConfig, encode
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dns import DnsPeer
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer
from tests.alerting.conftest import Rig
from tests.alerting.test_mail_dns import CA, DOMAIN, served, zone
from tests.alerting.test_posture import open_codes, posture

TRUTHFUL, LYING = "SE", "NZ"  # countries no other test's oracle rows use


@pytest.fixture(scope="module")
def contexts() -> SslContexts:
    return build_ssl_contexts(cadata=CA.cert_pem.bytes().decode())


@pytest.fixture(autouse=True)
async def no_fleet_notices_left(rig: Rig) -> AsyncIterator[None]:
    """The notices about no monitor outlive the test's monitors: removed, so no later test's
    outbox worker sends them."""
    yield
    async with rig.pool.acquire() as conn:
        await conn.execute("DELETE FROM notification_outbox WHERE dedupe_key LIKE 'oracle:%'")


async def round_(
    rig: Rig, monitor: asyncpg.Record, n: int, port: int, probes: dict[str, MailDnsProbe]
) -> None:
    """Round `n` from each country, its mail DNS (and canaries) resolved by that country's
    probe, stored as the ingester stores it (the canaries too), judged by the alerter."""
    at = rig.at(n)
    public_id = str(monitor["public_id"])
    rows = []
    contexts = build_ssl_contexts(cadata=CA.cert_pem.bytes().decode())
    for cc, probe in probes.items():
        job = make_job("smtp", port, SmtpConfig(), hostname="localhost", country=cc)
        checked = await run_check(job, f"{cc}-agent", True, contexts, clock=WALL)
        checked.side_checks["mail_dns"] = await probe.probe(DOMAIN, "localhost", port, 5.0)
        checked.job_id = rig.job_ids.make(public_id, cc, at, False)
        checked.monitor_id = public_id
        checked.scheduled_at = iso_ms(at)
        checked.finished_at = iso_ms(at)
        rows.append(results.decode_result(encode(checked)))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())
        await oracles_db.record_canaries(conn, rows)
    await rig.alerter.burst()


async def org_notes(rig: Rig) -> list[asyncpg.Record]:
    return await rig.fetch(
        "SELECT subject, body_text, target FROM notification_outbox"
        " WHERE organization_id = $1 AND monitor_id IS NULL AND dedupe_key LIKE 'oracle:%'"
        # the owners' (make_tenant's `operator` user, an operator, gets its own)
        " AND dedupe_key NOT LIKE '%:operators:%' ORDER BY id",
        rig.tenant.org_id,
    )


async def test_a_resolver_answering_nxdomain_for_everything_is_never_believed(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    monitor = await rig.monitor([TRUTHFUL, LYING])
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET mail_domain = $2 WHERE id = $1", monitor["id"], DOMAIN
        )
    starttls, spki = served()
    watch = OracleWatch(rig.pool, (), dns_window_s=3600, clock=WALL)
    async with SmtpPeer(starttls=starttls) as smtp:
        records = zone(smtp.port, spki, good=True)
        del records[(f"_mta-sts.{DOMAIN}", "TXT")]  # no MTA-STS: nothing to fetch
        async with DnsPeer(records) as good, DnsPeer({}, canaries=False) as nxdomain:
            probes = {
                TRUTHFUL: MailDnsProbe(resolver=good.address, allow_private=True),
                LYING: MailDnsProbe(resolver=nxdomain.address, allow_private=True),
            }
            await round_(rig, monitor, 0, smtp.port, probes)
            await round_(rig, monitor, 1, smtp.port, probes)
            # Every lookup of the lying country came back "does not exist"...
            assert (DOMAIN, "TXT") in nxdomain.asked
            # ...and judged nothing: no finding from any country, no notice about the domain.
            assert open_codes(await posture(api, rig, monitor)) == set()
            assert [n for n in await rig.outbox_rows(monitor) if n["kind"] == "finding"] == []
            t0 = rig.at(1)
            await watch.run_once(t0)
            async with rig.pool.acquire() as conn:
                health = await health_db.healths(conn, oracles_db.HEALTH)
            lying = health[(RESOLVER, LYING)]
            assert lying.state == "unhealthy" and "a.root-servers.net A" in lying.reason
            assert health[(RESOLVER, TRUTHFUL)].state == "healthy"
            assert await org_notes(rig) == []  # not held long enough yet
            await watch.run_once(t0 + HOLD)
            await watch.run_once(t0 + HOLD * 2)  # still unhealthy: no second notice
            (told,) = await org_notes(rig)
            shown = await api.get("/api/oracles", headers=rig.tenant.auth("owner"))
            assert shown.status_code == 200, shown.text
            by = {(o["oracle"], o["country"]): o for o in shown.json()["oracles"]}
            assert by[("dns", LYING)]["state"] == "unhealthy"
            assert "AGENT_DNS_RESOLVER" in by[("dns", LYING)]["whatToSet"]
            assert by[("dns", TRUTHFUL)]["whatToSet"] == ""
            # The monitor's posture says why its mail DNS from there is unknown.
            (why,) = (await posture(api, rig, monitor))["dnsNotBelieved"]
            assert (why["country"], why["state"]) == (LYING, "unhealthy")
            assert LYING in told["subject"] and "AGENT_DNS_RESOLVER" in told["body_text"]
            assert told["target"].startswith("owner-")
            # The resolver tells the truth again: one notice once that held.
            probes[LYING] = MailDnsProbe(resolver=good.address, allow_private=True)
            await round_(rig, monitor, 2, smtp.port, probes)
    later = rig.at(2) + HOLD * 2
    await watch.run_once(later)
    await watch.run_once(later + HOLD)
    notes = await org_notes(rig)
    assert len(notes) == 2 and "Believed again" in notes[1]["subject"]
    assert open_codes(await posture(api, rig, monitor)) == set()  # its records are good
