"""Security posture end to end on real parts: real agent checks (run_check) against real SMTP
servers on loopback, one country's path through a proxy that strips STARTTLS, certificates per
country; the results go in through `results.store` as the ingester stores them, the alerter
judges the rounds and feeds posture, and the findings come out of the API, the EVENTS stream
and the notification outbox."""

import ssl
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from controller.ingest import store as results
from shared.clock import WALL
from shared.messages import SmtpConfig, encode
from shared.timefmt import iso_ms, utcnow
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer
from testkit.peers.strip import StripStarttls
from testkit.peers.tls import outdated, short_key_leaf
from tests.alerting.conftest import DOWN, Rig, console_page

CA = trustme.CA()


@pytest.fixture(scope="module")
def contexts() -> SslContexts:
    return build_ssl_contexts(cadata=CA.cert_pem.bytes().decode())


def served(*, days: float | None = None, ca: trustme.CA = CA) -> ssl.SSLContext:
    """A server certificate for localhost (a fresh key each call); `days`: left before expiry."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    validity: dict[str, Any] = {}
    if days is not None:
        now = utcnow()
        validity = {"not_before": now - timedelta(days=30), "not_after": now + timedelta(days=days)}
    ca.issue_cert("localhost", **validity).configure_cert(ctx)
    return ctx


async def round_(
    rig: Rig, monitor: asyncpg.Record, n: int, ports: dict[str, int], contexts: SslContexts
) -> None:
    """Round `n`: a real check per country against its port, stored as the ingester would
    store the agent's message, then judged by the alerter."""
    at = rig.at(n)
    public_id = str(monitor["public_id"])
    rows = []
    for cc, port in ports.items():
        job = make_job("smtp", port, SmtpConfig(), hostname="localhost", country=cc)
        checked = await run_check(job, f"{cc}-agent", True, contexts, clock=WALL)
        checked.job_id = rig.job_ids.make(public_id, cc, at, False)
        checked.monitor_id = public_id
        checked.scheduled_at = iso_ms(at)
        rows.append(results.decode_result(encode(checked)))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())
    await rig.alerter.burst()


