"""Mail DNS posture end to end on real parts: each country's agent checks a real SMTP server on
loopback and resolves the monitor's mail domain through its own loopback DNS server (one
serving good records, one bad) and fetches the MTA-STS policy from a loopback HTTPS host; the
results go in as the ingester stores them, the alerter judges the rounds, and the findings come
out of the posture API, the EVENTS stream and the notification outbox."""

import hashlib
import ssl

import asyncpg
import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from agent.sidechecks.mail_dns import MailDnsProbe
from controller.ingest import store as results
from controller.posture import store as posture_db
from shared.clock import WALL
from shared.messages import SmtpConfig, encode
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dns import DnsPeer, PolicyHost
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer
from testkit.trust import trusting
from tests.alerting.conftest import Rig
from tests.alerting.test_posture import open_codes, posture

CA = trustme.CA()
DOMAIN = "customer.test"
MONITORED = "smtp.customer.test"  # the rig's monitors' hostname
POLICY = "version: STSv1\nmode: enforce\nmx: *.customer.test\nmax_age: 86400\n"


@pytest.fixture(scope="module")
def contexts() -> SslContexts:
    return build_ssl_contexts(cadata=CA.cert_pem.bytes().decode())


def served() -> tuple[ssl.SSLContext, str]:
    """A STARTTLS certificate for localhost, and the SHA-256 of its public key (DANE 3 1 1)."""
    leaf = CA.issue_cert("localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return ctx, hashlib.sha256(spki).hexdigest()


def zone(smtp_port: int, spki: str, *, good: bool) -> dict[tuple[str, str], list[str]]:
    """The domain's records as a country's resolver serves them; `good=False`: an MX naming
    another host, no SPF, a DMARC record with a bad policy, no TLS-RPT, a TLSA record for
    another key."""
    records = {
        (DOMAIN, "MX"): [f"10 {MONITORED}." if good else "10 mx.elsewhere.example."],
        (f"_dmarc.{DOMAIN}", "TXT"): ['"v=DMARC1; p=reject"' if good else '"v=DMARC1; p=block"'],
        (f"_mta-sts.{DOMAIN}", "TXT"): ['"v=STSv1; id=1"'],
        (f"mta-sts.{DOMAIN}", "A"): ["127.0.0.1"],
        (f"_{smtp_port}._tcp.localhost", "TLSA"): [f"3 1 1 {spki if good else 'ee' * 32}"],
    }
    if good:
        records[(DOMAIN, "TXT")] = ['"v=spf1 mx -all"']
        records[(f"_smtp._tls.{DOMAIN}", "TXT")] = ['"v=TLSRPTv1; rua=mailto:tls@customer.test"']
    return records


async def round_(
    rig: Rig,
    monitor: asyncpg.Record,
    n: int,
    port: int,
    contexts: SslContexts,
    probes: dict[str, MailDnsProbe] | None,
    tlsa_host: str = "localhost",
) -> None:
    """Round `n` from each country of `probes` (None: a round without a DNS probe, from DE and
    US), as the worker runs a job with `mailDomain`: the check, then the probe (its TLSA
    records looked up at `tlsa_host`, the job's hostname in production)."""
    at = rig.at(n)
    public_id = str(monitor["public_id"])
    rows = []
    for cc in probes or ("DE", "US"):
        job = make_job("smtp", port, SmtpConfig(), hostname="localhost", country=cc)
        checked = await run_check(job, f"{cc}-agent", True, contexts, clock=WALL)
        if probes is not None:
            checked.side_checks["mail_dns"] = await probes[cc].probe(DOMAIN, tlsa_host, port, 5.0)
        checked.job_id = rig.job_ids.make(public_id, cc, at, False)
        checked.monitor_id = public_id
        checked.scheduled_at = iso_ms(at)
        rows.append(results.decode_result(encode(checked)))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())
    await rig.alerter.burst()


def probe(dns_peer: DnsPeer, policy_port: int) -> MailDnsProbe:
    context = trusting(CA)
    return MailDnsProbe(
        resolver=dns_peer.address,
        policy_context=context,
        policy_port=policy_port,
        allow_private=True,
    )


async def watched(rig: Rig) -> asyncpg.Record:
    """An SMTP monitor of the domain's MX port (25: whether the MX names it is judged)."""
    monitor = await rig.monitor(["DE", "US"], port=25)
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET mail_domain = $2 WHERE id = $1", monitor["id"], DOMAIN
        )
    return monitor


