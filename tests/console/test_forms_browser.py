"""The monitor forms in Debian's Chromium: a round trip made through its form (a refused submit
comes back filled in, its passwords empty in the page and kept sealed), its page showing both
legs, and its edit form saying which secrets are stored. Screenshots go to test-output/console/."""

import asyncio

import asyncpg
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.web.api.monitor_schemas import MASK
from tests.api.helpers import create
from tests.conftest import PASSWORD, make_tenant
from tests.console import browser

pytestmark = pytest.mark.breadth

SECRETS = ("Send-Secret-3", "Box-Secret-4")


def _text(driver: webdriver.Chrome) -> str:
    return str(driver.execute_script("return document.body ? document.body.innerText : '';"))


def _type(driver: webdriver.Chrome, values: dict[str, str]) -> None:
    form = driver.find_element(By.ID, "new-monitor")
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)


async def test_a_round_trip_through_its_form_page_and_edit_form(
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
        driver.get(f"{base}/console/new/roundtrip")
        _type(
            driver,
            {
                "name": "Mail arrives",
                "roundtripConfig.to": "probe@example.net",
                "roundtripConfig.send.hostname": "smtp.example.com",
                "roundtripConfig.send.port": "not a port",
                "roundtripConfig.send.auth.user": "probe@example.com",
                "roundtripConfig.send.auth.pass": SECRETS[0],
                "roundtripConfig.receive.hostname": "imap.example.net",
                "roundtripConfig.receive.user": "probe@example.net",
                "roundtripConfig.receive.password": SECRETS[1],
                "roundtripConfig.receive.folders": "INBOX, Junk",
                "notificationPhoneNumber": "+4915112345678",
            },
        )
        browser.screenshot(driver, "new-roundtrip")
        driver.find_element(By.CSS_SELECTOR, "#new-monitor button[type=submit]").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "error"))
        assert "roundtripConfig.send.port must be a whole number" in _text(driver)
        port = driver.find_element(By.NAME, "roundtripConfig.send.port")
        assert port.get_attribute("aria-invalid") == "true"
        assert port.get_attribute("value") == "not a port"  # the entries come back
        for name in ("roundtripConfig.send.auth.pass", "roundtripConfig.receive.password"):
            assert driver.find_element(By.NAME, name).get_attribute("value") == ""
            state = driver.find_element(By.CSS_SELECTOR, f'[data-secret="{name}"]').text
            assert state.startswith("entered"), state
        assert not any(s in driver.page_source for s in SECRETS)
        browser.screenshot(driver, "new-roundtrip-refused")
        _type(driver, {"roundtripConfig.send.port": "587"})
        driver.find_element(By.CSS_SELECTOR, "#new-monitor button[type=submit]").click()
        browser.wait(driver, lambda d: "created" in _text(d))
        page = _text(driver)
        assert "smtp.example.com:587" in page and "imap.example.net" in page
        assert "INBOX, Junk" in page
        browser.screenshot(driver, "roundtrip-monitor")
        monitor_url = driver.current_url.split("?")[0]
        driver.get(f"{monitor_url}/edit")
        states = driver.find_elements(By.CSS_SELECTOR, "[data-secret]")
        told = {s.get_attribute("data-secret"): s.text for s in states}
        assert told["roundtripConfig.send.auth.pass"].startswith("set — leave empty to keep")
        assert told["roundtripConfig.receive.password"].startswith("set — leave empty to keep")
        browser.screenshot(driver, "edit-roundtrip")
        driver.set_window_size(390, 844)  # a phone: the form itself never scrolls sideways
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth;"
        )
        browser.screenshot(driver, "edit-roundtrip-phone")
        driver.set_window_size(1280, 1000)
        return monitor_url.rsplit("/", 1)[-1]

    public_id = await asyncio.to_thread(scenario)
    got = await http.get(f"/api/roundtrip-monitors/{public_id}", headers=org.auth())
    config = got.json()["roundtripConfig"]
    assert config["send"]["auth"]["pass"] == MASK and config["receive"]["password"] == MASK
    assert config["receive"]["folders"] == ["INBOX", "Junk"]
    assert got.json()["notificationPhoneNumber"] == "+4915112345678"


async def test_secret_env_is_no_field_of_the_forms_and_an_edit_keeps_it(
    driver: webdriver.Chrome, pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    """`secretEnv` names the environment variables monitors as code reads secrets from: no
    visible box invites a password into it (every password or client secret on the IMAP
    form is type=password), and an edit in the console says which variables are named and
    keeps them."""
    org = await make_tenant(pool)
    base = str(http.base_url).rstrip("/")
    made = await create(
        http, org, "imap", name="Applied box", secretEnv={"password": "MAILPROBE_SECRET_BOX"}
    )

    def scenario() -> None:
        driver.delete_all_cookies()
        driver.get(f"{base}/console/login")
        driver.find_element(By.NAME, "email").send_keys(org.emails["member"])
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait(driver, lambda d: "/console/login" not in d.current_url)
        driver.get(f"{base}/console/new/imap")
        form = driver.find_element(By.ID, "new-monitor")
        names = [e.get_attribute("name") or "" for e in form.find_elements(By.NAME, "*")]
        fields = form.find_elements(By.CSS_SELECTOR, "input, textarea, select")
        assert not [f for f in fields if "secretEnv" in (f.get_attribute("name") or "")], names
        assert "secretEnv" not in _text(driver)
        for label in form.find_elements(By.TAG_NAME, "label"):
            if label.text.startswith(("Password", "Client secret")):
                kind = label.find_element(By.TAG_NAME, "input").get_attribute("type")
                assert kind == "password", label.text
        driver.get(f"{base}/console/monitors/{made['publicId']}/edit")
        note = driver.find_element(By.ID, "secret-env").text
        assert "password from MAILPROBE_SECRET_BOX" in note, note
        browser.screenshot(driver, "edit-imap-secret-env")
        _type(driver, {"name": "Applied box, renamed"})
        driver.find_element(By.CSS_SELECTOR, "#new-monitor button[type=submit]").click()
        browser.wait(
            driver, lambda d: "/edit" not in d.current_url or d.find_elements(By.ID, "error")
        )
        assert not driver.find_elements(By.ID, "error"), _text(driver)[:2000]

    await asyncio.to_thread(scenario)
    got = (await http.get(f"/api/imap-pop-monitors/{made['publicId']}", headers=org.auth())).json()
    assert got["name"] == "Applied box, renamed"
    assert got["secretEnv"] == {"password": "MAILPROBE_SECRET_BOX"}
    assert got["imapPopConfig"]["password"] == MASK
