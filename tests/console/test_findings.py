"""Security posture in the console: a monitor's page shows its open findings, one row per
finding naming the countries that see it, and their history; `/console/findings` lists every
open finding of the organization's monitors (never another organization's), linked from the
overview with its counts. Over real HTTP, then in Chromium (screenshots in
test-output/console/)."""

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.posture import store as posture_db
from controller.posture.rules import Finding
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import PASSWORD, Tenant, make_tenant
from tests.console import browser
from tests.console.helpers import Browserish

CHAIN = "the chain did not verify"


async def monitor_id(pool: asyncpg.Pool, monitor: dict[str, Any]) -> int:
    found: int = await pool.fetchval(
        "SELECT id FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
    )
    return found


async def found(pool: asyncpg.Pool, monitor: dict[str, Any], *findings: Finding) -> None:
    """Findings recorded as the posture records them (controller.posture.store)."""
    ident = await monitor_id(pool, monitor)
    at = utcnow() - timedelta(minutes=5)
    async with pool.acquire() as conn, conn.transaction():
        for f in findings:
            await posture_db.appear(conn, ident, f, at)


async def seeded(http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant) -> dict[str, Any]:
    """Two monitors: one whose chain fails from DE and US, with a short key from DE and a weak
    cipher that came and went; one with missing SPF; and another organization's finding."""
    relay = await create(http, tenant, "smtp", name="Private CA relay")
    mail = await create(http, tenant, "smtp", name="Domain mail")
    await found(
        pool,
        relay,
        Finding("chain_not_verified", "DE", CHAIN),
        Finding("chain_not_verified", "US", CHAIN),
        Finding("short_key", "DE", "RSA key of 1024 bits <script>alert(1)</script>"),
        Finding("weak_cipher", "US", "cipher RC4-SHA"),
    )
    async with pool.acquire() as conn:
        await posture_db.clear(
            conn, await monitor_id(pool, relay), Finding("weak_cipher", "US", ""), utcnow()
        )
    await found(pool, mail, Finding("spf_missing", "DE", "no SPF record at customer.test"))
    other = await make_tenant(pool)
    theirs = await create(http, other, "smtp", name="Their relay")
    await found(pool, theirs, Finding("tlsa_mismatch", "DE", "their secret detail"))
    return {"relay": relay, "mail": mail}


async def test_the_monitor_page_and_the_findings_page_show_posture_in_scope(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    monitors = await seeded(http, pool, tenant)
    client.session = tenant.tokens["readonly"]  # any role reads posture
    page = (await client.get(f"/console/monitors/{monitors['relay']['publicId']}")).text
    assert 'id="posture"' in page
    open_part = page[page.index('id="open-findings"') : page.index("<h3>History</h3>")]
    assert open_part.count('data-code="chain_not_verified"') == 1  # one row for both countries
    assert "DE, US" in open_part and "critical" in open_part and "RSA key of 1024 bits" in open_part
    assert "weak_cipher" not in open_part
    # what a server made an agent see is text, never markup
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    history = page[page.index('id="past-findings"') :]
    assert "Weak cipher" in history
    overview = (await client.get("/console/")).text
    assert 'href="/console/findings"' in overview
    # a finding two countries see counts once, as it is listed
    assert "3 open" in overview and "1 critical" in overview and "2 warning" in overview
    listing = await client.get("/console/findings")
    assert listing.status_code == 200
    rows = listing.text
    assert "Private CA relay" in rows and "Domain mail" in rows
    assert "Their relay" not in rows and "their secret detail" not in rows
    assert rows.count('data-code="chain_not_verified"') == 1
    critical = (await client.get("/console/findings?severity=critical")).text
    assert "Private CA relay" in critical and "Domain mail" not in critical
    odd = await client.get("/console/findings?severity=%3Cscript%3E")
    assert odd.status_code == 200 and "<script>" not in odd.text
    client.session = None
    assert (await client.get("/console/findings")).status_code in (302, 303, 401)


def text(driver: webdriver.Chrome) -> str:
    return str(driver.execute_script("return document.body ? document.body.innerText : '';"))


async def test_findings_in_chromium_from_the_overview_to_the_monitor(
    tenant: Tenant,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    api_url: str,
    driver: webdriver.Chrome,
) -> None:
    monitors = await seeded(http, pool, tenant)

    def scenario() -> None:
        driver.set_window_size(1280, 1000)
        driver.delete_all_cookies()
        driver.get(f"{api_url}/console/login")
        driver.find_element(By.NAME, "email").send_keys(tenant.emails["owner"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "findings-summary"))
        driver.find_element(By.CSS_SELECTOR, "#findings-summary a").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "findings"))
        shown = text(driver)
        assert "Chain not verified" in shown and "DE, US" in shown and "Their relay" not in shown
        browser.screenshot(driver, "findings")
        driver.set_window_size(390, 844)
        width = driver.execute_script("return document.documentElement.clientWidth")
        wide = driver.execute_script("return document.documentElement.scrollWidth")
        assert wide <= width, "the findings scroll sideways at 390 px"
        browser.screenshot(driver, "findings-phone")
        driver.set_window_size(1280, 1000)
        link = driver.find_element(By.LINK_TEXT, "Private CA relay")
        link.click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "open-findings"))
        assert monitors["relay"]["publicId"] in driver.current_url
        driver.find_element(By.ID, "posture").location_once_scrolled_into_view  # noqa: B018
        posture = driver.find_element(By.ID, "posture").text
        assert "Short key" in posture and "Weak cipher" in posture
        browser.screenshot(driver, "monitor-posture")

    await asyncio.to_thread(scenario)
