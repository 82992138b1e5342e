"""Root cause first (issue 80), on real parts: one country's agents ask everything through a
resolver that answers "does not exist" for every name (loopback DNS, its canaries failing);
the other country's resolver tells the truth. The agents' own mail DNS and blocklist probes
ask them, the results are stored as the ingester stores them, and the oracle watch runs past
its hold. The lists asked through the broken resolver are not judged apart from it: its
organization gets one notice for that country, saying the resolver is broken and what to set
(not one a list naming a Spamhaus key), none for the truthful country; `GET /api/oracles`, the
console's overview, the monitor page and the Reputation page say "not believed" with the
reason and what to set, never "0 open findings"; over HTTP, then in Chromium."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from agent.sidechecks.blocklists import BlocklistProbe
from agent.sidechecks.mail_dns import MailDnsProbe
from controller.ingest import store as results
from controller.operator_health.rules import HOLD
from controller.oracles import store as oracles_db
from controller.oracles.watch import OracleWatch
from controller.settings import ControllerSettings
from controller.sidechecks.blocklists.oracles import ListOracles
from controller.sidechecks.blocklists.rules import Fresh, ask, lists_setting
from controller.web.app import create_app
from shared.clock import WALL
from shared.messages import CheckResult, encode
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dns import DnsPeer
from testkit.peers.dnsbl import DnsblPeer, healthy
from testkit.serving import http_client, serve_app
from tests.api.helpers import SMTP, minimal_body
from tests.conftest import PASSWORD, Tenant
from tests.console import browser
from tests.console.helpers import Browserish

TRUTHFUL, BROKEN = "IS", "FJ"  # countries no other test's oracle rows use
LISTS = "rbl.example.net:ip:major, zen.spamhaus.org"
BLOCKLISTS = lists_setting(LISTS)
DOMAIN = "rootcause.example.test"
HOST = "mx.rootcause.example.test"


@pytest.fixture(scope="module")
async def console_url(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with serve_app(create_app(settings.replace(blocklists=LISTS), pool)) as url:
        yield url


@pytest.fixture(autouse=True)
async def nothing_left(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """The oracle rows and notices of these countries outlive the test's monitor: removed, so
    no later test reads them."""
    yield
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM notification_outbox WHERE dedupe_key LIKE 'oracle:%'")
        await conn.execute(
            "DELETE FROM oracle_health WHERE country = ANY($1::text[])", [TRUTHFUL, BROKEN]
        )
        await conn.execute(
            "DELETE FROM dns_canary_answers WHERE country = ANY($1::text[])", [TRUTHFUL, BROKEN]
        )


async def _round(pool: asyncpg.Pool, monitor: dict[str, Any], peers: dict[str, DnsPeer]) -> None:
    """One round from each country: its agent's mail DNS and blocklist lookups through that
    country's resolver (the one resolver both ask), stored as the ingester stores them."""
    at = utcnow().replace(microsecond=0) - timedelta(minutes=1)
    sent = []
    for cc, peer in peers.items():
        mail = MailDnsProbe(resolver=peer.address, allow_private=True)
        lists = BlocklistProbe(resolver=peer.address, shared=True, clock=WALL)
        sent.append(
            CheckResult(
                job_id=str(uuid.uuid4()),
                monitor_id=monitor["publicId"],
                monitor_type="smtp",
                country=cc,
                agent_id=f"{cc}-agent",
                scheduled_at=iso_ms(at),
                started_at=iso_ms(at),
                finished_at=iso_ms(at),
                status="up",
                side_checks={
                    "mail_dns": await mail.probe(DOMAIN, HOST, 25, 5.0),
                    "blocklists": await lists.probe(ask(BLOCKLISTS, None, Fresh()), HOST, 5.0),
                },
            )
        )
    rows = [results.decode_result(encode(r)) for r in sent]
    async with pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())
        await oracles_db.record_canaries(conn, rows)


# Every name the rounds ask is under one of these: a resolver silent for them answers nothing.
EVERY_ZONE = frozenset({"test", "net", "org", "invalid", "arpa"})


async def broken_resolver(
    console_url: str, tenant: Tenant, pool: asyncpg.Pool, silent: bool = False
) -> tuple[dict[str, Any], list[asyncpg.Record]]:
    """The monitor, and its organization's owners' oracle notices once the watch held. The
    broken resolver answers "does not exist" for every name, or (`silent`) nothing at all."""
    async with http_client(base_url=console_url, timeout=10) as api:
        body = minimal_body(
            tenant,
            name="Root cause",
            hostname=HOST,
            mailDomain=DOMAIN,
            allowedCheckCountryCodes=[TRUTHFUL, BROKEN],
        )
        r = await api.post(SMTP, json=body, headers=tenant.auth())
        assert r.status_code == 201, r.text
    monitor: dict[str, Any] = r.json()
    zones = {"rbl.example.net": healthy(), "zen.spamhaus.org": healthy()}
    dead = EVERY_ZONE if silent else frozenset()
    async with DnsblPeer(zones) as truthful, DnsPeer({}, canaries=False, silent=dead) as broken:
        await _round(pool, monitor, {TRUTHFUL: truthful, BROKEN: broken})
        assert ("2.0.0.127.zen.spamhaus.org", "A") in broken.asked  # the lists were asked
    watch = OracleWatch(pool, [ListOracles(BLOCKLISTS, 6 * 3600)], dns_window_s=3600, clock=WALL)
    t0 = utcnow()
    for n in range(3):
        await watch.run_once(t0 + n * HOLD)
    async with pool.acquire() as conn:
        notes = await conn.fetch(
            "SELECT subject, body_text FROM notification_outbox WHERE organization_id = $1"
            # the owners' (make_tenant's `operator` user, an operator, gets its own)
            " AND dedupe_key LIKE 'oracle:%' AND dedupe_key NOT LIKE '%:operators:%'"
            " ORDER BY id",
            tenant.org_id,
        )
    return monitor, notes


