"""Readiness end to end on real parts (issue 67): each country's agent checks a real SMTP server
on loopback and walks the mail domain through its own loopback DNS server; the results go in
as the ingester stores them (the facts in `side_readiness`), the alerter judges the rounds, and
the findings come out of the posture API, the results API and the notification outbox (one
`finding` notice through the notify entry). A country whose resolver fails its canaries raises
nothing."""

import base64
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import REGISTRY

from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from agent.sidechecks.readiness import ReadinessProbe
from controller.ingest import store as results
from controller.oracles.metrics import World
from shared.clock import WALL
from shared.dns_canary import Canary
from shared.messages import SmtpConfig, encode
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dns import DnsPeer, Records
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer
from tests.alerting.conftest import Rig
from tests.alerting.test_posture import open_codes, posture
from tests.console.helpers import Browserish

DOMAIN = "example.test"
CANARIES = (Canary("canary.test", "A", True), Canary("nothing.invalid", "A", False))


def _zone(includes: int) -> Records:
    """example.test's SPF: `includes` nested includes of one `a` term each, ~all."""
    records: Records = {
        ("canary.test", "A"): ["192.0.2.53"],
        ("host.test", "A"): ["192.0.2.1"],
        (DOMAIN, "MX"): ["10 mx.example.test."],
        (f"_dmarc.{DOMAIN}", "TXT"): ['"v=DMARC1; p=reject"'],
    }
    records[(DOMAIN, "TXT")] = ['"v=spf1 include:i0.test ~all"']
    for i in range(includes):
        nxt = f" include:i{i + 1}.test" if i + 1 < includes else ""
        records[(f"i{i}.test", "TXT")] = [f'"v=spf1 a:host.test{nxt}"']
    return records


async def round_(
    rig: Rig, monitor: asyncpg.Record, n: int, port: int, probes: dict[str, ReadinessProbe]
) -> None:
    at = rig.at(n)
    public_id = str(monitor["public_id"])
    rows = []
    for cc, probe in probes.items():
        job = make_job("smtp", port, SmtpConfig(), hostname="127.0.0.1", country=cc)
        checked = await run_check(job, f"{cc}-agent", True, build_ssl_contexts(), clock=WALL)
        checked.side_checks["readiness"] = await probe.probe(DOMAIN, ("s1",), 5.0)
        checked.job_id = rig.job_ids.make(public_id, cc, at, False)
        checked.monitor_id = public_id
        checked.scheduled_at = iso_ms(at)
        rows.append(results.decode_result(encode(checked)))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())
    await rig.alerter.burst()


async def test_an_spf_tree_over_budget_is_found_told_once_and_cleared(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    monitor = await rig.monitor(["DE", "US"])
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET mail_domain = $2 WHERE id = $1", monitor["id"], DOMAIN
        )
    async with (
        SmtpPeer() as smtp,
        DnsPeer(_zone(6)) as over,  # 6 includes and 6 a terms: 12 lookups
        DnsPeer(_zone(4)) as within,  # 8 lookups
        DnsPeer({}) as lying,  # NXDOMAIN for everything, the canary included
    ):
        de = ReadinessProbe(resolver=over.address, canaries=CANARIES)
        us = ReadinessProbe(resolver=lying.address, canaries=CANARIES)
        await round_(rig, monitor, 0, smtp.port, {"DE": de, "US": us})
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {("spf_lookup_limit", "DE")}
        found = next(f for f in body["findings"] if f["code"] == "spf_lookup_limit")
        assert found["severity"] == "critical" and "10th" in found["advice"]
        assert found["detail"].startswith("SPF of example.test: 12 DNS lookups (limit 10)")
        assert "example.test (12) → include:i0.test (11) → include:i1.test (9)" in found["detail"]
        # the same finding on the console's monitor page and findings list, and in the metrics
        console = Browserish(api, session=rig.tenant.tokens["readonly"])
        page = (await console.get(f"/console/monitors/{monitor['public_id']}")).text
        listing = (await console.get("/console/findings")).text
        for shown in (page, listing):
            assert shown.count('data-code="spf_lookup_limit"') == 1 and "12 DNS lookups" in shown
        await World(clock=WALL).refresh(rig.pool)
        labels = {"code": "spf_lookup_limit", "severity": "critical"}
        assert (REGISTRY.get_sample_value("mailprobe_findings_open", labels) or 0) >= 1
        # the same again is no new notice
        await round_(rig, monitor, 1, smtp.port, {"DE": de, "US": us})
        notes = await rig.outbox_rows(monitor)
        assert [(n["kind"], n["channel"], n["source"]) for n in notes] == [
            ("finding", "email", "finding")
        ]
        assert notes[0]["subject"] == "[mailprobe] SPF lookup limit: Outbound relay"
        # the vendor trims its include: the finding clears
        de_fixed = ReadinessProbe(resolver=within.address, canaries=CANARIES)
        await round_(rig, monitor, 2, smtp.port, {"DE": de_fixed, "US": us})
        assert open_codes(await posture(api, rig, monitor)) == set()
    response = await api.get(
        f"/api/smtp-monitors/{monitor['public_id']}/results",
        params={"country": "DE"},
        headers=rig.tenant.auth("readonly"),
    )
    stored: dict[str, Any] = {r["scheduledAt"]: r for r in response.json()["items"]}
    readiness = stored[iso_ms(rig.at(0))]["sideChecks"]["readiness"]
    assert readiness["spf"]["lookups"] == 12 and readiness["spf"]["complete"] is True
    assert [k["selector"] for k in readiness["dkim"]] == ["s1"]
    assert len(await rig.outbox_rows(monitor)) == 1


