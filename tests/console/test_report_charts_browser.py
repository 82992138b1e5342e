"""A monitored domain's reports as charts in Debian's Chromium, from seeded reports: on the page
of a monitor naming the domain, the TLS sessions each reporter saw succeed and fail per day, and
each source network's DMARC pass rate; the domain's own page with its largest failures; no
reports section for a monitor without a `mailDomain`, no page for another organization's
domain."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.notify.links import Links
from controller.reports import intake
from controller.web.console import charts
from shared.timefmt import utcnow
from testkit.reports import made
from tests.api.helpers import create
from tests.conftest import PASSWORD, Tenant, make_tenant
from tests.console import browser
from tests.console.test_browser import Loop, in_browser

pytestmark = pytest.mark.breadth

LINES = """
const fig = document.getElementById(arguments[0]);
if (!fig) return null;
return {
  keys: [...fig.querySelectorAll('[data-line]')].map(k => k.dataset.line),
  lines: [...fig.querySelectorAll('polyline')].map(
    p => [p.querySelector('title').textContent, p.getAttribute('points')]),
};
"""


async def _take(pool: asyncpg.Pool, org: Tenant, data: bytes) -> None:
    taken = await intake.take(pool, org.org_id, data, "mail", "seeded", Links(), now=utcnow())
    assert taken.stored, taken


def _y(share: float) -> str:
    """The y of a value at `share` of the chart's height (its axis ends at 100 %)."""
    plot_h = charts.HEIGHT - charts.PAD_BOTTOM - 6
    return f"{charts.HEIGHT - charts.PAD_BOTTOM - plot_h * share:.1f}"


async def test_report_charts_on_the_monitor_page_and_the_domain_page(
    driver: webdriver.Chrome, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org, other = await make_tenant(pool), await make_tenant(pool)
    domain = f"c{uuid.uuid4().hex[:10]}.example.com"
    m = await create(http, org, "smtp", name="Reported relay", mailDomain=domain)
    plain = await create(http, org, "smtp", name="Plain relay")
    theirs = f"t{uuid.uuid4().hex[:10]}.example.com"
    await create(http, other, "smtp", name="Their relay", mailDomain=theirs)

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    await _take(pool, org, made.tls_gzip(made.tls_json(domain, reporter="Google LLC", begins=day1)))
    await _take(pool, org, made.tls_gzip(made.tls_json(domain, reporter="Microsoft", begins=day2)))
    records = [
        ("192.0.2.10", 90, "pass", "pass"),
        ("192.0.2.11", 10, "fail", "fail"),
        ("198.51.100.7", 5, "fail", "fail"),
    ]
    begin = int(day2.timestamp())
    await _take(
        pool,
        org,
        made.zipped(
            "r.xml", made.dmarc_xml(domain, records=records, begin=begin, end=begin + 86399)
        ),
    )
    base = str(http.base_url).rstrip("/")

    def scenario(loop: Loop) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        driver.delete_all_cookies()
        driver.get(f"{base}/console/login")
        driver.find_element(By.NAME, "email").send_keys(org.emails["readonly"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "live"))
        driver.get(f"{base}/console/monitors/{m['publicId']}")
        browser.wait(driver, lambda d: d.find_elements(By.ID, "reports"))
        driver.execute_script("document.getElementById('reports').scrollIntoView()")
        browser.screenshot(driver, "monitor-reports")
        seen["tls"] = driver.execute_script(LINES, "tls-chart")
        seen["dmarc"] = driver.execute_script(LINES, "dmarc-chart")
        driver.find_element(By.ID, "report-domain-link").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "report-failures"))
        seen["title"] = driver.find_element(By.TAG_NAME, "h1").text
        seen["failures"] = [
            [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, "#report-failures tbody tr")
        ]
        seen["domain_dmarc"] = driver.execute_script(LINES, "dmarc-chart")
        driver.get(f"{base}/console/monitors/{plain['publicId']}")
        browser.wait(driver, lambda d: d.find_elements(By.ID, "live"))
        seen["plain"] = driver.find_elements(By.ID, "reports")
        driver.get(f"{base}/console/reports/{theirs}")
        seen["theirs"] = driver.find_elements(By.ID, "reports")
        return seen

    got: dict[str, Any] = {}

    def run(loop: Loop) -> None:
        got.update(scenario(loop))

    await in_browser(run)

    assert got["tls"]["keys"] == [
        "Google LLC succeeded",
        "Google LLC failed",
        "Microsoft succeeded",
        "Microsoft failed",
    ]
    # A day with no report of a reporter is a 0 on its line, so every line spans the range.
    assert all(len(points.split()) == 30 for _, points in got["tls"]["lines"])
    assert got["dmarc"]["keys"] == ["192.0.2.0/24", "198.51.100.0/24"]
    dmarc = dict(got["dmarc"]["lines"])
    # One day with messages: one point each, at its pass rate (90 % and 0 %).
    assert dmarc["192.0.2.0/24"].split(",")[1] == _y(0.9)
    assert dmarc["198.51.100.0/24"].split(",")[1] == _y(0.0)
    assert len(dmarc["192.0.2.0/24"].split()) == 1

    assert got["title"] == domain
    assert got["domain_dmarc"] == got["dmarc"]
    results = [row[2] for row in got["failures"]]
    assert results[:2] == ["starttls-not-supported", "starttls-not-supported"]
    assert "fail" in results and "certificate-expired" in results
    assert got["plain"] == [] and got["theirs"] == []