@pytest.mark.parametrize("silent", [False, True], ids=["nxdomain", "no-answer"])
async def test_a_broken_resolver_is_one_notice_and_every_page_says_not_believed(
    console_url: str, tenant: Tenant, pool: asyncpg.Pool, silent: bool
) -> None:
    monitor, notes = await broken_resolver(console_url, tenant, pool, silent)
    # One notice per recipient: the broken country's resolver, the lists named in it.
    assert [n["subject"] for n in notes] == [
        f"[mailprobe] Not believed in {BROKEN}: the agents' DNS resolver"
    ]
    body = notes[0]["body_text"]
    assert "blocklist standing" in body and "AGENT_DNS_RESOLVER" in body
    assert "AGENT_SPAMHAUS_DQS_KEY" not in body
    async with http_client(base_url=console_url, timeout=10) as http:
        shown = await http.get("/api/oracles", headers=tenant.auth("owner"))
        client = Browserish(http, tenant.tokens["readonly"])
        overview = (await client.get("/console/")).text
        page = (await client.get(f"/console/monitors/{monitor['publicId']}")).text
        reputation = (await client.get("/console/reputation")).text
    by = {(o["oracle"], o["country"]): o for o in shown.json()["oracles"]}
    # A list whose test entries got no answer in time is not judged at all; one judged there
    # is unknown for the resolver's sake.
    zen = by.get(("zen.spamhaus.org", BROKEN))
    if zen is not None or not silent:
        assert zen is not None and zen["state"] == "unknown", zen
        assert "AGENT_DNS_RESOLVER" in zen["whatToSet"]
    assert by[("zen.spamhaus.org", TRUTHFUL)]["state"] == "healthy"
    assert by[("dns", BROKEN)]["state"] == ("unknown" if silent else "unhealthy")
    for shown_page in (overview, page, reputation):
        box = shown_page[shown_page.index('id="not-believed"') :]
        box = box[: box.index("</section>")]
        assert f'data-not-believed="{BROKEN}"' in box and "AGENT_DNS_RESOLVER" in box
        assert "a.root-servers.net" in box and "blocklist standing" in box
        assert ("got no answer" in box) is silent
        assert f'data-not-believed="{TRUTHFUL}"' not in box
    assert f"not believed in {BROKEN}" in overview
    clean = page[page.index('id="posture-clean"') :]
    assert f"not believed in {BROKEN}" in clean[: clean.index("</p>")]
    for side in ("mail_dns", "blocklists"):
        row = page[page.index(f'data-side-check="{side}"') :]
        row = row[: row.index("</tr>")]
        assert f"not believed in {BROKEN}" in row, row
    lists = reputation[reputation.index('data-zone="zen.spamhaus.org"') :]
    lists = lists[: lists.index("</tr>")]
    assert f"{BROKEN}: not believed" in lists or (silent and f">{BROKEN}:" not in lists)
    assert f"{BROKEN}: healthy" not in lists and f"{BROKEN}: unhealthy" not in lists
    assert f'data-health="healthy">{TRUTHFUL}: healthy' in lists


def text(driver: webdriver.Chrome) -> str:
    return str(driver.execute_script("return document.body ? document.body.innerText : '';"))


async def test_a_broken_resolver_read_in_chromium(
    console_url: str, tenant: Tenant, pool: asyncpg.Pool, driver: webdriver.Chrome
) -> None:
    monitor, notes = await broken_resolver(console_url, tenant, pool)
    assert len(notes) == 1

    def scenario() -> None:
        driver.set_window_size(1280, 1000)
        driver.delete_all_cookies()
        driver.get(f"{console_url}/console/login")
        driver.find_element(By.NAME, "email").send_keys(tenant.emails["owner"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "not-believed"))
        shown = text(driver)
        assert f"not believed in {BROKEN}" in shown and "AGENT_DNS_RESOLVER" in shown
        driver.get(f"{console_url}/console/monitors/{monitor['publicId']}")
        browser.wait(driver, lambda d: d.find_elements(By.ID, "side-checks"))
        table = driver.find_element(By.ID, "side-checks").text
        assert f"not believed in {BROKEN}" in table, table
        box = driver.find_element(By.ID, "not-believed")
        assert "AGENT_DNS_RESOLVER" in box.text
        box.location_once_scrolled_into_view  # noqa: B018
        browser.screenshot(driver, "monitor-not-believed")
        driver.get(f"{console_url}/console/reputation")
        browser.wait(driver, lambda d: d.find_elements(By.ID, "blocklists"))
        assert f"{BROKEN}: not believed" in driver.find_element(By.ID, "blocklists").text
        assert "AGENT_DNS_RESOLVER" in driver.find_element(By.ID, "not-believed").text
        browser.screenshot(driver, "reputation-not-believed")

    await asyncio.to_thread(scenario)
