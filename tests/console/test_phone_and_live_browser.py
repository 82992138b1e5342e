"""The console in Debian's Chromium: a monitor's page follows its results without a reload (its
live part is fetched every 5 s), and at a phone's width (390 px) no main page scrolls sideways,
tables included, and host names wrap at their labels, not a character per line. Screenshots go
to test-output/console/."""

from datetime import timedelta

import asyncpg
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.jobs.rules import JobIds
from tests.api.helpers import create
from tests.conftest import PASSWORD, make_tenant
from tests.console import browser
from tests.console.helpers import store_result
from tests.console.test_browser import Loop, in_browser

pytestmark = pytest.mark.breadth

PHONE = 390
LONG_HOST = "mx1.outbound-relay.eu-central-1.mail-gateway.customer-example.test"

# Every element that is wider inside than it shows (a box that scrolls sideways), by tag and
# class; and each host name's height in lines.
OVERFLOWING = """
return [...document.querySelectorAll('main *')]
  .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')
  .map(e => e.tagName + '.' + e.className);
"""
HOST_LINES = """
return [...document.querySelectorAll('.host')].filter(e => e.offsetParent !== null).map(e => {
  const style = getComputedStyle(e);
  return Math.round(e.getBoundingClientRect().height / parseFloat(style.lineHeight));
});
"""


def state(driver: webdriver.Chrome) -> str:
    return str(
        driver.execute_script(
            "const s = document.getElementById('monitor-state'); return s ? s.dataset.state : '';"
        )
    )


async def test_the_monitor_page_follows_results_live_and_fits_a_phone(
    driver: webdriver.Chrome, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    m = await create(
        http,
        org,
        "smtp",
        name="Outbound relay with a long name",
        hostname=LONG_HOST,
        allowedCheckCountryCodes=["DE"],
    )
    for n in range(3):
        await create(http, org, "smtp", name=f"Relay {n}", hostname=f"relay{n}.{LONG_HOST}")
    for minutes in (50, 40, 30):
        await store_result(pool, job_ids, m, "DE", "up", ago=timedelta(minutes=minutes))
    await store_result(
        pool, job_ids, m, "DE", "down", ago=timedelta(minutes=2), error_kind="refused"
    )
    base = str(http.base_url).rstrip("/")
    page = f"{base}/console/monitors/{m['publicId']}"

    def scenario(loop: Loop) -> None:
        driver.delete_all_cookies()
        driver.get(f"{base}/console/login")
        driver.find_element(By.NAME, "email").send_keys(org.emails["owner"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "live"))
        driver.get(page)
        browser.wait(driver, lambda d: state(d) == "down")
        # Uptime is time: the last 2 minutes down of an hour up before it make its bar partly
        # down (amber, `warn`) or down (red) by how much of the hour has passed, never `up`.
        assert driver.find_elements(
            By.CSS_SELECTOR,
            '#bars-hours .bar[data-level="down"], #bars-hours .bar[data-level="warn"]',
        )
        driver.execute_script("window.notReloaded = true;")
        loop.run(store_result(pool, job_ids, m, "DE", "up", ago=timedelta(seconds=3)))
        browser.wait(driver, lambda d: state(d) == "up", 20)
        assert driver.execute_script("return window.notReloaded === true;")  # live, no reload
        browser.screenshot(driver, "monitor-live")

        driver.set_window_size(PHONE, 844)
        try:
            for name, path in (
                ("overview", "/console/"),
                ("monitor", f"/console/monitors/{m['publicId']}"),
                ("findings", "/console/findings"),
                ("agents", "/console/agents"),
                ("channels", "/console/channels"),
                ("scrape-tokens", "/console/scrape-tokens"),
                ("status-pages", "/console/status-pages"),
            ):
                driver.get(f"{base}{path}")
                browser.wait(driver, lambda d: d.find_elements(By.TAG_NAME, "h1"))
                width = driver.execute_script("return document.scrollingElement.scrollWidth;")
                assert width <= PHONE, (name, width)
                assert driver.execute_script(OVERFLOWING) == [], name
                lines = driver.execute_script(HOST_LINES)
                assert all(n <= 3 for n in lines), (name, lines)
                if name in ("overview", "monitor"):
                    assert lines, name  # the host names are there to measure
                    browser.screenshot(driver, f"{name}-{PHONE}")
        finally:
            driver.set_window_size(1280, 1000)

    await in_browser(scenario)