async def test_a_changed_record_is_told_with_old_and_new_and_an_old_key_is_found(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """DMARC relaxed from reject to none: `dmarc_changed` with both records side by side,
    one notice, cleared on the next round that reads the same; the first round's records are
    no change. A DKIM key kept for over a year (its `since` moved back) is `dkim_key_old`. A
    late result of an older round changes nothing."""
    monitor = await rig.monitor(["DE"])
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET mail_domain = $2 WHERE id = $1", monitor["id"], DOMAIN
        )
    zone = _zone(1)
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = base64.b64encode(der).decode()
    zone[("s1._domainkey.example.test", "TXT")] = [
        " ".join(
            f'"{t}"' for t in (f"v=DKIM1; k=rsa; p={key}"[i : i + 200] for i in range(0, 500, 200))
        )
    ]
    relaxed = dict(zone)
    relaxed[(f"_dmarc.{DOMAIN}", "TXT")] = ['"v=DMARC1; p=none"']
    async with SmtpPeer() as smtp, DnsPeer(zone) as before, DnsPeer(relaxed) as after:
        old = ReadinessProbe(resolver=before.address, canaries=CANARIES)
        new = ReadinessProbe(resolver=after.address, canaries=CANARIES)
        await round_(rig, monitor, 0, smtp.port, {"DE": old})
        assert open_codes(await posture(api, rig, monitor)) == set()
        await round_(rig, monitor, 2, smtp.port, {"DE": new})
        body = await posture(api, rig, monitor)
        assert ("dmarc_changed", "DE") in open_codes(body)
        changed = next(f for f in body["findings"] if f["code"] == "dmarc_changed")
        assert changed["detail"] == "example.test: «v=DMARC1; p=reject» → «v=DMARC1; p=none»"
        # a late result of round 1, read with the old records, changes nothing kept
        await round_(rig, monitor, 1, smtp.port, {"DE": old})
        await round_(rig, monitor, 3, smtp.port, {"DE": new})
        codes = open_codes(await posture(api, rig, monitor))
        assert ("dmarc_changed", "DE") not in codes
        notes = await rig.outbox_rows(monitor)
        assert len(notes) == 1  # the change and the p=none it brings, in one notice
        assert (
            "Seen: example.test: «v=DMARC1; p=reject» → «v=DMARC1; p=none»"
            in (notes[0]["body_text"])
        )
        async with rig.pool.acquire() as conn:
            await conn.execute(
                "UPDATE readiness_records SET since = since - interval '400 days'"
                " WHERE monitor_id = $1 AND what = 'dkim:s1'",
                monitor["id"],
            )
        await round_(rig, monitor, 4, smtp.port, {"DE": new})
        body = await posture(api, rig, monitor)
        assert ("dkim_key_old", "DE") in open_codes(body)
        aged = next(f for f in body["findings"] if f["code"] == "dkim_key_old")
        assert aged["severity"] == "info" and "s1._domainkey.example.test since" in aged["detail"]


async def next_round(
    rig: Rig, monitor: asyncpg.Record, n: int, port: int, probes: dict[str, ReadinessProbe]
) -> None:
    """Round `n`, judged at once: a monitor whose rounds changed nothing comes back to the
    alerter an interval later (`ready_rounds.come_back`), so the alerter's clock moves on one."""
    rig.clock.shift += timedelta(seconds=monitor["check_interval"] + 1)
    await round_(rig, monitor, n, port, probes)