async def test_bad_mail_dns_seen_from_one_country_is_found_told_and_cleared(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """DE's resolver serves good records, US's bad ones: each bad record is a finding from US
    only, with a sentence to act on; a round without a DNS probe keeps them; good records from
    US clear them."""
    monitor = await watched(rig)
    starttls, spki = served()
    policy_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CA.issue_cert(f"mta-sts.{DOMAIN}").configure_cert(policy_tls)
    async with (
        SmtpPeer(starttls=starttls) as smtp,
        PolicyHost(policy_tls, POLICY) as host,
        # Entered in order: the zones can name the SMTP server's port.
        DnsPeer(zone(smtp.port, spki, good=True), ad=True) as good,
        DnsPeer(zone(smtp.port, spki, good=False), ad=True) as bad,
    ):
        split = {"DE": probe(good, host.port), "US": probe(bad, host.port)}
        healthy = {"DE": probe(good, host.port), "US": probe(good, host.port)}
        await round_(rig, monitor, 0, smtp.port, contexts, split)
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {
            (code, "US")
            for code in (
                "mx_mismatch",
                "spf_missing",
                "dmarc_invalid",
                "mta_sts_mismatch",
                "tlsa_mismatch",
                "tls_rpt_missing",
            )
        }
        by_code = {f["code"]: f for f in body["findings"]}
        assert "mx.elsewhere.example" in by_code["mx_mismatch"]["detail"]
        assert by_code["tlsa_mismatch"]["severity"] == "critical"
        assert "p=block" in by_code["dmarc_invalid"]["detail"]
        assert by_code["tls_rpt_missing"]["severity"] == "info"
        await round_(rig, monitor, 1, smtp.port, contexts, None)
        assert len(open_codes(await posture(api, rig, monitor))) == 6
        await round_(rig, monitor, 2, smtp.port, contexts, healthy)
    assert open_codes(await posture(api, rig, monitor)) == set()
    notes = [n for n in await rig.outbox_rows(monitor) if n["kind"] == "finding"]
    # one e-mail for the round's findings, every one but the informational tls_rpt_missing;
    # none by SMS (the default)
    assert [n["channel"] for n in notes] == ["email"]
    assert notes[0]["subject"] == "[mailprobe] 5 findings (critical): Outbound relay"
    body = notes[0]["body_text"]
    assert "TLSA mismatch: critical, seen from US" in body.splitlines()
    assert "TLS-RPT" not in body
    page = await api.get(
        f"/api/smtp-monitors/{monitor['public_id']}/results",
        params={"country": "US"},
        headers=rig.tenant.auth("readonly"),
    )
    stored = {r["scheduledAt"]: r["mailDns"] for r in page.json()["items"]}
    assert stored[iso_ms(rig.at(0))]["mx"] == ["mx.elsewhere.example"]
    assert stored[iso_ms(rig.at(0))]["tlsaDnssec"] is True
    assert stored[iso_ms(rig.at(1))] is None  # a round without a DNS probe
    events = [e.posture for e in await rig.events(monitor) if e.posture is not None]
    assert sorted((e.change, e.code) for e in events if e.code == "spf_missing") == [
        ("appeared", "spf_missing"),
        ("cleared", "spf_missing"),
    ]


async def test_bad_mail_dns_seen_from_every_country_is_one_notice_naming_them(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """Setting `mailDomain` on a domain with no SPF, a bad DMARC and an MX elsewhere, seen
    alike from two countries: a finding per code and country, and one e-mail naming each
    finding once with both countries."""
    monitor = await watched(rig)
    starttls, spki = served()
    async with SmtpPeer(starttls=starttls) as smtp:
        records = zone(smtp.port, spki, good=False)
        del records[(f"_mta-sts.{DOMAIN}", "TXT")]  # no MTA-STS: nothing to fetch
        async with DnsPeer(records, ad=False) as bad:
            probes = {"DE": probe(bad, 1), "US": probe(bad, 1)}
            await round_(rig, monitor, 0, smtp.port, contexts, probes)
            await round_(rig, monitor, 1, smtp.port, contexts, probes)
    codes = open_codes(await posture(api, rig, monitor))
    for code in ("mx_mismatch", "spf_missing", "dmarc_invalid"):
        assert {(code, "DE"), (code, "US")} <= codes
    notes = [n for n in await rig.outbox_rows(monitor) if n["kind"] == "finding"]
    assert [n["channel"] for n in notes] == ["email"]
    lines = notes[0]["body_text"].splitlines()
    for what in ("MX mismatch", "SPF missing", "DMARC invalid"):
        assert f"{what}: warning, seen from DE, US" in lines
    assert sum(line.startswith("MX mismatch:") for line in lines) == 1


async def test_unsigned_tlsa_is_never_a_finding_and_an_unwatched_domain_clears(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """Without the AD bit a wrong TLSA record proves nothing; and once the monitor no longer
    names a mail domain, what its DNS raised is over."""
    monitor = await watched(rig)
    starttls, spki = served()
    async with SmtpPeer(starttls=starttls) as smtp:
        records = zone(smtp.port, spki, good=False)
        del records[(f"_mta-sts.{DOMAIN}", "TXT")]
        async with DnsPeer(records, ad=False) as unsigned:
            probes = {"DE": probe(unsigned, 1), "US": probe(unsigned, 1)}
            await round_(rig, monitor, 0, smtp.port, contexts, probes)
            codes = {code for code, _ in open_codes(await posture(api, rig, monitor))}
            assert "tlsa_mismatch" not in codes and "spf_missing" in codes
            async with rig.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE monitors SET mail_domain = NULL WHERE id = $1", monitor["id"]
                )
            await round_(rig, monitor, 1, smtp.port, contexts, None)
    assert open_codes(await posture(api, rig, monitor)) == set()


async def test_a_domain_record_three_monitors_see_is_one_notice_per_recipient(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """Three monitors of one customer name the domain (issue 80): its missing SPF and bad DMARC
    are facts of the domain, shown on each monitor that read them, told once to the address
    the monitors share, and counted once."""
    monitors = [await watched(rig) for _ in range(3)]
    starttls, spki = served()
    async with SmtpPeer(starttls=starttls) as smtp:
        records = zone(smtp.port, spki, good=True)
        del records[(DOMAIN, "TXT")]  # no SPF
        records[(f"_dmarc.{DOMAIN}", "TXT")] = ['"v=DMARC1; p=block"']
        del records[(f"_mta-sts.{DOMAIN}", "TXT")]  # no MTA-STS: nothing to fetch
        async with DnsPeer(records, ad=True) as bad:
            probes = {"DE": probe(bad, 1), "US": probe(bad, 1)}
            for m in monitors:
                await round_(rig, m, 0, smtp.port, contexts, probes)
    for m in monitors:
        codes = {code for code, _ in open_codes(await posture(api, rig, m))}
        assert {"spf_missing", "dmarc_invalid"} <= codes, codes
    notes = await rig.fetch(
        "SELECT o.channel, o.target, o.body_text FROM notification_outbox o"
        " WHERE o.monitor_id = ANY($1::bigint[]) AND o.kind = 'finding' ORDER BY o.id",
        [m["id"] for m in monitors],
    )
    assert [(n["channel"], n["target"]) for n in notes] == [("email", "oncall@customer.test")]
    assert "SPF missing" in notes[0]["body_text"] and "DMARC invalid" in notes[0]["body_text"]
    async with rig.pool.acquire() as conn:
        counts = await posture_db.open_counts(conn, rig.tenant.org_id)
    assert counts.get("warning") == 2, counts


async def test_a_domain_record_is_shown_counted_and_told_only_on_the_monitors_it_concerns(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """An SMTP monitor and an IMAP monitor of one customer name the domain (issue 80): its
    missing SPF (mail sent in its name) and missing TLS-RPT record (mail its MX receives) are
    the SMTP monitor's findings, counted once, told to its recipient only; the mailbox's
    monitor shows none of them and its recipient hears nothing."""
    smtp_monitor = await watched(rig)
    box = {"user": "probe", "password": "x", "tls": True}
    imap = await rig.monitor(
        ["DE", "US"], kind="imap", port=993, config=box, email="mailbox-team@customer.test"
    )
    async with rig.pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET mail_domain = $2 WHERE id = $1", imap["id"], DOMAIN)
    starttls, spki = served()
    async with SmtpPeer(starttls=starttls) as smtp:
        records = zone(smtp.port, spki, good=True)
        del records[(DOMAIN, "TXT")]  # no SPF
        del records[(f"_smtp._tls.{DOMAIN}", "TXT")]  # no TLS-RPT
        del records[(f"_mta-sts.{DOMAIN}", "TXT")]  # no MTA-STS: nothing to fetch
        async with DnsPeer(records, ad=True) as bad:
            probes = {"DE": probe(bad, 1), "US": probe(bad, 1)}
            for m in (imap, smtp_monitor):
                await round_(rig, m, 0, smtp.port, contexts, probes)
    codes = {code for code, _ in open_codes(await posture(api, rig, smtp_monitor))}
    assert {"spf_missing", "tls_rpt_missing"} <= codes, codes
    r = await api.get(
        f"/api/imap-pop-monitors/{imap['public_id']}/posture", headers=rig.tenant.auth("readonly")
    )
    assert r.status_code == 200, r.text
    theirs = {code for code, _ in open_codes(r.json())}
    assert not theirs & {"spf_missing", "tls_rpt_missing"}, theirs
    notes = await rig.fetch(
        "SELECT o.channel, o.target FROM notification_outbox o"
        " WHERE o.monitor_id = ANY($1::bigint[]) AND o.kind = 'finding' ORDER BY o.id",
        [smtp_monitor["id"], imap["id"]],
    )
    assert {n["target"] for n in notes if n["channel"] == "email"} == {"oncall@customer.test"}
    async with rig.pool.acquire() as conn:
        counts = await posture_db.open_counts(conn, rig.tenant.org_id)
    assert counts.get("warning", 0) + counts.get("info", 0) == 2, counts
