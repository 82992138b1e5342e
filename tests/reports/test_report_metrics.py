"""`/metrics/reports`: an organization's report counts per monitored domain, kind and result
behind its scrape token, results outside RFC 8460's list counted as `other`, and how its
report mailbox's last read went; another organization's reports never in it."""

import secrets
from datetime import timedelta

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from controller.access.credentials import token_digest
from controller.notify.links import Links
from controller.reports import intake
from controller.reports import mailbox_store as mailboxes
from controller.web.console import scrape_store
from shared.timefmt import utcnow
from testkit.reports import made
from tests.conftest import Tenant, make_tenant
from tests.reports.test_tls_endpoint import _monitor

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _token(pool: asyncpg.Pool, tenant: Tenant) -> str:
    token = "mps_" + secrets.token_urlsafe(32)
    async with pool.acquire() as conn:
        await scrape_store.create(conn, tenant.org_id, "prom", token_digest(token))
    return token


async def _take(pool: asyncpg.Pool, tenant: Tenant, data: bytes) -> None:
    taken = await intake.take(pool, tenant.org_id, data, "mail", "test", Links(), now=utcnow())
    assert taken.stored, taken


def _series(domain: str, kind: str, result: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = (("domain", domain), ("kind", kind), ("result", result))
    return "mailprobe_report_results", labels


async def test_report_series_per_domain_and_result_behind_the_scrape_token(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    await _monitor(http, tenant, domain)
    await _take(pool, tenant, made.tls_gzip(made.tls_json(domain)))
    invented = [
        {
            "result-type": "quantum-decoherence",  # no RFC 8460 result type
            "sending-mta-ip": "198.51.100.62",
            "receiving-mx-hostname": f"mx1.{domain}",
            "receiving-ip": "203.0.113.56",
            "failed-session-count": 7,
        }
    ]
    await _take(pool, tenant, made.tls_gzip(made.tls_json(domain, failures=invented, successes=0)))
    await _take(pool, tenant, made.dmarc_zip(domain))
    other = await make_tenant(pool)
    other_domain = f"other-{domain}"
    await _monitor(http, other, other_domain)
    await _take(pool, other, made.dmarc_zip(other_domain))

    r = await http.get("/metrics/reports")
    assert r.status_code == 401
    r = await http.get("/metrics/reports", headers={"Authorization": "Bearer mps_nothing"})
    assert r.status_code == 401

    token = await _token(pool, tenant)
    r = await http.get("/metrics/reports", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    got = _samples(r.text)
    counts = {k: v for k, v in got.items() if k[0] == "mailprobe_report_results"}
    assert counts == {
        _series(domain, "tls", "success"): 5326 + 10 + 0 + 10,
        _series(domain, "tls", "certificate-expired"): 100,
        _series(domain, "tls", "starttls-not-supported"): 200,
        _series(domain, "tls", "validation-failure"): 3 + 3,
        _series(domain, "tls", "other"): 7,
        _series(domain, "dmarc", "pass"): 500,
        _series(domain, "dmarc", "fail"): 65,
    }
    assert got[("mailprobe_report_window_days", ())] == 7
    newest = got[
        ("mailprobe_report_newest_timestamp_seconds", (("domain", domain), ("kind", "tls")))
    ]
    assert utcnow().timestamp() - 2 * 86400 < newest < utcnow().timestamp()
    assert not any(name.startswith("mailprobe_report_mailbox") for name, _ in got)
    assert other_domain not in r.text

    # The mailbox's last read: absent before it, then when and whether it succeeded.
    now = utcnow()
    async with pool.acquire() as conn:
        await mailboxes.save(
            conn,
            mailboxes.StoredMailbox(
                tenant.org_id,
                "imap.example.com",
                993,
                "u",
                "enc:v1:x",
                None,
                None,
                "INBOX",
                "done",
                True,
            ),
            grant_changed=True,
            now=now,
        )
        await mailboxes.read_done(
            conn, tenant.org_id, now, now + timedelta(minutes=5), "login refused", None
        )
    r = await http.get("/metrics/reports", headers={"Authorization": f"Bearer {token}"})
    got = _samples(r.text)
    assert got[("mailprobe_report_mailbox_up", ())] == 0
    assert got[("mailprobe_report_mailbox_last_read_timestamp_seconds", ())] == now.timestamp()
