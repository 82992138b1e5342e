"""A burst of TLS-RPT reports about a domain while its MX is down (issue 66): the report
findings are evidence of the open incident, not pages of their own; the incident lists them;
once it is over a report finding is sent as always. Real uvicorn with TLS, real PostgreSQL."""

from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from controller.alerting import flow_store as flow_db
from controller.alerting import incident_store as incident_db
from controller.notify.evidence_store import EVIDENCE_MAX
from shared.timefmt import utcnow
from testkit.reports import made
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.reports.test_tls_endpoint import GZIP, _address

BURST = 6


async def _outage(pool: asyncpg.Pool, tenant: Tenant, monitor: dict[str, Any]) -> int:
    """The monitor's incident open in a flow incident of its own, as the alerter leaves it."""
    async with pool.acquire() as conn, conn.transaction():
        monitor_id: int = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
        )
        started = utcnow() - timedelta(minutes=3)
        incident = await incident_db.open_incident(
            conn, monitor_id, started, "refused", "unreachable", ["DE", "US"]
        )
        return await flow_db.start(conn, tenant.org_id, incident.id, started)


async def _report_notices(pool: asyncpg.Pool, monitor: dict[str, Any]) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
        " WHERE m.public_id = $1::uuid AND o.kind = 'finding'",
        monitor["publicId"],
    )
    return n


async def test_a_report_burst_during_an_outage_is_its_evidence_not_pages(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    monitor = await create(
        https,
        tenant,
        hostname=f"mx1.{domain}",
        port=25,
        mailDomain=domain,
        notificationEmail=f"ops@{domain}",
    )
    flow_id = await _outage(pool, tenant, monitor)
    path = await _address(https, tenant, domain, str(https.base_url))
    for n in range(BURST):
        failures = [
            {
                "result-type": "certificate-expired" if n % 2 else "starttls-not-supported",
                "sending-mta-ip": "198.51.100.62",
                "receiving-mx-hostname": f"mx1.{domain}",
                "receiving-ip": "203.0.113.56",
                "failed-session-count": 100 + n,
            }
        ]
        body = made.tls_gzip(made.tls_json(domain, report_id=f"burst-{n}", failures=failures))
        r = await https.post(path, content=body, headers=GZIP)
        assert r.status_code == 200, r.text
    assert await _report_notices(pool, monitor) == 0
    evidence = await pool.fetch(
        "SELECT source, summary FROM flow_incident_evidence WHERE flow_incident_id = $1", flow_id
    )
    assert 1 <= len(evidence) <= min(BURST, EVIDENCE_MAX)
    assert {e["source"] for e in evidence} == {"report"}
    shown = (await https.get("/api/incidents", headers=tenant.auth("readonly"))).json()
    (incident,) = [i for i in shown["items"] if i["state"] == "open"]
    assert [e["source"] for e in incident["evidence"]] == ["report"] * len(evidence)

    # Over: the next report's finding is a page of its own again.
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE incidents SET ended_at = now() WHERE flow_incident_id = $1", flow_id
        )
        await flow_db.end(conn, flow_id, utcnow())
    other = [
        {
            "result-type": "validation-failure",
            "sending-mta-ip": "198.51.100.62",
            "receiving-mx-hostname": f"mx1.{domain}",
            "receiving-ip": "203.0.113.56",
            "failed-session-count": 999,
        }
    ]
    body = made.tls_gzip(made.tls_json(domain, report_id="after", failures=other))
    assert (await https.post(path, content=body, headers=GZIP)).status_code == 200
    assert await _report_notices(pool, monitor) >= 1


async def test_a_report_finding_two_monitors_show_during_an_outage_is_one_evidence(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    """Two monitors of the MX name the domain (issue 80): the report's one fact is one row of
    the open incident's evidence, and no page."""
    common = {"mailDomain": domain, "notificationEmail": f"ops@{domain}"}
    smtp = await create(https, tenant, hostname=f"mx1.{domain}", port=25, **common)
    smtps = await create(https, tenant, hostname=f"mx1.{domain}", port=465, **common)
    flow_id = await _outage(pool, tenant, smtp)
    path = await _address(https, tenant, domain, str(https.base_url))
    body = made.tls_gzip(made.tls_json(domain, report_id="shared"))
    assert (await https.post(path, content=body, headers=GZIP)).status_code == 200
    assert await _report_notices(pool, smtp) + await _report_notices(pool, smtps) == 0
    evidence = await pool.fetch(
        "SELECT source, summary FROM flow_incident_evidence WHERE flow_incident_id = $1", flow_id
    )
    assert [e["source"] for e in evidence] == ["report"], [e["summary"] for e in evidence]
