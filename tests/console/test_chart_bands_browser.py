"""A monitor's response-time chart in Debian's Chromium, over a seeded hour from two countries:
each band and its legend say what happened in its time bucket. A bucket in which every country
failed reads "every country failed" though a passing round shares it; one in which one country
failed, "some countries failed"; all passing and a missed round draw no band."""

from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.jobs.rules import JobIds
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import PASSWORD, make_tenant
from tests.console import browser
from tests.console.helpers import store_result
from tests.console.test_browser import Loop, in_browser

pytestmark = pytest.mark.breadth

BANDS = """
return [...document.querySelectorAll('figure.chart rect[data-band]')].map(r => ({
  kind: r.dataset.band,
  x: parseFloat(r.getAttribute('x')),
  title: r.querySelector('title').textContent,
}));
"""
LEGEND = """
return [...document.querySelectorAll('figure.chart [data-legend]')].map(
  k => [k.dataset.legend, k.textContent.trim()]);
"""


async def test_each_band_says_what_its_bucket_saw(
    driver: webdriver.Chrome, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    m = await create(http, org, "smtp", name="Banded relay", allowedCheckCountryCodes=["DE", "US"])

    now = utcnow()

    async def round_of(minutes: float, **outcome: str) -> None:
        """A round `minutes` ago, with each country's outcome."""
        at = now - timedelta(minutes=minutes)
        for cc, status in outcome.items():
            kind = {"down": "refused", "missed": "no_agent"}.get(status)
            wire = "down" if status == "missed" else status
            await store_result(pool, job_ids, m, cc, wire, at=at, error_kind=kind)

    await round_of(50, DE="down", US="down")  # every country failed...
    await round_of(50 - 0.0001, DE="up", US="up")  # ...and passed 6 ms later, in that bucket
    await round_of(40, DE="down", US="up")  # some failed
    await round_of(30, DE="up", US="up")  # all passing
    await round_of(20, DE="missed", US="missed")  # no data
    base = str(http.base_url).rstrip("/")

    def scenario(loop: Loop) -> tuple[list[dict[str, Any]], list[list[str]]]:
        driver.delete_all_cookies()
        driver.get(f"{base}/console/login")
        driver.find_element(By.NAME, "email").send_keys(org.emails["readonly"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "live"))
        driver.get(f"{base}/console/monitors/{m['publicId']}?range=hour")
        browser.wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "figure.chart"))
        browser.screenshot(driver, "monitor-bands")
        return driver.execute_script(BANDS), driver.execute_script(LEGEND)

    seen: dict[str, Any] = {}

    def run(loop: Loop) -> None:
        seen["bands"], seen["legend"] = scenario(loop)

    await in_browser(run)
    bands = sorted(seen["bands"], key=lambda b: b["x"])
    assert [(b["kind"], b["title"]) for b in bands] == [
        ("down", "every country failed: 2 failed, 2 passed"),
        ("failing", "some countries failed: 1 failed, 1 passed"),
    ], bands
    assert seen["legend"] == [
        ["down", "every country failed"],
        ["failing", "some countries failed"],
    ]
