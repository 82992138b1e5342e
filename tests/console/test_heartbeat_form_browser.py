"""The heartbeat monitor's form in Debian's Chromium (issue 83): made through its form (a bad
period comes back with the field marked and its message), listed with its kind, its page showing
the address, edited through the same form keeping that address. Screenshots go to
test-output/console/."""

import asyncio

import asyncpg
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.conftest import PASSWORD, make_tenant
from tests.console import browser

pytestmark = pytest.mark.breadth


def _text(driver: webdriver.Chrome) -> str:
    return str(driver.execute_script("return document.body ? document.body.innerText : '';"))


def _type(driver: webdriver.Chrome, values: dict[str, str]) -> None:
    form = driver.find_element(By.ID, "new-monitor")
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)


def _submit(driver: webdriver.Chrome) -> None:
    driver.find_element(By.CSS_SELECTOR, "#new-monitor button[type=submit]").click()


async def test_a_heartbeat_monitor_through_its_form_list_page_and_edit(
    driver: webdriver.Chrome, pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    org = await make_tenant(pool)
    base = str(http.base_url).rstrip("/")

    def scenario() -> str:
        driver.delete_all_cookies()
        driver.get(f"{base}/console/login")
        driver.find_element(By.NAME, "email").send_keys(org.emails["member"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: "/console/login" not in d.current_url)
        driver.find_element(By.LINK_TEXT, "New heartbeat").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "heartbeat-hint"))
        _type(
            driver,
            {
                "name": "Nightly backup report",
                "heartbeatConfig.everyMinutes": "0",
                "heartbeatConfig.graceMinutes": "45",
                "heartbeatConfig.expected": "2",
                "heartbeatConfig.sender": "backup@example.com",
                "heartbeatConfig.subject": "Backup report",
            },
        )
        browser.screenshot(driver, "new-heartbeat")
        _submit(driver)
        browser.wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".field-error"))
        every = driver.find_element(By.NAME, "heartbeatConfig.everyMinutes")
        assert every.get_attribute("aria-invalid") == "true"
        said = driver.find_element(By.ID, "err-heartbeatConfig-everyMinutes").text
        assert "heartbeatConfig.everyMinutes" in said and ">= 1" in said, said
        assert every.get_attribute("value") == "0"  # the entries come back
        sender = driver.find_element(By.NAME, "heartbeatConfig.sender")
        assert sender.get_attribute("value") == "backup@example.com"
        assert driver.find_element(By.NAME, "name").get_attribute("aria-invalid") is None
        browser.screenshot(driver, "new-heartbeat-refused")
        _type(driver, {"heartbeatConfig.everyMinutes": "1440"})
        _submit(driver)
        browser.wait(driver, lambda d: "created" in _text(d))
        page = _text(driver)
        assert "expects 2 every 1440 min, grace 45 min" in page, page
        address = driver.find_element(By.CSS_SELECTOR, "#heartbeat-address code").text
        monitor_url = driver.current_url.split("?")[0]
        driver.get(f"{base}/console/?kind=heartbeat")
        row = driver.find_element(By.CSS_SELECTOR, f'a[href="{monitor_url[len(base) :]}"]')
        assert row.text == "Nightly backup report"
        assert "heartbeat" in _text(driver).lower()
        driver.get(monitor_url)
        driver.find_element(By.LINK_TEXT, "Edit").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "new-monitor"))
        assert address in driver.find_element(By.ID, "heartbeat-hint").text
        assert (
            driver.find_element(By.NAME, "heartbeatConfig.everyMinutes").get_attribute("value")
            == "1440"
        )
        _type(driver, {"heartbeatConfig.graceMinutes": "99999"})
        _submit(driver)
        browser.wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".field-error"))
        grace = driver.find_element(By.NAME, "heartbeatConfig.graceMinutes")
        assert grace.get_attribute("aria-invalid") == "true"
        _type(driver, {"heartbeatConfig.graceMinutes": "90", "heartbeatConfig.subject": ""})
        _submit(driver)
        browser.wait(driver, lambda d: "Saved." in _text(d))
        assert "grace 90 min" in _text(driver)
        assert driver.find_element(By.CSS_SELECTOR, "#heartbeat-address code").text == address
        browser.screenshot(driver, "heartbeat-edited")
        return monitor_url.rsplit("/", 1)[-1]

    public_id = await asyncio.to_thread(scenario)
    got = await http.get(f"/api/heartbeat-monitors/{public_id}", headers=org.auth())
    assert got.status_code == 200, got.text
    shown = got.json()
    assert shown["heartbeatConfig"] == {
        "byTime": None,
        "timeZone": None,
        "days": [],
        "mailboxMonitorId": None,
        "everyMinutes": 1440,
        "graceMinutes": 90,
        "expected": 2,
        "sender": "backup@example.com",
        "subject": "",
    }
    assert shown["name"] == "Nightly backup report"
