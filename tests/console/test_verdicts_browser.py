"""A round trip's verdicts in Debian's Chromium: a receiving server's header value that is
markup stays text (no element is made, no script runs), and each verdict's hover names its
meaning."""

from datetime import timedelta
from typing import Any, cast

import asyncpg
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.jobs.rules import JobIds
from controller.monitors.kinds import ROUNDTRIP
from controller.web.api.monitor_kinds import api_of
from tests.conftest import PASSWORD, make_tenant
from tests.console import browser
from tests.console.helpers import store_result
from tests.console.test_browser import Loop, in_browser

pytestmark = pytest.mark.breadth

HOSTILE = "<img src=x onerror=z=1>"  # 23 characters: shown whole
CELLS = """
return [...document.querySelectorAll('#round-phases td[data-verdict]')].map(td => ({
  method: td.dataset.verdict,
  text: td.textContent,
  title: td.querySelector('span.verdict').title,
  elements: td.querySelectorAll('*').length,
}));
"""


async def test_a_hostile_verdict_is_text_and_each_verdict_says_its_meaning(
    driver: webdriver.Chrome, http: httpx.AsyncClient, pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    body = {
        **cast(dict[str, Any], api_of(ROUNDTRIP).create_examples[0].value),
        "customerId": org.customer_public_id,
    }
    r = await http.post(api_of(ROUNDTRIP).path, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    m = r.json()
    await store_result(
        pool,
        job_ids,
        m,
        "DE",
        "up",
        ago=timedelta(minutes=2),
        monitor_type="roundtrip",
        phases={"submitMs": 100.0, "deliveryMs": 900.0, "fetchMs": 50.0},
        folder="INBOX",
        auth_results={"spf": "pass", "dkim": HOSTILE, "dmarc": "fail"},
        arc={"instances": 1, "cv": "none"},
    )
    base = str(http.base_url).rstrip("/")

    def scenario(loop: Loop) -> tuple[list[dict[str, Any]], Any]:
        driver.delete_all_cookies()
        driver.get(f"{base}/console/login")
        driver.find_element(By.NAME, "email").send_keys(org.emails["readonly"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "live"))
        driver.get(f"{base}/console/monitors/{m['publicId']}")
        browser.wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "td[data-verdict]"))
        browser.screenshot(driver, "roundtrip-verdicts")
        return driver.execute_script(CELLS), driver.execute_script("return window.z")

    seen: dict[str, Any] = {}

    def run(loop: Loop) -> None:
        seen["cells"], seen["pwned"] = scenario(loop)

    await in_browser(run)
    cells = {c["method"]: c for c in seen["cells"]}
    assert seen["pwned"] is None
    assert [c["elements"] for c in seen["cells"]] == [1, 1, 1, 1]  # the span alone
    assert cells["dkim"]["text"] == HOSTILE
    assert cells["dkim"]["title"].startswith("DKIM: not a standard verdict")
    assert cells["spf"]["text"] == "pass" and cells["spf"]["title"].startswith("SPF: passed")
    assert cells["dmarc"]["title"].startswith("DMARC: failed")
    assert cells["arc"]["text"] == "none" and cells["arc"]["title"].startswith("ARC: nothing")
