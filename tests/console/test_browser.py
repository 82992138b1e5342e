"""The console in a real headless browser (Debian's Chromium), against the controller with its
check pipeline, a real agent and a real SMTP server on loopback: log in, watch a down monitor
turn up without a reload, create a monitor through the form, a readonly user sees no controls,
another organization's monitor is a 404, a status page shows only what was published, and the
API docs render offline. Screenshots of the main pages go to test-output/console/."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Self, TypeVar, cast

import asyncpg
import httpx
import pytest
import trustme
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from controller.ingest.ingester import Ingester
from controller.settings import ControllerSettings
from shared import embedded
from testkit.peers.smtp import SmtpPeer
from testkit.serving import http_client
from tests.api.helpers import create
from tests.api.rig import Rig, pipeline_api
from tests.conftest import PASSWORD, Tenant, make_tenant
from tests.console import browser

COUNTRY = "TV"  # the rig's agent; no other test uses it
T = TypeVar("T")


class SmtpOnPort(SmtpPeer):
    """A plain SMTP server on a port chosen beforehand (the monitor already points at it)."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.fixed_port = port

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", self.fixed_port)
        self.port = self.fixed_port
        return self


@pytest.fixture(scope="module")
async def rig(
    settings: ControllerSettings, pool: asyncpg.Pool, nats_url: str
) -> AsyncIterator[Rig]:
    cadata = trustme.CA().cert_pem.bytes().decode()
    async with pipeline_api(settings, pool, nats_url, COUNTRY, agent_cadata=cadata) as rig:
        stop = asyncio.Event()  # the rig's ingester stores the agent's results, as `serve` does
        ingesting = asyncio.create_task(cast(Ingester, rig.pipeline.ingester).run(stop))
        try:
            yield rig
        finally:
            stop.set()
            await ingesting


@pytest.fixture
async def api(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=rig.url, timeout=10) as client:
        yield client


def text(driver: webdriver.Chrome) -> str:
    """The page's visible text (read in the page: no element reference to go stale)."""
    return str(driver.execute_script("return document.body ? document.body.innerText : '';"))


async def in_browser(scenario: Callable[["Loop"], None]) -> None:
    """Run the blocking WebDriver calls of `scenario` off the event loop, which serves the
    pages; `scenario` calls back into the loop for the async steps (an API call, a server)."""
    await asyncio.to_thread(scenario, Loop(asyncio.get_running_loop()))


class Loop:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


def log_in(driver: webdriver.Chrome, rig: Rig, email: str) -> None:
    """Through the login form, as a person does (a fresh browser session first)."""
    driver.delete_all_cookies()
    driver.get(f"{rig.url}/console/login")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    browser.wait(driver, lambda d: d.find_elements(By.ID, "live"))


def state_of(driver: webdriver.Chrome, public_id: str) -> tuple[str, str]:
    """The overview row's state and its country dot's status."""
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-monitor="{public_id}"]')
    dot = row.find_element(By.CSS_SELECTOR, f'.dot[data-country="{COUNTRY}"]')
    state = row.find_element(By.CSS_SELECTOR, "[data-state]")
    return str(state.get_attribute("data-state")), str(dot.get_attribute("data-status"))


def until_state(driver: webdriver.Chrome, public_id: str, want: str) -> None:
    def seen(d: webdriver.Chrome) -> bool:
        try:
            return state_of(d, public_id) == (want, want)
        except Exception:  # the row is being replaced by the live update, or not there yet
            return False

    browser.wait(driver, seen, 20)


async def trigger(api: httpx.AsyncClient, org: Tenant, public_id: str) -> None:
    r = await api.post(f"/api/smtp-monitors/{public_id}/trigger-check", headers=org.auth("member"))
    assert r.status_code == 202, r.text


async def test_log_in_and_watch_a_down_monitor_turn_up_live(
    driver: webdriver.Chrome, rig: Rig, pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    org = await make_tenant(pool)
    port = embedded.free_port()
    monitor = await create(
        api,
        org,
        "smtp",
        name="Edge relay",
        hostname="127.0.0.1",
        port=port,
        checkInterval=3600,
        timeoutSeconds=5,
        allowedCheckCountryCodes=[COUNTRY],
        smtpConfig={},
    )
    pid = monitor["publicId"]

    def scenario(loop: Loop) -> None:
        loop.run(trigger(api, org, pid))  # nothing listens on the port yet: refused
        log_in(driver, rig, org.emails["operator"])  # a member who operates the deployment
        until_state(driver, pid, "down")
        browser.screenshot(driver, "overview-down")
        driver.execute_script("window.notReloaded = true;")
        server = SmtpOnPort(port)
        loop.run(server.__aenter__())
        try:
            loop.run(trigger(api, org, pid))
            until_state(driver, pid, "up")
        finally:
            loop.run(server.__aexit__(None, None, None))
        assert driver.execute_script("return window.notReloaded === true;")  # live, no reload
        browser.screenshot(driver, "overview")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # the keyboard's first stop
        assert driver.switch_to.active_element.text == "Skip to content"
        driver.set_window_size(390, 844)  # a phone: the page itself never scrolls sideways
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth;"
        )
        browser.screenshot(driver, "overview-phone")
        driver.set_window_size(1280, 1000)
        driver.get(f"{rig.url}/console/agents")
        assert f"{COUNTRY}\trig" in text(driver)  # the rig's live agent, by country
        browser.screenshot(driver, "agents")
        driver.get(f"{rig.url}/console/")
        driver.find_element(By.LINK_TEXT, "Edge relay").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "monitor-state"))
        page = text(driver)
        assert "Countries" in page and COUNTRY in page and "Response time" in page
        assert driver.find_elements(By.CSS_SELECTOR, "#actions button")
        browser.screenshot(driver, "monitor")

    await in_browser(scenario)


