"""Blocklists in the console (issue 58): a monitor's page has a reputation section (each address
and domain per list and country, the lists' health, its listings) and its raised listing shows
with the other findings, on the page and on `/console/findings`, counted on the overview. A
listing seeded as the agents' answers are stored and raised by the watch itself (no list is
ever asked); over real HTTP, then in Chromium (screenshots in test-output/console/)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.ingest.store import decode_result
from controller.settings import ControllerSettings
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import lists_setting
from controller.sidechecks.blocklists.watch import BlocklistWatch
from controller.web.app import create_app
from shared.clock import WALL
from shared.messages import CheckResult, encode
from shared.sidechecks.blocklists import BlocklistAnswer, Reputation
from shared.timefmt import iso_ms, utcnow
from testkit.serving import http_client, serve_app
from tests.alerting.test_blocklists import arrived
from tests.api.helpers import SMTP, minimal_body
from tests.conftest import PASSWORD, Tenant
from tests.console import browser
from tests.console.helpers import Browserish

pytestmark = pytest.mark.breadth

LISTS = "bl.spamcop.net:ip:major, psbl.surriel.com"
OUTBOUND = "81.2.69.170"  # a query name only: nothing is ever sent to it
HOST_IP = "81.2.69.171"


@pytest.fixture(scope="module")
async def console_url(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The console with BLOCKLISTS set: SpamCop (made major) and PSBL."""
    on = settings.replace(blocklists=LISTS)
    async with serve_app(create_app(on, pool)) as url:
        yield url


def answer(zone: str, name: str, a: list[str], txt: str | None = None) -> BlocklistAnswer:
    return BlocklistAnswer(zone=zone, name=name, a=a, txt=txt)


def result(monitor: dict[str, Any], cc: str, listed: bool, at: Any) -> CheckResult:
    """One country's round as the agent reports it: SpamCop healthy, listing the outbound
    address from DE only; PSBL lists its never-listed test entry (dead) everywhere."""
    spamcop, psbl = "bl.spamcop.net", "psbl.surriel.com"
    answers = [
        answer(spamcop, "127.0.0.2", ["127.0.0.2"]),
        answer(spamcop, "127.0.0.1", []),
        answer(spamcop, OUTBOUND, ["127.0.0.2"] if listed else [], "Blocked - see spamcop"),
        answer(spamcop, HOST_IP, []),
        answer(psbl, "127.0.0.2", ["127.0.0.2"]),
        answer(psbl, "127.0.0.1", ["127.0.0.2"]),
        answer(psbl, OUTBOUND, ["127.0.0.2"]),
        answer(psbl, HOST_IP, ["127.0.0.2"]),
    ]
    names = {"127.0.0.2": "listed", "127.0.0.1": "listed", OUTBOUND: "listed", HOST_IP: "host"}
    return CheckResult(
        job_id=f"job-{cc}-{monitor['publicId']}",
        monitor_id=monitor["publicId"],
        monitor_type="smtp",
        country=cc,
        agent_id=f"{cc}-agent",
        scheduled_at=iso_ms(at),
        started_at=iso_ms(at),
        finished_at=iso_ms(at),
        status="up",
        side_checks={"blocklists": Reputation(names=names, answers=answers)},
    )


