"""A domain's report finding is one fact (issue 80): one TLS-RPT report about a domain five
monitors name is one finding, one notice per recipient (one e-mail to the address they share,
one webhook notice to the customer's channel), shown on the monitors it concerns (the SMTP
monitor of the MX and the round trip sending through it; DMARC on every sender; never IMAP or
POP3), and counted once. Real PostgreSQL, the real intake and API."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from controller.notify.links import Links
from controller.posture import store as posture
from controller.reports import intake
from controller.settings import ControllerSettings
from shared.timefmt import utcnow
from testkit.reports import made
from testkit.serving import serve_app
from tests.alerting.conftest import channel_app
from tests.api.helpers import create
from tests.api.test_roundtrip_monitors import make as make_roundtrip
from tests.conftest import Tenant
from tests.console.helpers import Browserish

PATHS = {
    "mx": "/api/smtp-monitors",
    "submission": "/api/smtp-monitors",
    "imap": "/api/imap-pop-monitors",
    "pop3": "/api/imap-pop-monitors",
    "roundtrip": "/api/roundtrip-monitors",
}


@pytest.fixture
async def api(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """The API with loopback granted to the channels (their notices are only queued here)."""
    async with (
        serve_app(channel_app(settings, pool)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


async def _five(http: httpx.AsyncClient, tenant: Tenant, domain: str) -> dict[str, dict[str, Any]]:
    mail = f"ops@{domain}"
    common = {"mailDomain": domain, "notificationEmail": mail}
    out = {
        "mx": await create(http, tenant, hostname=f"mx1.{domain}", port=25, **common),
        "submission": await create(http, tenant, hostname=f"mail.{domain}", port=587, **common),
        "imap": await create(http, tenant, "imap", hostname=f"mail.{domain}", **common),
    }
    pop = await create(http, tenant, "imap", hostname=f"mail.{domain}", port=995, **common)
    r = await http.patch(
        f"/api/imap-pop-monitors/{pop['publicId']}",
        json={"imapPopConfig": {"protocol": "pop3"}},
        headers=tenant.auth(),
    )
    assert r.status_code == 200, r.text
    out["pop3"] = pop
    rt = await make_roundtrip(http, tenant, send__hostname=f"mx1.{domain}", send__port=25)
    r = await http.patch(
        f"/api/roundtrip-monitors/{rt['publicId']}", json=common, headers=tenant.auth()
    )
    assert r.status_code == 200, r.text
    out["roundtrip"] = rt
    return out


async def _open(
    http: httpx.AsyncClient, tenant: Tenant, path: str, monitor: dict[str, Any]
) -> set[str]:
    r = await http.get(f"{path}/{monitor['publicId']}/posture", headers=tenant.auth())
    assert r.status_code == 200, r.text
    return {f["code"] for f in r.json()["findings"] if f["state"] == "open"}


async def test_one_tls_report_for_a_domain_of_five_monitors_is_one_notice_per_channel(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    monitors = await _five(api, tenant, domain)
    r = await api.post(
        "/api/notification-channels",
        json={
            "name": "on call",
            "kind": "webhook",
            "url": "https://127.0.0.1:9/in",
            "secret": "whsec-domain-facts-0001",
            "customerIds": [tenant.customer_id],
        },
        headers=tenant.auth("owner"),
    )
    assert r.status_code == 201, r.text

    report = made.tls_gzip(made.tls_json(domain, report_id="one"))
    taken = await intake.take(pool, tenant.org_id, report, "https", "test", Links(), now=utcnow())
    assert taken.stored, taken

    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT o.channel, o.target FROM notification_outbox o"
            " JOIN monitors m ON m.id = o.monitor_id"
            " WHERE m.organization_id = $1 AND o.kind = 'finding' ORDER BY o.id",
            tenant.org_id,
        )
    by_channel: dict[str, int] = {}
    for row in rows:
        by_channel[row["channel"]] = by_channel.get(row["channel"], 0) + 1
    assert by_channel == {"email": 1, "webhook": 1}, [dict(x) for x in rows]

    shown = {name: await _open(api, tenant, PATHS[name], m) for name, m in monitors.items()}
    # TLS-RPT is about the MX: the SMTP monitor of mx1 and the round trip sending through it,
    # not the submission server, nor mailbox access.
    concerned = {"tls_failures_reported"}
    assert shown == {
        "mx": concerned,
        "submission": set(),
        "roundtrip": concerned,
        "imap": set(),
        "pop3": set(),
    }

    async with pool.acquire() as conn:
        counts = await posture.open_counts(conn, tenant.org_id)
    assert counts == {"warning": 1}
    # The console's findings page: one row for the fact, naming the three monitors showing it.
    console = Browserish(api, session=tenant.tokens["member"])
    page = (await console.get("/console/findings")).text
    assert page.count('data-code="tls_failures_reported"') == 1
    assert "all (1)" in page and "1 open findings on 2 monitors" in page

    # The same report again from another reporter with nothing new tells nobody.
    again = made.tls_gzip(made.tls_json(domain, report_id="two", reporter="Other Reporter"))
    assert (
        await intake.take(pool, tenant.org_id, again, "https", "test", Links(), now=utcnow())
    ).stored
    async with pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
            " WHERE m.organization_id = $1 AND o.kind = 'finding'",
            tenant.org_id,
        )
    assert n == 2

    # A DMARC report: two facts more (a known sender failing, unknown sources), shown on the
    # domain's senders only, held for the domain's digest (its last notice went just now),
    # three facts counted three times, not fifteen.
    dmarc = made.dmarc_xml(domain, report_id="dmarc-1")
    assert (
        await intake.take(pool, tenant.org_id, dmarc, "https", "test", Links(), now=utcnow())
    ).stored
    reported = {"tls_failures_reported", "dmarc_failures_reported", "dmarc_unknown_source"}
    shown = {name: await _open(api, tenant, PATHS[name], m) for name, m in monitors.items()}
    assert shown == {
        "mx": reported,
        "submission": reported - {"tls_failures_reported"},
        "roundtrip": reported,
        "imap": set(),
        "pop3": set(),
    }
    async with pool.acquire() as conn:
        assert await posture.open_counts(conn, tenant.org_id) == {"warning": 3}
        held = await conn.fetchrow(
            "SELECT codes, due_at FROM report_fact_notices WHERE organization_id = $1",
            tenant.org_id,
        )
    assert held is not None and held["due_at"] is not None
    assert set(held["codes"]) == {"dmarc_failures_reported", "dmarc_unknown_source"}
    # The digest is one notice per recipient too: one e-mail, one webhook notice. The pass sends
    # every organization's due digest (other tests' share this database), so this tenant's rows
    # are what is counted.
    assert await intake.send_digests(pool, Links(), held["due_at"] + timedelta(seconds=1)) >= 1
    async with pool.acquire() as conn:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM report_fact_notices WHERE organization_id = $1"
            " AND (due_at IS NOT NULL OR news > 0)",
            tenant.org_id,
        )
        digests = await conn.fetch(
            "SELECT o.channel, o.subject FROM notification_outbox o"
            " JOIN monitors m ON m.id = o.monitor_id"
            " WHERE m.organization_id = $1 AND o.kind = 'finding' ORDER BY o.id OFFSET 2",
            tenant.org_id,
        )
    assert waiting == 0
    assert sorted(d["channel"] for d in digests) == ["email", "webhook"]
    assert all(d["subject"].startswith("[mailprobe] Digest: 3 findings") for d in digests), [
        d["subject"] for d in digests
    ]


async def test_a_report_finding_an_earlier_release_put_on_imap_clears_at_the_sweep(
    api: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
) -> None:
    monitors = await _five(api, tenant, domain)
    report = made.tls_gzip(made.tls_json(domain, report_id="one"))
    assert (
        await intake.take(pool, tenant.org_id, report, "https", "test", Links(), now=utcnow())
    ).stored
    imap = await pool.fetchval(
        "SELECT id FROM monitors WHERE public_id = $1::uuid", monitors["imap"]["publicId"]
    )
    await pool.execute(  # as a release that put report findings on every monitor left it
        "INSERT INTO posture_findings (monitor_id, code, country, severity, detail, appeared_at,"
        " last_seen_at) VALUES ($1, 'tls_failures_reported', '', 'warning', 'old', now(), now())",
        imap,
    )
    assert await _open(api, tenant, PATHS["imap"], monitors["imap"]) == {"tls_failures_reported"}
    await intake.sweep(pool, Links(), now=utcnow())
    assert await _open(api, tenant, PATHS["imap"], monitors["imap"]) == set()
    assert await _open(api, tenant, PATHS["mx"], monitors["mx"]) == {"tls_failures_reported"}
