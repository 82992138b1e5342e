"""Reverse DNS posture end to end on real parts (issue 58): each country's agent checks a real
SMTP server on loopback (its banner names `mail.test`) and resolves the PTR of the address it
connected to through its own loopback DNS server; the results go in as the ingester stores
them, the alerter judges the rounds, and the findings come out of the posture API, the results
API, the EVENTS stream and the notification outbox."""

from collections.abc import Mapping

import asyncpg
import httpx

from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from agent.sidechecks.reverse_dns import ReverseDnsProbe
from controller.ingest import store as results
from shared.clock import WALL
from shared.messages import SmtpConfig, encode
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dns import DnsPeer
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer
from tests.alerting.conftest import Rig
from tests.alerting.test_posture import open_codes, posture

ARPA = "1.0.0.127.in-addr.arpa"
GOOD = {(ARPA, "PTR"): ["mail.test."], ("mail.test", "A"): ["127.0.0.1"]}
NO_PTR = {("mail.test", "A"): ["127.0.0.1"]}
OTHER = {(ARPA, "PTR"): ["host-1.provider.test."], ("host-1.provider.test", "A"): ["127.0.0.1"]}


async def round_(
    rig: Rig,
    monitor: asyncpg.Record,
    n: int,
    port: int,
    probes: Mapping[str, ReverseDnsProbe | None],
) -> None:
    """Round `n` from each country of `probes`, as the worker runs a job with `reverseDns`:
    the check, then the lookups of the address it connected to (None: a round without)."""
    at = rig.at(n)
    public_id = str(monitor["public_id"])
    rows = []
    for cc, probe in probes.items():
        job = make_job("smtp", port, SmtpConfig(), hostname="127.0.0.1", country=cc)
        checked = await run_check(job, f"{cc}-agent", True, build_ssl_contexts(), clock=WALL)
        if probe is not None:
            assert checked.address is not None
            checked.side_checks["reverse_dns"] = await probe.probe([checked.address], 5.0)
        checked.job_id = rig.job_ids.make(public_id, cc, at, False)
        checked.monitor_id = public_id
        checked.scheduled_at = iso_ms(at)
        rows.append(results.decode_result(encode(checked)))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())
    await rig.alerter.burst()


def resolving(peer: DnsPeer) -> ReverseDnsProbe:
    return ReverseDnsProbe(resolver=peer.address, allow_private=True)


async def test_missing_ptr_and_a_banner_that_is_not_the_ptr_are_found_told_and_cleared(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    monitor = await rig.monitor(["DE", "US"])
    async with (
        SmtpPeer() as smtp,
        DnsPeer(GOOD) as de,
        DnsPeer(NO_PTR) as us,
        DnsPeer(OTHER) as other,
    ):
        both = {"DE": resolving(de), "US": resolving(us)}
        await round_(rig, monitor, 0, smtp.port, both)
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {("ptr_missing", "US")}
        assert body["findings"][0]["detail"] == "no PTR record for 127.0.0.1"
        # rounds without the lookup (most rounds) judge nothing: the finding stays
        await round_(rig, monitor, 1, smtp.port, {"DE": None, "US": None})
        await round_(rig, monitor, 2, smtp.port, both)
        assert open_codes(await posture(api, rig, monitor)) == {("ptr_missing", "US")}
        # the PTR now names the provider's generic host: forward-confirmed, not the banner
        await round_(rig, monitor, 3, smtp.port, {"DE": resolving(de), "US": resolving(other)})
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {("banner_name_mismatch", "US")}
        mismatch = next(f for f in body["findings"] if f["state"] == "open")
        assert mismatch["detail"] == (
            "the banner names mail.test; the PTR of 127.0.0.1 is host-1.provider.test"
        )
        assert mismatch["severity"] == "warning" and "myhostname" in mismatch["advice"]
    page = await api.get(
        f"/api/smtp-monitors/{monitor['public_id']}/results",
        params={"country": "US"},
        headers=rig.tenant.auth("readonly"),
    )
    stored = {r["scheduledAt"]: r for r in page.json()["items"]}
    assert stored[iso_ms(rig.at(1))]["reverseDns"] is None
    assert stored[iso_ms(rig.at(3))]["reverseDns"]["addresses"] == [
        {
            "address": "127.0.0.1",
            "names": ["host-1.provider.test"],
            "confirmed": ["host-1.provider.test"],
            "error": "",
        }
    ]
    notes = await rig.outbox_rows(monitor)
    assert [(n["kind"], n["channel"]) for n in notes] == [("finding", "email")] * 2
    assert "PTR missing" in notes[0]["subject"] and "Banner name mismatch" in notes[1]["subject"]
    events = [e.posture for e in await rig.events(monitor) if e.posture is not None]
    assert [(p.change, p.code, p.country) for p in events if p.change != "changed"] == [
        ("appeared", "ptr_missing", "US"),
        ("appeared", "banner_name_mismatch", "US"),  # a round's appearances come first
        ("cleared", "ptr_missing", "US"),
    ]


async def test_a_resolver_answering_nxdomain_for_everything_raises_no_ptr_missing(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """Issue 65: behind a resolver that answers NXDOMAIN for every name, the PTR looks missing,
    but its canaries fail: that country's reverse DNS is unknown, never `ptr_missing`; a
    truthful resolver the round after judges as always."""
    monitor = await rig.monitor(["DE", "US"])
    async with SmtpPeer() as smtp, DnsPeer(GOOD) as de, DnsPeer({}, canaries=False) as lying:
        await round_(rig, monitor, 0, smtp.port, {"DE": resolving(de), "US": resolving(lying)})
        assert (ARPA, "PTR") in lying.asked
        assert open_codes(await posture(api, rig, monitor)) == set()
        async with DnsPeer(NO_PTR) as truthful:
            both = {"DE": resolving(de), "US": resolving(truthful)}
            await round_(rig, monitor, 1, smtp.port, both)
    assert open_codes(await posture(api, rig, monitor)) == {("ptr_missing", "US")}
    assert [n["kind"] for n in await rig.outbox_rows(monitor)] == ["finding"]
