"""Incidents in the console (issue 66): the incidents page lists each mail-flow problem (a flow
incident) with every monitor and country it touches, its causes and the evidence attached; an
incident has its own page; the overview shows the open ones; a monitor's page links to the
incident it is part of. States read one word each (`open`, `closed`) on every page. Another
organization sees none of it (404 for its page), readonly users read it all and are offered no
control; a global supporter reads every organization's.

The incidents are made the real way, in a database of this module's own (the alerter judges
every queued monitor of its database): rounds stored as the ingester stores them, judged by the
alerter, a report finding sent through the one notify entry while the incident is open. Over
real HTTP, then in Chromium, which also measures that `127.0.0.1:54466` stays on one line at
narrow widths (screenshots in test-output/console/)."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import nats
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.db.pool import create_pool
from controller.jobs.rules import JobIds
from controller.monitors import store as monitors
from controller.notify import entry
from controller.notify.links import Links
from controller.notify.outbox import OutboxWorker
from controller.notify.recipients import Outgoing
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.streams import ensure_streams
from shared.timefmt import utcnow
from testkit.alerting.wired import wired_alerter
from testkit.serving import http_client, serve_app
from tests.alerting.conftest import Clock, Rig
from tests.conftest import PASSWORD, Tenant, make_tenant, scratch_database
from tests.console import browser
from tests.console.helpers import Browserish

pytestmark = pytest.mark.breadth

HOST, PORT = "127.0.0.1", 54466
SERVER = f"{HOST}:{PORT}"
DOWN = {"DE": "refused", "FR": "refused", "US": "up"}
UP = {"DE": "up", "FR": "up", "US": "up"}
EVIDENCE = "TLS-RPT: 12 failed sessions (sts-policy-fetch-error) for mx.example.test"


@dataclass
class Seeded:
    url: str
    tenant: Tenant
    other: Tenant
    flow: str  # the open incident of three monitors
    closed: str  # an incident over
    other_flow: str  # the other organization's open incident
    members: dict[str, str]  # name -> monitor public id
    other_monitor: str


def _no_outbox(**_: Any) -> OutboxWorker:
    raise AssertionError("notices are only queued here")


async def _monitor(rig: Rig, tenant: Tenant, name: str, kind: str, **kw: Any) -> asyncpg.Record:
    imap = {"user": "probe", "password": "pw", "tls": False}
    configs: dict[str, Any] = {
        "imap": imap,
        "roundtrip": {
            "send": {"auth": {"user": "probe", "pass": "pw"}},
            "to": "probe@example.test",
            "receive": {**imap, "hostname": HOST, "port": PORT},
        },
        "smtp": {},
    }
    return await rig.monitor(
        name=name, kind=kind, config=configs[kind], tenant=tenant, email=None, phone=None, **kw
    )


async def _seed(pool: asyncpg.Pool, url: str, nats_url: str, job_ids: JobIds) -> Seeded:
    tenant, other = await make_tenant(pool, supporter=True), await make_tenant(pool)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        clock = Clock()
        alerter = wired_alerter(
            pool, js, job_ids, links=Links("https://mailprobe.example.test"), clock=clock
        )
        rig = Rig(pool, js, tenant, None, None, clock, alerter, _no_outbox, job_ids)  # type: ignore[arg-type]
        ms = {
            "IMAPS": await _monitor(rig, tenant, "IMAPS", "imap", hostname=HOST, port=PORT),
            "Webmail IMAP": await _monitor(
                rig, tenant, "Webmail IMAP", "imap", hostname=HOST, port=PORT
            ),
            "Round trip": await _monitor(
                rig, tenant, "Round trip", "roundtrip", hostname="smtp.example.test", port=587
            ),
        }
        relay = await _monitor(rig, tenant, "Outbound relay", "smtp", hostname="relay.example.test")
        theirs = await _monitor(rig, other, "Their IMAP", "imap", hostname=HOST, port=PORT)
        # The relay's outage is over before the others start: an incident of its own, closed.
        await rig.rounds(relay, 0, [DOWN, DOWN, UP, UP])
        for n in range(4, 6):
            for m in [*ms.values(), theirs]:
                await rig.round(m, n, DOWN)
            await alerter.burst()
        async with pool.acquire() as conn, conn.transaction():
            note = Outgoing(
                "finding", "email", "oncall@example.test", EVIDENCE, EVIDENCE, None, "k1"
            )
            queued = await entry.notify(
                conn,
                entry.Notice(
                    entry.Source.REPORT, tenant.org_id, monitors.decode(ms["IMAPS"]), None, [note]
                ),
                utcnow(),
            )
            assert not queued  # attached to the open incident as evidence
        flows = await rig.fetch(
            "SELECT f.public_id, f.organization_id, f.ended_at,"
            " (SELECT count(*) FROM incidents i WHERE i.flow_incident_id = f.id) AS n"
            " FROM flow_incidents f ORDER BY f.id"
        )
    finally:
        await nc.drain()
    (closed,) = [f for f in flows if f["organization_id"] == tenant.org_id and f["ended_at"]]
    (flow,) = [f for f in flows if f["organization_id"] == tenant.org_id and not f["ended_at"]]
    (theirs_flow,) = [f for f in flows if f["organization_id"] == other.org_id]
    assert flow["n"] == 3
    return Seeded(
        url,
        tenant,
        other,
        str(flow["public_id"]),
        str(closed["public_id"]),
        str(theirs_flow["public_id"]),
        {name: str(m["public_id"]) for name, m in ms.items()},
        str(theirs["public_id"]),
    )


@pytest.fixture(scope="module")
async def seeded(
    database_url: str, settings: ControllerSettings, nats_url: str, job_ids: JobIds
) -> AsyncIterator[Seeded]:
    async with scratch_database(database_url, "mailprobe_incidents") as url:
        pool = await create_pool(url, 6)
        try:
            on = settings.replace(database_url=url)
            async with serve_app(create_app(on, pool)) as served:
                yield await _seed(pool, served, nats_url, job_ids)
        finally:
            await pool.close()


async def _read(s: Seeded, role: str, path: str, tenant: Tenant | None = None) -> tuple[int, str]:
    async with http_client(base_url=s.url, timeout=10) as http:
        r = await Browserish(http, (tenant or s.tenant).tokens[role]).get(path)
    return r.status_code, r.text


def _posts(page: str) -> list[str]:
    """The forms that would change something (every page has the logout form)."""
    return [f for f in page.split("<form")[1:] if 'method="post"' in f and "/logout" not in f]


async def test_the_incidents_page_lists_each_problem_with_monitors_countries_causes_evidence(
    seeded: Seeded,
) -> None:
    status, page = await _read(seeded, "readonly", "/console/incidents")
    assert status == 200
    row = page[page.index(f'data-incident="{seeded.flow}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-state="open" href' in row and ">open</a>" in row
    for name, mid in seeded.members.items():
        assert f'href="/console/monitors/{mid}">{name}</a>' in row
    assert "3 monitors, 3 down" in row and "DE, FR" in row
    assert '<td data-label="Causes">unreachable</td>' in row
    assert '<td data-label="Evidence">1</td>' in row
    closed = page[page.index(f'data-incident="{seeded.closed}"') :]
    assert 'data-state="closed" href' in closed[: closed.index("</tr>")]
    assert seeded.other_flow not in page and "Their IMAP" not in page
    assert _posts(page) == []
    status, only_open = await _read(seeded, "readonly", "/console/incidents?state=open")
    assert seeded.flow in only_open and seeded.closed not in only_open


async def test_an_incident_page_shows_every_monitor_its_outage_and_the_evidence(
    seeded: Seeded,
) -> None:
    status, page = await _read(seeded, "readonly", f"/console/incidents/{seeded.flow}")
    assert status == 200
    assert 'id="incident-state" data-state="open">open</span>' in page
    assert 'id="incident-countries">DE, FR</dd>' in page
    members = page[page.index('id="incident-members"') : page.index("<h2>Evidence</h2>")]
    for name, mid in seeded.members.items():
        assert f'data-monitor="{mid}"' in members and name in members
    assert members.count('data-state="open">open</span>') == 3
    evidence = page[page.index('id="incident-evidence"') :]
    assert EVIDENCE in evidence and ">report<" in evidence
    assert _posts(page) == []


async def test_the_overview_shows_the_open_incidents_and_a_monitor_links_to_its_own(
    seeded: Seeded,
) -> None:
    _, overview = await _read(seeded, "readonly", "/console/")
    section = overview[overview.index('id="open-incidents"') : overview.index("</section>")]
    assert f'href="/console/incidents/{seeded.flow}"' in section
    assert seeded.closed not in section and "1 open" in section
    assert 'href="/console/incidents"' in overview  # the menu
    _, monitor = await _read(seeded, "readonly", f"/console/monitors/{seeded.members['IMAPS']}")
    banner = monitor[monitor.index('id="part-of-incident"') :]
    assert f'href="/console/incidents/{seeded.flow}">incident of 3 monitors</a>' in banner
    table = monitor[monitor.index('id="incidents"') :]
    assert f'data-incident="{seeded.flow}">incident of 3 monitors' in table


async def test_another_organization_and_anonymous_see_none_of_it_a_supporter_sees_all(
    seeded: Seeded,
) -> None:
    other = seeded.other
    for path in (f"/console/incidents/{seeded.flow}", f"/console/incidents/{seeded.closed}"):
        status, page = await _read(seeded, "owner", path, other)
        assert status == 404 and "IMAPS" not in page
    _, listed = await _read(seeded, "owner", "/console/incidents", other)
    assert seeded.other_flow in listed and seeded.flow not in listed and "IMAPS" not in listed
    _, overview = await _read(seeded, "owner", "/console/", other)
    assert seeded.flow not in overview and seeded.other_flow in overview
    status, _ = await _read(seeded, "owner", f"/console/monitors/{seeded.members['IMAPS']}", other)
    assert status == 404
    status, _ = await _read(seeded, "owner", "/console/incidents/not-a-uuid")
    assert status == 404
    _, everyone = await _read(seeded, "supporter", "/console/incidents")
    assert seeded.flow in everyone and seeded.other_flow in everyone
    _, one = await _read(seeded, "supporter", f"/console/incidents/{seeded.other_flow}")
    assert "Their IMAP" in one
    async with http_client(base_url=seeded.url, timeout=10) as http:
        for path in ("/console/incidents", f"/console/incidents/{seeded.flow}"):
            r = await Browserish(http).get(path)  # anonymous: to the login, nothing shown
            assert r.status_code in (302, 303, 401) and "IMAPS" not in r.text


async def test_readonly_is_offered_nothing_to_change_and_cannot_post_there(seeded: Seeded) -> None:
    async with http_client(base_url=seeded.url, timeout=10) as http:
        client = Browserish(http, seeded.tenant.tokens["readonly"])
        token = await client.csrf(f"/console/incidents/{seeded.flow}")
        r = await client.post(f"/console/incidents/{seeded.flow}", token=token)
        assert r.status_code in (404, 405)
        r = await client.post(f"/console/monitors/{seeded.members['IMAPS']}/pause", token=token)
        assert r.status_code == 403


# The lines each `host:port` on the page takes: the tops of its text's boxes, told apart by
# more than a pixel or two.
_LINES = """
const out = [];
for (const el of document.querySelectorAll('.host')) {
  if (!el.textContent.includes(arguments[0]) || !el.getClientRects().length) continue;
  const range = document.createRange();
  range.selectNodeContents(el);
  const tops = [...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top));
  const lines = [...new Set(tops)].sort((a, b) => a - b)
    .filter((t, i, all) => i === 0 || t - all[i - 1] > 2);
  out.push([el.textContent.trim(), lines.length, Math.round(el.getBoundingClientRect().width)]);
}
return out;
"""


def _one_line(driver: webdriver.Chrome, where: str) -> int:
    """How many `127.0.0.1:54466` the page shows, after checking each is on one line."""
    found = driver.execute_script(_LINES, SERVER)
    assert found, f"{where}: no {SERVER} shown"
    for text, lines, width in found:
        assert lines == 1, f"{where}: {text!r} takes {lines} lines in {width} px"
    return len(found)


def _login(driver: webdriver.Chrome, seeded: Seeded, role: str) -> None:
    """Logged in as `role` through the login form, on the overview."""
    driver.set_window_size(1280, 1000)
    driver.delete_all_cookies()
    driver.get(f"{seeded.url}/console/login")
    driver.find_element(By.NAME, "email").send_keys(seeded.tenant.emails[role])
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    browser.wait(driver, lambda d: d.find_elements(By.ID, "open-incidents"))


async def test_in_chromium_from_the_overview_to_the_incident_and_its_monitor(
    seeded: Seeded, driver: webdriver.Chrome
) -> None:
    def scenario() -> None:
        _login(driver, seeded, "readonly")
        open_list = driver.find_element(By.ID, "open-flow-incidents")
        assert "3 monitors, 3 down" in open_list.text
        open_list.find_element(By.LINK_TEXT, "open").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "incident-members"))
        assert seeded.flow in driver.current_url
        assert driver.find_element(By.ID, "incident-state").text == "open"
        assert EVIDENCE in driver.find_element(By.ID, "incident-evidence").text
        assert not driver.find_elements(By.CSS_SELECTOR, "main form")
        browser.screenshot(driver, "incident")
        driver.find_element(By.LINK_TEXT, "Webmail IMAP").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "part-of-incident"))
        driver.find_element(By.CSS_SELECTOR, "#part-of-incident a").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "incident-members"))
        assert seeded.flow in driver.current_url

    await asyncio.to_thread(scenario)


@pytest.mark.parametrize("width", [360, 620])
async def test_host_and_port_stay_on_one_line_at_narrow_widths(
    seeded: Seeded, driver: webdriver.Chrome, width: int
) -> None:
    """`127.0.0.1:54466` is one line on every page that shows it, on a phone (stacked tables)
    and just above (tables with narrow columns)."""

    def scenario() -> None:
        _login(driver, seeded, "owner")
        driver.set_window_size(width, 900)
        seen = 0
        for path in (
            "/console/",
            "/console/incidents",
            f"/console/incidents/{seeded.flow}",
            f"/console/monitors/{seeded.members['IMAPS']}",
            f"/console/monitors/{seeded.members['Round trip']}",
        ):
            driver.get(f"{seeded.url}{path}")
            browser.wait(driver, lambda d: d.find_elements(By.ID, "main"))
            seen += _one_line(driver, f"{path} at {width} px")
        browser.screenshot(driver, f"incidents-{width}")
        assert seen >= 5

    await asyncio.to_thread(scenario)
