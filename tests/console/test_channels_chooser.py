"""The channel page picks who a channel serves, in Debian's Chromium: an admin ticks monitors and
a customer, saves, and the API shows the choice (`monitorIds`, `customerIds`); unticking
clears it. Another organization's monitor or customer posted to the form is a 404 and changes
nothing; a member may not choose."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.notify.egress import Egress
from controller.settings import ControllerSettings
from controller.web.app import create_app
from testkit.alerting.receivers import client_context
from testkit.serving import http_client, serve_app
from tests.api.helpers import create
from tests.conftest import PASSWORD, make_tenant
from tests.console import browser
from tests.console.helpers import Browserish

pytestmark = pytest.mark.breadth


@pytest.fixture
async def served(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    egress = Egress(ssl_context=client_context())
    async with serve_app(create_app(settings, pool, egress=egress)) as url:
        yield url


def log_in(driver: webdriver.Chrome, url: str, email: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/console/login")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    browser.wait(driver, lambda d: "/login" not in d.current_url)


async def test_an_admin_picks_the_monitors_and_customers_a_channel_serves(
    driver: webdriver.Chrome, served: str, pool: asyncpg.Pool
) -> None:
    org, other = await make_tenant(pool), await make_tenant(pool)
    async with http_client(base_url=served, timeout=20) as api:
        chosen = await create(api, org, name="Chosen relay")
        await create(api, org, name="Left relay")
        foreign = await create(api, other, name="Foreign relay")
        r = await api.post(
            "/api/notification-channels",
            json={"name": "Ops chat", "kind": "slack", "url": "https://hooks.slack.com/services/x"},
            headers=org.auth("admin"),
        )
        assert r.status_code == 201, r.text
        channel = r.json()

        def scenario() -> None:
            log_in(driver, served, org.emails["admin"])
            driver.get(f"{served}/console/channels")
            form = driver.find_element(By.CSS_SELECTOR, f'form[data-channel="{channel["id"]}"]')
            driver.find_element(By.CSS_SELECTOR, "details.choose summary").click()
            assert "Foreign relay" not in form.text  # another organization's: not offered
            for name, value in (("monitor", chosen["publicId"]), ("customer", org.customer_id)):
                box = form.find_element(By.CSS_SELECTOR, f'input[name={name}][value="{value}"]')
                box.click()
                assert box.is_selected(), box.get_attribute("outerHTML")
            browser.screenshot(driver, "channel-chooser")
            form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            cells = (
                "return [...document.querySelectorAll('td.served-monitors,td.served-customers')]"
            )
            browser.wait(
                driver, lambda d: d.execute_script(cells + ".map(c => c.innerText)") == ["1", "1"]
            )

        await asyncio.to_thread(scenario)
        got: dict[str, Any] = (
            await api.get(f"/api/notification-channels/{channel['id']}", headers=org.auth())
        ).json()
        assert got["monitorIds"] == [chosen["publicId"]] and got["customerIds"] == [org.customer_id]

        # Posted by hand: another organization's monitor or customer is a 404, nothing changes;
        # a member may not choose; an empty form clears the choice.
        page = Browserish(api)
        page.session = org.tokens["admin"]
        token = await page.csrf("/console/channels")
        path = f"/console/channels/{channel['id']}/choose"
        for form in (
            {"monitor": foreign["publicId"]},
            {"customer": str(other.customer_id)},
            {"customer": "99999999999999999999"},
            {"monitor": "not-a-uuid"},
        ):
            r = await page.post(path, form, token=token)
            assert r.status_code in (400, 404), (form, r.status_code)
        after = await api.get(f"/api/notification-channels/{channel['id']}", headers=org.auth())
        assert after.json()["monitorIds"] == [chosen["publicId"]]
        page.session = org.tokens["member"]
        t = await page.csrf("/console/channels")
        assert (await page.post(path, {"monitor": chosen["publicId"]}, token=t)).status_code == 403
        page.session = other.tokens["owner"]
        t = await page.csrf("/console/channels")
        assert (await page.post(path, {}, token=t)).status_code == 404
        page.session = org.tokens["admin"]
        assert (await page.post(path, {}, token=token)).status_code == 303
        cleared = await api.get(f"/api/notification-channels/{channel['id']}", headers=org.auth())
        assert cleared.json()["monitorIds"] == [] and cleared.json()["customerIds"] == []
