"""TLS-RPT reports POSTed over HTTPS to `/reports/tls/{domain}/{token}` (real uvicorn with TLS,
real PostgreSQL): stored once, counted, raised as posture findings with one notice per change;
never reaching another organization; unknown domain and wrong token answered alike; every bad
input a rejected report with its reason, costing nothing else."""

import asyncio
import json
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import trustme
from prometheus_client import REGISTRY

from controller.db.pool import Conn
from controller.notify.links import Links
from controller.posture import store as posture
from controller.posture.rules import Finding
from controller.reports import intake, keeping
from controller.reports.parse import MAX_PACKED
from shared.timefmt import utcnow
from testkit.reports import made
from testkit.trust import trusting
from tests.api.helpers import create
from tests.conftest import Tenant, make_tenant
from tests.reports.uploading import MIB, blocks, buffer_slack, upload

GZIP = {"Content-Type": "application/tlsrpt+gzip"}
JSON = {"Content-Type": "application/tlsrpt+json"}


async def _monitor(http: httpx.AsyncClient, tenant: Tenant, domain: str) -> dict[str, Any]:
    return await create(
        http,
        tenant,
        hostname=f"mx1.{domain}",
        port=25,
        mailDomain=domain,
        notificationEmail=f"ops@{domain}",
    )