async def seeded(
    console_url: str, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> dict[str, Any]:
    """An SMTP monitor listing the outbound address, DE's and US's answers stored as the
    ingester stores them, the listing raised by the watch after its hold."""
    async with http_client(base_url=console_url, timeout=10) as api:
        body = minimal_body(tenant, name="Outbound relay", reputation={"ips": [OUTBOUND]})
        r = await api.post(SMTP, json=body, headers=tenant.auth())
        assert r.status_code == 201, r.text
    monitor: dict[str, Any] = r.json()
    t0 = utcnow() - timedelta(hours=2)
    async with pool.acquire() as conn, conn.transaction():
        sent = [result(monitor, "DE", True, t0), result(monitor, "US", False, t0)]
        await db.record(conn, [arrived(decode_result(encode(r))) for r in sent])
    hold = settings.reputation.blocklist_hold_seconds
    watch = BlocklistWatch(
        pool,
        lists_setting(LISTS),
        interval_s=settings.reputation.blocklist_interval_seconds,
        hold_s=hold,
        clock=WALL,
    )
    await watch.run_once(t0)
    await watch.run_once(t0 + timedelta(seconds=hold))
    return monitor


async def test_the_reputation_section_and_the_blocklisted_finding_over_http(
    console_url: str, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    monitor = await seeded(console_url, tenant, pool, settings)
    async with http_client(base_url=console_url, timeout=10) as http:
        client = Browserish(http, tenant.tokens["readonly"])  # any role reads it
        page = (await client.get(f"/console/monitors/{monitor['publicId']}")).text
        overview = (await client.get("/console/")).text
        findings = (await client.get("/console/findings?severity=critical")).text
    reputation = page[page.index('id="reputation"') :]
    standing = reputation[: reputation.index('id="list-health"')]
    row = standing[standing.index(f'data-name="{OUTBOUND}" data-zone="bl.spamcop.net"') :]
    row = row[: row.index("</tr>")]
    assert "DE: listed since" in row and "US: not listed" in row
    assert f"https://www.spamcop.net/bl.shtml?{OUTBOUND}" in row
    psbl = standing[standing.index(f'data-name="{OUTBOUND}" data-zone="psbl.surriel.com"') :]
    assert "DE: list unhealthy" in psbl[: psbl.index("</tr>")]
    assert 'data-name="127.0.0.2"' not in standing  # the lists' test entries are not its names
    health = reputation[reputation.index('id="list-health"') :]
    assert "lists everything" in health[: health.index("</table>")]
    posture = page[page.index('id="open-findings"') : page.index("<h3>History</h3>")]
    assert 'data-code="blocklisted"' in posture and "critical" in posture
    assert f"{OUTBOUND} on SpamCop (bl.spamcop.net)" in posture
    assert "1 critical" in overview
    assert 'data-code="blocklisted"' in findings and "Outbound relay" in findings


async def test_the_menus_reputation_page_shows_each_lists_health_per_country(
    console_url: str, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    await seeded(console_url, tenant, pool, settings)
    async with http_client(base_url=console_url, timeout=10) as http:
        client = Browserish(http, tenant.tokens["readonly"])
        overview = (await client.get("/console/")).text
        page = (await client.get("/console/reputation")).text
    assert 'href="/console/reputation"' in overview
    spamcop = page[page.index('data-zone="bl.spamcop.net"') :]
    spamcop = spamcop[: spamcop.index("</tr>")]
    assert 'data-health="healthy">DE: healthy' in spamcop and "US: healthy" in spamcop
    assert "critical" in spamcop  # made major
    psbl = page[page.index('data-zone="psbl.surriel.com"') :]
    assert 'data-health="unhealthy">DE: unhealthy' in psbl[: psbl.index("</tr>")]


async def test_the_reputation_page_says_when_no_list_is_asked(
    client: Browserish, tenant: Tenant
) -> None:
    client.session = tenant.tokens["readonly"]
    page = (await client.get("/console/reputation")).text
    assert 'id="no-lists"' in page and "BLOCKLISTS" in page


def text(driver: webdriver.Chrome) -> str:
    return str(driver.execute_script("return document.body ? document.body.innerText : '';"))


async def test_reputation_in_chromium_from_the_findings_to_the_monitor(
    console_url: str,
    tenant: Tenant,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    driver: webdriver.Chrome,
) -> None:
    monitor = await seeded(console_url, tenant, pool, settings)

    def scenario() -> None:
        driver.set_window_size(1280, 1000)
        driver.delete_all_cookies()
        driver.get(f"{console_url}/console/login")
        driver.find_element(By.NAME, "email").send_keys(tenant.emails["owner"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "findings-summary"))
        driver.find_element(By.CSS_SELECTOR, "#findings-summary a").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "findings"))
        assert f"{OUTBOUND} on SpamCop" in text(driver) and "Blocklisted" in text(driver)
        driver.find_element(By.LINK_TEXT, "Outbound relay").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "reputation"))
        assert monitor["publicId"] in driver.current_url
        section = driver.find_element(By.ID, "reputation")
        section.location_once_scrolled_into_view  # noqa: B018
        shown = section.text
        assert "DE: listed since" in shown and "US: not listed" in shown
        assert "SpamCop" in shown and "PSBL" in shown and "unhealthy" in shown
        link = section.find_element(By.LINK_TEXT, "Request delisting")
        assert link.get_attribute("href") == f"https://www.spamcop.net/bl.shtml?{OUTBOUND}"
        assert "Blocklisted" in driver.find_element(By.ID, "posture").text
        browser.screenshot(driver, "monitor-reputation")
        driver.set_window_size(390, 844)
        width = driver.execute_script("return document.documentElement.clientWidth")
        wide = driver.execute_script("return document.documentElement.scrollWidth")
        assert wide <= width, "the reputation section scrolls sideways at 390 px"
        browser.screenshot(driver, "monitor-reputation-phone")

    await asyncio.to_thread(scenario)