async def posture(api: httpx.AsyncClient, rig: Rig, monitor: asyncpg.Record) -> dict[str, Any]:
    response = await api.get(
        f"/api/smtp-monitors/{monitor['public_id']}/posture", headers=rig.tenant.auth("readonly")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def open_codes(body: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(f["code"], f["country"]) for f in body["findings"] if f["state"] == "open"}


async def test_starttls_stripped_on_one_countrys_path_is_found_told_and_cleared(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    monitor = await rig.monitor(["DE", "US"])
    async with SmtpPeer(starttls=served()) as peer, StripStarttls(peer.port) as proxy:
        direct = {"DE": peer.port, "US": peer.port}
        stripped = {"DE": peer.port, "US": proxy.port}
        await round_(rig, monitor, 0, direct, contexts)
        await round_(rig, monitor, 1, stripped, contexts)
        assert open_codes(await posture(api, rig, monitor)) == set()  # one round: not yet
        await round_(rig, monitor, 2, stripped, contexts)
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {("starttls_stripped", "US")}
        finding = body["findings"][0]
        assert finding["severity"] == "critical" and body["worst"] == "critical"
        assert "offered to DE" in finding["detail"] and "network path" in finding["advice"]
        await round_(rig, monitor, 3, direct, contexts)
    body = await posture(api, rig, monitor)
    assert open_codes(body) == set()
    assert [(f["code"], f["state"]) for f in body["findings"]] == [("starttls_stripped", "cleared")]
    page = await api.get(
        f"/api/smtp-monitors/{monitor['public_id']}/results",
        params={"country": "US"},
        headers=rig.tenant.auth("readonly"),
    )
    stored = {r["scheduledAt"]: r for r in page.json()["items"]}
    stripped_round = stored[iso_ms(rig.at(2))]
    assert stripped_round["tls"] is None and "STARTTLS" not in stripped_round["capabilities"]
    direct_round = stored[iso_ms(rig.at(3))]
    assert "STARTTLS" in direct_round["capabilitiesBeforeTls"]
    assert direct_round["tls"]["chainVerified"] is True
    assert body["findings"][0]["clearedAt"] is not None
    notes = await rig.outbox_rows(monitor)
    # critical, yet by e-mail only: no severity goes by SMS unless the owner chose it
    assert [(n["kind"], n["channel"]) for n in notes] == [("finding", "email")]
    assert "Starttls stripped" in notes[0]["subject"] and "from US" in notes[0]["body_text"]
    events = [e for e in await rig.events(monitor) if e.posture is not None]
    assert [(e.posture.change, e.posture.code, e.countries) for e in events if e.posture] == [
        ("appeared", "starttls_stripped", ["US"]),
        ("cleared", "starttls_stripped", ["US"]),
    ]


async def test_another_certificate_in_one_country_is_a_mismatch_a_renewal_everywhere_is_not(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    monitor = await rig.monitor(["DE", "FR", "US"])
    async with SmtpPeer(starttls=served()) as old, SmtpPeer(starttls=served()) as new:
        await round_(rig, monitor, 0, {"DE": old.port, "FR": old.port, "US": old.port}, contexts)
        for n in (1, 2):
            await round_(
                rig, monitor, n, {"DE": old.port, "FR": old.port, "US": new.port}, contexts
            )
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {("certificate_mismatch", "US")}
        assert "where DE, FR see" in body["findings"][0]["detail"]
        for n in (3, 4):  # the new certificate everywhere: the mismatch clears, a change is kept
            await round_(
                rig, monitor, n, {"DE": new.port, "FR": new.port, "US": new.port}, contexts
            )
    body = await posture(api, rig, monitor)
    assert open_codes(body) == set()
    assert [(c["fact"], c["countries"]) for c in body["changes"]] == [
        ("cert_sha256", ["DE", "FR", "US"])
    ]
    assert {b["country"] for b in body["baselines"]} == {"DE", "FR", "US"}
    assert len({b["facts"]["cert_sha256"] for b in body["baselines"]}) == 1


async def test_a_healthy_fleet_for_an_hour_of_rounds_raises_nothing_and_a_renewal_is_recorded(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """Sixty one-minute rounds from three countries, each server's certificate renewed
    everywhere at once halfway: no finding, no notification, one recorded change."""
    monitor = await rig.monitor(["DE", "FR", "US"])
    rig.base = utcnow() - timedelta(minutes=59)  # within the alerter's first look back
    async with SmtpPeer(starttls=served()) as before, SmtpPeer(starttls=served()) as after:
        for n in range(60):
            port = before.port if n < 30 else after.port
            await round_(rig, monitor, n, {"DE": port, "FR": port, "US": port}, contexts)
    body = await posture(api, rig, monitor)
    assert body["findings"] == [] and body["worst"] is None
    assert [c["fact"] for c in body["changes"]] == ["cert_sha256"]
    assert await rig.outbox_rows(monitor) == []


async def test_an_expiring_certificate_is_noticed_once_per_threshold(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    monitor = await rig.monitor(["DE", "US"])
    async with SmtpPeer(starttls=served(days=5.5)) as peer:
        for n in range(3):
            await round_(rig, monitor, n, {"DE": peer.port, "US": peer.port}, contexts)
    body = await posture(api, rig, monitor)
    assert open_codes(body) == {("certificate_expiring", "DE"), ("certificate_expiring", "US")}
    notes = await rig.outbox_rows(monitor)
    # first seen 5 days before expiry: the 7-day notice only, once, by e-mail (a warning: no
    # SMS by default; the `certificate_expiring` finding is told by this notice, not by one of
    # its own)
    assert [(n["kind"], n["channel"]) for n in notes] == [("cert_expiry", "email")]
    assert "7 days before expiry" in notes[0]["body_text"]
    sent = await rig.fetch(
        "SELECT threshold_days FROM cert_expiry_notices WHERE monitor_id = $1 ORDER BY 1",
        monitor["id"],
    )
    assert [r["threshold_days"] for r in sent] == [7, 21]


async def test_an_expired_and_an_untrusted_certificate_are_findings_though_the_check_fails(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """The verified handshake fails (`tls`), yet the agent's second look reports the
    certificate, so the findings say what is wrong with it."""
    monitor = await rig.monitor(["DE", "US"])
    expired = served(days=-2)
    untrusted = served(ca=trustme.CA())
    async with SmtpPeer(starttls=expired) as old, SmtpPeer(starttls=untrusted) as selfmade:
        await round_(rig, monitor, 0, {"DE": old.port, "US": selfmade.port}, contexts)
    body = await posture(api, rig, monitor)
    assert {
        ("certificate_expired", "DE"),
        ("chain_not_verified", "DE"),
        ("chain_not_verified", "US"),
    } <= open_codes(body)
    assert ("name_mismatch", "US") not in open_codes(body)


async def test_posture_is_the_organizations_own(
    rig: Rig, api: httpx.AsyncClient, alert_pool: asyncpg.Pool
) -> None:
    from tests.conftest import make_tenant

    monitor = await rig.monitor(["DE"])
    other = await make_tenant(alert_pool)
    path = f"/api/smtp-monitors/{monitor['public_id']}/posture"
    assert (await api.get(path, headers=other.auth("admin"))).status_code == 404
    assert (await api.get(path)).status_code == 401
    imap_path = f"/api/imap-pop-monitors/{monitor['public_id']}/posture"
    assert (await api.get(imap_path, headers=rig.tenant.auth("admin"))).status_code == 404


async def test_expiry_thresholds_are_the_monitors_else_the_organizations(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """The organization notifies 30 days ahead; one monitor overrides it with 10: a
    certificate with 20 days left is noticed for the first monitor only."""
    admin = rig.tenant.auth("admin")
    put = await api.put("/api/alert-settings", json={"certExpiryDays": [30]}, headers=admin)
    assert put.status_code == 200 and put.json()["certExpiryDays"] == [30], put.text
    inherits = await rig.monitor(["DE"], name="inherits")
    own = await rig.monitor(["DE"], name="own")
    path = f"/api/smtp-monitors/{own['public_id']}/alert-settings"
    put = await api.put(path, json={"certExpiryDays": [10]}, headers=admin)
    assert put.status_code == 200, put.text
    assert (put.json()["certExpiryDays"], put.json()["effective"]["certExpiryDays"]) == ([10], [10])
    refused = await api.put(path, json={"certExpiryDays": [400]}, headers=admin)
    assert refused.status_code == 400 and "certExpiryDays" in refused.text
    async with SmtpPeer(starttls=served(days=20.5)) as peer:
        for monitor in (inherits, own):
            await round_(rig, monitor, 0, {"DE": peer.port}, contexts)
    kinds = [[n["kind"] for n in await rig.outbox_rows(m)] for m in (inherits, own)]
    assert kinds == [["cert_expiry"], []]
    assert open_codes(await posture(api, rig, own)) == set()


async def test_old_tls_and_a_weak_cipher_are_findings(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """TLS 1.0 and a NULL cipher, which OpenSSL here can still serve: the agent's check fails
    on them, and its second look tells the posture what the server is stuck with."""
    monitor = await rig.monitor(["DE", "US"])
    tls10 = outdated(CA, tls10=True)
    null = outdated(CA, ciphers="ECDHE-ECDSA-NULL-SHA")
    async with SmtpPeer(starttls=tls10) as old, SmtpPeer(starttls=null) as weak:
        await round_(rig, monitor, 0, {"DE": old.port, "US": weak.port}, contexts)
    body = await posture(api, rig, monitor)
    assert open_codes(body) == {("tls_below_1_2", "DE"), ("weak_cipher", "US")}
    advice = {f["code"]: f["advice"] for f in body["findings"]}
    assert "TLS 1.2" in advice["tls_below_1_2"]


async def test_a_short_key_is_a_finding(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """A 1024-bit RSA key: the verified handshake refuses it; the second look reports it."""
    monitor = await rig.monitor(["DE"])
    async with SmtpPeer(starttls=short_key_leaf(CA, 1024)) as short:
        await round_(rig, monitor, 0, {"DE": short.port}, contexts)
    body = await posture(api, rig, monitor)
    assert ("short_key", "DE") in open_codes(body)
    assert any("RSA key of 1024 bits" in f["detail"] for f in body["findings"])


async def test_a_password_login_offered_in_clear_is_a_finding_told_once_and_cleared(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """Issue 58: a server offering AUTH PLAIN/LOGIN without TLS and no STARTTLS was `up` with
    no finding. Now it is `auth_in_clear` (critical) from the first round, from every country
    that sees it, told in one notice however many rounds it stays; it clears once the server
    offers STARTTLS."""
    monitor = await rig.monitor(["DE", "US"])
    async with SmtpPeer(auth_in_clear=True) as plain, SmtpPeer(starttls=served()) as fixed:
        for n in range(3):
            await round_(rig, monitor, n, {"DE": plain.port, "US": plain.port}, contexts)
        body = await posture(api, rig, monitor)
        assert open_codes(body) == {("auth_in_clear", "DE"), ("auth_in_clear", "US")}
        finding = body["findings"][0]
        assert finding["severity"] == "critical" and "LOGIN PLAIN" in finding["detail"]
        assert "STARTTLS" in finding["advice"]
        await round_(rig, monitor, 3, {"DE": fixed.port, "US": fixed.port}, contexts)
    body = await posture(api, rig, monitor)
    assert open_codes(body) == set()
    notes = await rig.outbox_rows(monitor)
    assert [(n["kind"], n["channel"]) for n in notes] == [("finding", "email")]
    assert "DE, US" in notes[0]["body_text"]
    assert plain.auths == []  # the check itself sent no credentials
    events = [e.posture for e in await rig.events(monitor) if e.posture is not None]
    assert sorted((p.change, p.code, p.country) for p in events if p.change != "changed") == [
        ("appeared", "auth_in_clear", "DE"),
        ("appeared", "auth_in_clear", "US"),
        ("cleared", "auth_in_clear", "DE"),
        ("cleared", "auth_in_clear", "US"),
    ]


async def test_in_maintenance_findings_are_recorded_and_nobody_is_notified(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    monitor = await rig.monitor(["DE", "US"], status="maintenance")
    async with SmtpPeer(starttls=served(days=3.5)) as peer, StripStarttls(peer.port) as proxy:
        for n in range(2):
            await round_(rig, monitor, n, {"DE": peer.port, "US": proxy.port}, contexts)
    assert ("starttls_stripped", "US") in open_codes(await posture(api, rig, monitor))
    assert await rig.outbox_rows(monitor) == []
    sent = await rig.fetch("SELECT 1 FROM cert_expiry_notices WHERE monitor_id = $1", monitor["id"])
    assert sent == []  # the expiry notice is still due once the maintenance is over


async def test_a_failing_posture_never_holds_back_alerting(rig: Rig) -> None:
    """PostgreSQL refuses every posture write (a constraint added for the while): the monitor
    still goes down and its incident is notified."""
    monitor = await rig.monitor()
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "ALTER TABLE posture_state ADD CONSTRAINT test_refuse CHECK (monitor_id < 0) NOT VALID"
        )
    try:
        await rig.rounds(monitor, 0, [DOWN, DOWN])
    finally:
        async with rig.pool.acquire() as conn:
            await conn.execute("ALTER TABLE posture_state DROP CONSTRAINT test_refuse")
    assert (await rig.state(monitor))["state"] == "down"
    assert [n["kind"] for n in await rig.outbox_rows(monitor)] == ["down", "down"]


def findings_told(notes: list[asyncpg.Record]) -> list[tuple[str, str]]:
    return [(n["kind"], n["channel"]) for n in notes if n["kind"] in ("finding", "cert_expiry")]


async def test_an_untrusted_chain_seen_from_every_country_is_one_notice_naming_them(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """A private-CA server checked from three countries: one finding per country, one e-mail
    naming all three, the monitor, its host and port and its console page; no SMS (by
    default no finding goes by SMS), while the outage itself is told on both channels."""
    monitor = await rig.monitor(["DE", "FR", "US"])
    async with SmtpPeer(starttls=served(ca=trustme.CA())) as private:
        ports = {"DE": private.port, "FR": private.port, "US": private.port}
        for n in range(3):
            await round_(rig, monitor, n, ports, contexts)
    body = await posture(api, rig, monitor)
    assert {("chain_not_verified", cc) for cc in ("DE", "FR", "US")} <= open_codes(body)
    notes = await rig.outbox_rows(monitor)
    assert findings_told(notes) == [("finding", "email")]
    assert {n["channel"] for n in notes if n["kind"] == "down"} == {"email", "sms"}
    told = next(n for n in notes if n["kind"] == "finding")
    assert told["subject"] == "[mailprobe] Chain not verified: Outbound relay"
    lines = told["body_text"].splitlines()
    assert "Chain not verified: critical, seen from DE, FR, US" in lines
    assert "Monitor: Outbound relay (SMTP smtp.customer.test:587)" in lines
    assert f"Console: {console_page(monitor)}" in lines
    assert f"href='{console_page(monitor)}'" in told["body_html"]
    down = next(n for n in notes if n["kind"] == "down" and n["channel"] == "email")
    assert f"Console: {console_page(monitor)}" in down["body_text"].splitlines()
    assert str(monitor["public_id"]) not in down["subject"]


async def test_findings_go_by_sms_only_for_the_severities_the_owner_chose(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """The organization sends critical findings by SMS; one monitor overrides it with none and
    e-mail for critical only. A critical and a warning finding in the same round: the first
    monitor's SMS names only the critical one, its e-mail both; the other sends no SMS and an
    e-mail of the critical one alone."""
    admin = rig.tenant.auth("admin")
    put = await api.put(
        "/api/alert-settings", json={"findingSmsSeverities": ["critical"]}, headers=admin
    )
    assert put.status_code == 200, put.text
    assert put.json()["findingSmsSeverities"] == ["critical"]
    assert put.json()["findingEmailSeverities"] == ["critical", "warning"]  # the default kept
    chosen = await rig.monitor(["DE", "US"], name="chosen")
    own = await rig.monitor(["DE", "US"], name="own")
    path = f"/api/smtp-monitors/{own['public_id']}/alert-settings"
    overrides = {"findingSmsSeverities": [], "findingEmailSeverities": ["critical"]}
    put = await api.put(path, json=overrides, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["effective"]["findingSmsSeverities"] == []
    # DE: an expired certificate (critical) and a 1024-bit key (warning)
    async with (
        SmtpPeer(starttls=served(days=-2)) as expired,
        SmtpPeer(starttls=short_key_leaf(CA, 1024)) as short,
    ):
        for monitor in (chosen, own):
            await round_(rig, monitor, 0, {"DE": expired.port, "US": short.port}, contexts)
    first = await rig.outbox_rows(chosen)
    # the expired certificate's expiry notice is critical too: on both channels
    assert findings_told(first) == [
        ("finding", "email"),
        ("finding", "sms"),
        ("cert_expiry", "email"),
        ("cert_expiry", "sms"),
    ]
    email = next(n for n in first if n["kind"] == "finding" and n["channel"] == "email")
    sms = next(n for n in first if n["kind"] == "finding" and n["channel"] == "sms")
    assert "Certificate expired" in email["body_text"] and "Short key" in email["body_text"]
    assert "Certificate expired from DE" in sms["body_text"] and "Short key" not in sms["body_text"]
    assert sms["body_text"].endswith(console_page(chosen))
    second = await rig.outbox_rows(own)
    assert findings_told(second) == [("finding", "email"), ("cert_expiry", "email")]
    only = next(n for n in second if n["kind"] == "finding")
    assert "Certificate expired" in only["body_text"] and "Short key" not in only["body_text"]


async def test_finding_channels_refuse_unknown_severities_and_readers(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    admin = rig.tenant.auth("admin")
    bad = await api.put(
        "/api/alert-settings", json={"findingSmsSeverities": ["urgent"]}, headers=admin
    )
    assert bad.status_code == 400 and "findingSmsSeverities" in bad.text, bad.text
    many = ["critical"] * 4
    bad = await api.put("/api/alert-settings", json={"findingEmailSeverities": many}, headers=admin)
    assert bad.status_code == 400 and "findingEmailSeverities" in bad.text, bad.text
    reader = rig.tenant.auth("readonly")
    refused = await api.put(
        "/api/alert-settings", json={"findingSmsSeverities": ["info"]}, headers=reader
    )
    assert refused.status_code == 403
    got = await api.get("/api/alert-settings", headers=reader)
    assert got.json()["findingSmsSeverities"] == []