async def _address(http: httpx.AsyncClient, tenant: Tenant, domain: str, base: str) -> str:
    """The path of the domain's TLS-RPT address as GET /api/report-domains gives it."""
    r = await http.get("/api/report-domains", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    (shown,) = [d for d in r.json() if d["domain"] == domain]
    url: str = shown["tlsRptHttps"]
    assert shown["tlsRptRecord"] == f"v=TLSRPTv1; rua={url}"
    assert url.startswith("http://localhost:8080/reports/tls/" + domain + "/")
    return url.removeprefix("http://localhost:8080")


async def _posture(
    http: httpx.AsyncClient, tenant: Tenant, monitor: dict[str, Any]
) -> dict[str, Any]:
    r = await http.get(f"/api/smtp-monitors/{monitor['publicId']}/posture", headers=tenant.auth())
    assert r.status_code == 200, r.text
    return {f["code"]: f for f in r.json()["findings"] if f["state"] == "open"}


async def _notices(pool: asyncpg.Pool, monitor_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT o.subject, o.body_text FROM notification_outbox o JOIN monitors m"
            " ON m.id = o.monitor_id WHERE m.public_id = $1::uuid AND o.kind = 'finding'"
            " AND o.channel = 'email' ORDER BY o.id",
            monitor_id,
        )


async def test_a_gzipped_report_posted_with_the_token_raises_one_finding_and_one_notice(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    monitor = await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    body = made.tls_gzip(made.tls_json(domain, report_id="rpt-1"))
    r = await https.post(path, content=body, headers=GZIP)
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": True, "kind": "tls", "reason": None}

    found = await _posture(https, tenant, monitor)
    f = found["tls_failures_reported"]
    assert f["severity"] == "warning" and f["title"] == "TLS failures reported"
    assert "303 of 5639 TLS sessions failed" in f["detail"]
    assert "starttls-not-supported: 200 to mx2." + domain + " (203.0.113.57)" in f["detail"]
    assert "certificate-expired: 100 to mx1." + domain in f["detail"]
    assert "reported by Google LLC" in f["detail"]
    assert len(await _notices(pool, monitor["publicId"])) == 1

    # A retry of the same report is taken once; a new report of the same failures tells nobody.
    again = await https.post(path, content=body, headers=GZIP)
    assert again.status_code == 200 and again.json()["reason"] == "duplicate"
    same = made.tls_json(domain, report_id="rpt-2", successes=5000)
    r = await https.post(path, content=json.dumps(same).encode(), headers=JSON)
    assert r.status_code == 200 and r.json()["stored"] is True
    assert len(await _notices(pool, monitor["publicId"])) == 1
    # Something new is one more notice.
    newer = made.tls_json(
        domain,
        report_id="rpt-3",
        reporter="Microsoft Corporation",
        failures=[
            {
                "result-type": "sts-policy-invalid",
                "receiving-mx-hostname": f"mx1.{domain}",
                "failed-session-count": 7,
            }
        ],
    )
    assert (await https.post(path, content=made.tls_gzip(newer), headers=GZIP)).status_code == 200
    # ...within the digest interval of the first, it waits for the digest.
    got = await _notices(pool, monitor["publicId"])
    assert len(got) == 1, [(n["subject"], n["body_text"]) for n in got]
    assert await intake.send_digests(pool, Links(), utcnow() + timedelta(minutes=61)) >= 1
    sent = await _notices(pool, monitor["publicId"])
    assert len(sent) == 2 and "sts-policy-invalid" in sent[1]["body_text"]
    assert sent[1]["subject"].startswith("[mailprobe] Digest: TLS failures reported for " + domain)
    assert "1 new items were reported since the last notice" in sent[1]["body_text"]
    assert "from Google LLC, Microsoft Corporation" in sent[1]["body_text"]
    assert "every country" not in sent[0]["body_text"] + sent[1]["body_text"]

    r = await https.get(f"/api/report-domains/{domain}/totals", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    days = r.json()["days"]
    assert {(d["kind"], d["result"]): d["count"] for d in days}[
        ("tls", "certificate-expired")
    ] == 200
    worst = r.json()["failures"][0]
    assert worst == {
        "kind": "tls",
        "reporter": "Google LLC",
        "result": "starttls-not-supported",
        "mx": f"mx2.{domain}",
        "ip": "203.0.113.57",
        "count": 400,
    }
    r = await https.get("/api/reports", headers=tenant.auth("readonly"))
    assert {x["reportId"] for x in r.json()} == {"rpt-1", "rpt-2", "rpt-3"}


async def test_the_finding_says_when_the_agents_saw_the_same(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    monitor = await _monitor(https, tenant, domain)
    async with pool.acquire() as conn:
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
        )
        seen = Finding("certificate_expired", "DE", "the certificate has expired")
        await posture.appear(conn, monitor_id, seen, await conn.fetchval("SELECT now()"))
    path = await _address(https, tenant, domain, str(https.base_url))
    r = await https.post(path, content=made.tls_gzip(made.tls_json(domain)), headers=GZIP)
    assert r.status_code == 200, r.text
    detail = (await _posture(https, tenant, monitor))["tls_failures_reported"]["detail"]
    assert detail.endswith("This monitor's agents saw it too: certificate_expired (seen from DE)")


async def test_unknown_domain_and_wrong_token_get_the_same_answer_and_store_nothing(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    token = path.rsplit("/", 1)[1]
    body = made.tls_gzip(made.tls_json(domain))
    wrong = await https.post(path[: -len(token)] + "a" * len(token), content=body, headers=GZIP)
    unknown = await https.post(f"/reports/tls/nobody-{domain}/{token}", content=body, headers=GZIP)
    garbage = await https.post(f"/reports/tls/not a domain/{token}", content=body, headers=GZIP)
    assert wrong.status_code == unknown.status_code == garbage.status_code == 404
    assert wrong.content == unknown.content == garbage.content
    assert dict(wrong.headers).keys() == dict(unknown.headers).keys()
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM reports WHERE organization_id = $1", tenant.org_id
        )
        refused = await conn.fetchval(
            "SELECT count(*) FROM rejected_reports WHERE organization_id = $1", tenant.org_id
        )
    assert stored == refused == 0


async def test_a_report_never_reaches_another_organization_monitoring_the_same_domain(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    other = await make_tenant(pool)
    mine = await _monitor(https, tenant, domain)
    theirs = await _monitor(https, other, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    assert path != await _address(https, other, domain, str(https.base_url))
    r = await https.post(path, content=made.tls_gzip(made.tls_json(domain)), headers=GZIP)
    assert r.status_code == 200, r.text
    assert "tls_failures_reported" in await _posture(https, tenant, mine)
    assert await _posture(https, other, theirs) == {}
    r = await https.get("/api/reports", headers=other.auth())
    assert r.json() == []
    r = await https.get(f"/api/report-domains/{domain}/totals", headers=other.auth())
    assert r.json()["days"] == []


async def test_bad_reports_are_refused_with_their_reason_and_cost_nothing_else(
    https: httpx.AsyncClient,
    https_url: str,
    report_ca: trustme.CA,
    pool: asyncpg.Pool,
    tenant: Tenant,
    domain: str,
) -> None:
    monitor = await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    cases = [
        (made.gzip_bomb(), GZIP, "bomb"),
        (made.zip_bomb(mib=30, head=b"{"), GZIP, "bomb"),
        # XML where TLS-RPT goes is refused from its first byte, never parsed.
        (made.BILLION_LAUGHS, JSON, "wrong_kind"),
        (made.dmarc_xml(domain), JSON, "wrong_kind"),
        (made.tls_gzip(made.tls_json("nobody.example")), GZIP, "domain_not_monitored"),
        (
            made.tls_gzip(
                made.tls_json(domain, range_text=("2026-01-02T00:00:00Z", "2025-01-01T00:00:00Z"))
            ),
            GZIP,
            "bad_date_range",
        ),
        (b"{not json", JSON, "malformed"),
    ]
    for body, headers, reason in cases:
        r = await https.post(path, content=body, headers=headers)
        assert r.status_code == 400, (reason, r.text)
        assert r.json()["code"] == reason, r.text

    def counted(outcome: str) -> float:
        labels = {"kind": "unknown", "via": "https", "outcome": outcome}
        return REGISTRY.get_sample_value("mailprobe_reports_total", labels) or 0.0

    was = (counted("unsupported_type"), counted("too_large"))
    r = await https.post(path, content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    # A 2 GB stream is refused from its Content-Length, unread: the server closes the connection.
    ctx = trusting(report_ca)
    headers = {**GZIP, "Content-Length": str(2048 * MIB)}
    up = await asyncio.to_thread(upload, https_url + path, ctx, headers, blocks(2048))
    print(f"2 GiB declared: {up.acked / MIB:.1f} MiB taken by the server, {up.sent / MIB} sent")
    assert up.acked <= MAX_PACKED + buffer_slack(), up
    assert (up.status, up.headers.get("connection")) == (413, "close")
    assert (counted("unsupported_type"), counted("too_large")) == (was[0] + 1, was[1] + 1)

    r = await https.get("/api/rejected-reports", headers=tenant.auth("readonly"))
    assert [x["reason"] for x in r.json()] == [reason for _, _, reason in reversed(cases)]
    assert all(x["via"] == "https" and x["detail"] for x in r.json())
    assert await _posture(https, tenant, monitor) == {}
    async with pool.acquire() as conn:
        assert not await conn.fetchval(
            "SELECT count(*) FROM reports WHERE organization_id = $1", tenant.org_id
        )


async def test_findings_clear_when_their_reports_leave_the_window_and_old_reports_go(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    monitor = await _monitor(https, tenant, domain)
    path = await _address(https, tenant, domain, str(https.base_url))
    r = await https.post(path, content=made.tls_gzip(made.tls_json(domain)), headers=GZIP)
    assert r.status_code == 200, r.text
    assert "tls_failures_reported" in await _posture(https, tenant, monitor)
    async with pool.acquire() as conn:
        await _shift(conn, tenant.org_id, 8)
    await keeping.one_pass(pool, 400, Links(), now=utcnow())
    assert await _posture(https, tenant, monitor) == {}
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE reports SET received_at = now() - interval '401 days'"
            " WHERE organization_id = $1",
            tenant.org_id,
        )
        await _shift(conn, tenant.org_id, 401 - 8)
    await keeping.one_pass(pool, 400, Links(), now=utcnow())
    async with pool.acquire() as conn:
        left = await conn.fetchval(
            "SELECT (SELECT count(*) FROM report_items WHERE organization_id = $1)"
            " + (SELECT count(*) FROM report_day_totals WHERE organization_id = $1)"
            " + (SELECT count(*) FROM reports WHERE organization_id = $1)"
            " + (SELECT sum(rows) FROM report_domain_rows WHERE organization_id = $1)",
            tenant.org_id,
        )
    assert left == 0


async def _shift(conn: Conn, org_id: int, days: int) -> None:
    """The organization's aggregates moved `days` into the past."""
    for table in ("report_items", "report_day_totals"):
        await conn.execute(
            f"UPDATE {table} SET day = day - $2::int WHERE organization_id = $1", org_id, days
        )