async def test_create_a_monitor_through_the_form(
    driver: webdriver.Chrome, rig: Rig, pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    org = await make_tenant(pool)

    def scenario(loop: Loop) -> None:
        log_in(driver, rig, org.emails["admin"])
        driver.get(f"{rig.url}/console/new/smtp")
        form = driver.find_element(By.ID, "new-monitor")
        placeholder = form.find_element(By.NAME, "port").get_attribute("placeholder")
        assert "465 with implicit TLS" in str(placeholder)
        form.find_element(By.NAME, "name").send_keys("Form relay")
        form.find_element(By.NAME, "hostname").send_keys("smtp.example.com")
        form.find_element(By.NAME, "port").send_keys("not a port")
        browser.screenshot(driver, "new-monitor")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "error"))
        assert "port must be a whole number" in driver.find_element(By.ID, "error").text
        port = driver.find_element(By.NAME, "port")
        port.clear()
        port.send_keys("587")
        driver.find_element(By.NAME, "smtpConfig.auth.user").send_keys("relay@example.com")
        driver.find_element(By.NAME, "smtpConfig.auth.pass").send_keys("Relay-Secret-2")
        Select(driver.find_element(By.NAME, "checkInterval")).select_by_value("300")
        driver.find_element(By.CSS_SELECTOR, "#new-monitor button[type=submit]").click()
        browser.wait(driver, lambda d: "created" in text(d))
        assert "Form relay" in text(driver) and "smtp.example.com:587" in text(driver)

    await in_browser(scenario)
    listed = await api.get("/api/smtp-monitors?search=Form", headers=org.auth())
    [item] = listed.json()["items"]
    assert (item["port"], item["checkInterval"]) == (587, 300)
    assert item["smtpConfig"]["auth"] == {"user": "relay@example.com", "pass": "********"}


async def test_readonly_sees_no_edit_controls_and_another_orgs_monitor_is_404(
    driver: webdriver.Chrome, rig: Rig, pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    org, other = await make_tenant(pool), await make_tenant(pool)
    mine = await create(api, org, "smtp", name="Watched relay")
    theirs = await create(api, other, "smtp", name="Someone else's relay")

    def scenario(loop: Loop) -> None:
        log_in(driver, rig, org.emails["readonly"])
        assert "Watched relay" in text(driver)
        assert not driver.find_elements(By.LINK_TEXT, "New SMTP")
        driver.get(f"{rig.url}/console/monitors/{mine['publicId']}")
        assert "Watched relay" in text(driver)
        assert not driver.find_elements(By.ID, "actions")
        assert not driver.find_elements(By.CSS_SELECTOR, "main form")
        browser.screenshot(driver, "monitor-readonly")
        driver.get(f"{rig.url}/console/monitors/{theirs['publicId']}")
        assert "404: Not found" in text(driver)
        assert "Someone else's relay" not in driver.page_source

    await in_browser(scenario)


async def test_a_status_page_shows_only_what_was_published(
    driver: webdriver.Chrome, rig: Rig, pool: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    org = await make_tenant(pool)
    await create(api, org, "smtp", name="Public relay", hostname="public.acme.test")
    await create(api, org, "smtp", name="Private relay", hostname="private.acme.test")
    slug = f"acme-{org.org_id}"

    def scenario(loop: Loop) -> None:
        log_in(driver, rig, org.emails["owner"])
        driver.get(f"{rig.url}/console/status-pages")
        form = driver.find_element(By.CSS_SELECTOR, "form.card")
        form.find_element(By.NAME, "slug").send_keys(slug)
        title = form.find_element(By.NAME, "title")
        title.clear()
        title.send_keys("Acme mail")
        for box in form.find_elements(By.NAME, "monitor"):
            if "Public relay" in box.find_element(By.XPATH, "..").text:
                box.click()
        browser.screenshot(driver, "status-admin")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        browser.wait(driver, lambda d: "Saved." in text(d))
        driver.delete_all_cookies()  # the public page needs no login
        driver.get(f"{rig.url}/status/{slug}")
        page = text(driver)
        assert "Acme mail" in page and "Public relay" in page
        assert "Private relay" not in driver.page_source
        assert "acme.test" not in driver.page_source  # hostnames were not chosen
        browser.screenshot(driver, "status-page")

    await in_browser(scenario)


async def test_the_api_docs_render_with_no_network_but_the_controller(
    driver: webdriver.Chrome, rig: Rig
) -> None:
    def scenario(loop: Loop) -> None:
        driver.get(f"{rig.url}/schema")
        title = browser.wait(
            driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title")
        )
        assert "mailprobe API" in title[0].text
        urls: Any = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
        assert urls and all(u.startswith(rig.url) for u in urls), urls
        browser.screenshot(driver, "api-docs")

    await in_browser(scenario)