async def test_drift_is_judged_per_country_and_a_real_change_is_one_notice(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """Each country's agent reads the domain through its own resolver. A record that differs
    between countries (DE's resolver serves p=reject, US's p=quarantine: a split view or a
    stale secondary) is no change: each country compares with what it read before, so
    rounds whose results are stored together raise nothing. When both then read
    p=none, each country's finding shows its own old record beside the new, and the owner
    gets one notice with both; the next round, reading the same, clears both and tells no more."""
    monitor = await rig.monitor(["DE", "US"])
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET mail_domain = $2 WHERE id = $1", monitor["id"], DOMAIN
        )
    de_zone, us_zone, relaxed = _zone(1), _zone(1), _zone(1)
    us_zone[(f"_dmarc.{DOMAIN}", "TXT")] = ['"v=DMARC1; p=quarantine"']
    relaxed[(f"_dmarc.{DOMAIN}", "TXT")] = ['"v=DMARC1; p=none"']
    async with (
        SmtpPeer() as smtp,
        DnsPeer(de_zone) as de_dns,
        DnsPeer(us_zone) as us_dns,
        DnsPeer(relaxed) as new_dns,
    ):
        de = ReadinessProbe(resolver=de_dns.address, canaries=CANARIES)
        us = ReadinessProbe(resolver=us_dns.address, canaries=CANARIES)
        new = ReadinessProbe(resolver=new_dns.address, canaries=CANARIES)
        for n in range(3):
            await next_round(rig, monitor, n, smtp.port, {"DE": de, "US": us})
        assert open_codes(await posture(api, rig, monitor)) == set()
        assert await rig.outbox_rows(monitor) == []
        async with rig.pool.acquire() as conn:
            kept = await conn.fetch(
                "SELECT country, value FROM readiness_records"
                " WHERE monitor_id = $1 AND what = 'dmarc' ORDER BY country",
                monitor["id"],
            )
        assert [(r["country"], r["value"]) for r in kept] == [
            ("DE", "v=DMARC1; p=reject"),
            ("US", "v=DMARC1; p=quarantine"),
        ]
        await next_round(rig, monitor, 3, smtp.port, {"DE": new, "US": new})
        body = await posture(api, rig, monitor)
        assert {("dmarc_changed", "DE"), ("dmarc_changed", "US")} <= open_codes(body)
        details = {
            f["country"]: f["detail"] for f in body["findings"] if f["code"] == "dmarc_changed"
        }
        assert details == {
            "DE": "example.test: «v=DMARC1; p=reject» → «v=DMARC1; p=none»",
            "US": "example.test: «v=DMARC1; p=quarantine» → «v=DMARC1; p=none»",
        }
        notes = await rig.outbox_rows(monitor)
        assert len(notes) == 1, [n["subject"] for n in notes]
        text = notes[0]["body_text"]
        assert "«v=DMARC1; p=reject» → «v=DMARC1; p=none»" in text
        assert "«v=DMARC1; p=quarantine» → «v=DMARC1; p=none»" in text
        await next_round(rig, monitor, 4, smtp.port, {"DE": new, "US": new})
        codes = open_codes(await posture(api, rig, monitor))
        assert not {c for c in codes if c[0] == "dmarc_changed"}
        assert len(await rig.outbox_rows(monitor)) == 1


async def test_a_record_without_all_is_told_once_and_cleared_when_it_ends(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """An SPF record with no `all` (RFC 7208 4.7: neutral, as `?all`): `spf_too_permissive`
    with why, one notice over two rounds; once the record ends with `~all` it clears, and the
    only notice more is the record's change (drift, old and new side by side)."""
    monitor = await rig.monitor(["DE"])
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET mail_domain = $2 WHERE id = $1", monitor["id"], DOMAIN
        )
    open_ended = {**_zone(1), (DOMAIN, "TXT"): ['"v=spf1 include:i0.test"']}
    async with SmtpPeer() as smtp, DnsPeer(open_ended) as before, DnsPeer(_zone(1)) as after:
        de = ReadinessProbe(resolver=before.address, canaries=CANARIES)
        for n in (0, 1):
            await round_(rig, monitor, n, smtp.port, {"DE": de})
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {("spf_too_permissive", "DE")}
        found = next(f for f in body["findings"] if f["code"] == "spf_too_permissive")
        assert "no all term (neutral for every other sender, as ?all" in found["detail"]
        notes = await rig.outbox_rows(monitor)
        assert [(n["kind"], n["source"]) for n in notes] == [("finding", "finding")]
        fixed = ReadinessProbe(resolver=after.address, canaries=CANARIES)
        await round_(rig, monitor, 2, smtp.port, {"DE": fixed})
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {("spf_changed", "DE")}
        changed = next(f for f in body["findings"] if f["code"] == "spf_changed")
        assert "«v=spf1 include:i0.test» → «v=spf1 include:i0.test ~all»" in changed["detail"]
    subjects = [n["subject"] for n in await rig.outbox_rows(monitor)]
    assert len(subjects) == 2 and "changed" in subjects[1].lower(), subjects
