"""The public status page in Debian's Chromium at a phone's width (390 px): its uptime bars are
wide enough to see and tap (at 90 a row they were 2 px), nothing scrolls sideways, and the
subscription form is there. Screenshots go to test-output/console/."""

import asyncio
from datetime import timedelta

import asyncpg
import httpx
import pytest
from selenium import webdriver

from controller.jobs.rules import JobIds
from tests.api.helpers import create
from tests.conftest import make_tenant
from tests.console import browser
from tests.console.helpers import Browserish, store_result
from tests.console.test_status_pages import _publish, _row_id

pytestmark = pytest.mark.breadth


async def test_bars_are_visible_at_390_px(
    client: Browserish,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    job_ids: JobIds,
    driver: webdriver.Chrome,
) -> None:
    org = await make_tenant(pool)
    names = ("Outbound relay", "IMAP mailbox")
    ids = []
    for name in names:
        m = await create(http, org, "smtp", name=name, hostname="relay.acme.test")
        for minutes, status in ((6, "up"), (4, "up"), (2, "down")):
            await store_result(
                pool, job_ids, m, "DE", status, ago=timedelta(minutes=minutes), error_kind="tls"
            )
        ids.append(await _row_id(pool, m["publicId"]))
    slug = f"phone-{org.org_id}"
    await _publish(client, org, slug, ids, hostnames=False)
    r = await http.post(
        "/api/status-notices",
        json={"customerId": org.customer_public_id, "title": "Slow mail", "body": "Looking."},
        headers=org.auth(),
    )
    assert r.status_code == 201, r.text

    url = f"{str(http.base_url).rstrip('/')}/status/{slug}"

    def scenario() -> None:
        driver.set_window_size(390, 1000)
        try:
            driver.get(url)
            browser.wait(driver, lambda d: d.find_elements("css selector", ".bars"))
            widths = driver.execute_script(
                "return [...document.querySelectorAll('.bar')]"
                ".filter(b => b.offsetParent !== null)"
                ".map(b => b.getBoundingClientRect().width);"
            )
            assert len(widths) == 30 * len(names)  # the last 30 days at this width
            assert min(widths) >= 8, widths
            assert driver.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth;"
            )
            body = str(driver.execute_script("return document.body.innerText;"))
            for seen in ("30 days ago", "% uptime", "Last updated", "Slow mail", "Get updates"):
                assert seen in body, seen
            browser.screenshot(driver, "status-page-390")
        finally:
            driver.set_window_size(1280, 1000)
        driver.get(url)
        shown = driver.execute_script(
            "return [...document.querySelectorAll('.bar')]"
            ".filter(b => b.offsetParent !== null).length;"
        )
        assert shown == 90 * len(names)
        browser.screenshot(driver, "status-page-wide")

    # WebDriver blocks: off the event loop, which serves the page.
    await asyncio.to_thread(scenario)
