"""The login cap is per organization and account, counts logins attempted, follows the
configuration (a write past LOGIN_CAP_PER_ACCOUNT is a 403) and is never silent."""

import uuid
from typing import Any

import asyncpg
import httpx

from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from controller.settings import ControllerSettings
from shared.timefmt import parse_iso, utcnow
from tests.alertsite.helpers import MINIMAL, V3, as_error
from tests.api.helpers import PATHS, assert_error, create, seed_body
from tests.conftest import Tenant, make_tenant
from tests.pipeline.conftest import Countries, SchedulerWith, WiredPipeline
from tests.pipeline.test_scheduler import make_due

ALICE = {"auth": {"user": "alice", "pass": "pw"}}


async def capped_rows(pool: asyncpg.Pool, public_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT status, message FROM check_results"
            " WHERE monitor_public_id = $1 AND error_kind = 'login_capped'",
            uuid.UUID(public_id),
        )


async def test_another_organizations_monitors_never_cap_the_victim(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """Pins: five monitors of another organization naming the victim's user and host use up
    only their own organization's logins; the victim's monitor of that account still logs in
    (before, the cap was shared by every organization and the victim's round went
    `login_capped`). Their checks on a closed port attempt no login and count nothing."""
    sched = scheduler_with(login_cap=4)
    [cc] = countries.take(1)
    await countries.live(cc)
    attacker = await make_tenant(pipe_pool)
    theirs = [
        await create(
            api,
            attacker,
            hostname="mx.victim.example",
            port=2525,
            allowedCheckCountryCodes=[cc],
            smtpConfig=ALICE,
        )
        for _ in range(5)
    ]
    await make_due(pipe_pool, *(m["publicId"] for m in theirs))
    assert await sched.tick() == 4  # the attacker's own cap
    held = [await capped_rows(pipe_pool, m["publicId"]) for m in theirs]
    assert sum(map(len, held)) == 1
    mine = await create(
        api, org, hostname="mx.victim.example", allowedCheckCountryCodes=[cc], smtpConfig=ALICE
    )
    await make_due(pipe_pool, mine["publicId"])
    assert await sched.tick() == 1
    assert await capped_rows(pipe_pool, mine["publicId"]) == []

    # The attacker's jobs met a closed port: no login was attempted, so none is counted.
    sent = [job for job, _ in await countries.jobs(cc) if job.monitor_id != mine["publicId"]]
    refused = [
        ResultRow(
            job_id=job.job_id,
            scheduled_at=parse_iso(job.scheduled_at),
            monitor_id=uuid.UUID(job.monitor_id),
            monitor_type="smtp",
            country=cc,
            agent_id=f"{cc}-a1",
            status="down",
            error_kind="refused",
            message="connection refused",
        )
        for job in sent
    ]
    async with pipe_pool.acquire() as conn, conn.transaction():
        await results.store(conn, refused, now=utcnow())
        used = await conn.fetchval(
            "SELECT coalesce(sum(logins), 0) FROM account_logins WHERE organization_id = $1",
            attacker.org_id,
        )
    assert used == 0


async def test_a_configuration_past_the_ceiling_is_refused_naming_the_figure(
    api: httpx.AsyncClient, org: Tenant, settings: ControllerSettings
) -> None:
    """Pins: a create whose account's logins per 10 minutes (countries x rounds x logins a
    check, confirmations, trigger headroom) would pass LOGIN_CAP_PER_ACCOUNT is a 403 naming
    the figure, the account and the setting (before, it was created and its rounds capped)."""
    five = ["DE", "FR", "NL", "GB", "US"]
    fields: dict[str, Any] = {
        "hostname": "mx.example.org",
        "allowedCheckCountryCodes": five,
        "checkInterval": 60,
        "smtpConfig": ALICE,
    }
    per_monitor = 5 * (2 * 10 + settings.fair_use.trigger_check_burst)
    fits = settings.fair_use.login_cap_per_account // per_monitor
    for _ in range(fits):
        await create(api, org, **fields)
    r = await api.post(PATHS["smtp"], json=seed_body("smtp", org, **fields), headers=org.auth())
    assert r.status_code == 403, r.text
    detail = r.text
    assert f"{(fits + 1) * per_monitor:,}" in detail
    assert "alice@mx.example.org" in detail and "LOGIN_CAP_PER_ACCOUNT" in detail
    # Another user on that host is another account.
    await create(api, org, **{**fields, "smtpConfig": {"auth": {"user": "bob", "pass": "pw"}}})


async def test_reaching_the_cap_tells_the_owners_once_and_shows_on_the_monitor(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """Pins: a capped login queues one `login_cap` notice to the organization's owner (not one
    per capped job) and the monitor's `/login-backoff` shows the cap reached (before, the
    round was only recorded `login_capped`, nobody was told)."""
    sched = scheduler_with(login_cap=1)
    two = countries.take(2)
    for cc in two:
        await countries.live(cc)
    m = await create(api, org, allowedCheckCountryCodes=two, smtpConfig=ALICE)
    for _ in range(2):
        await make_due(pipe_pool, m["publicId"])
        await sched.tick()
    assert len(await capped_rows(pipe_pool, m["publicId"])) >= 2
    async with pipe_pool.acquire() as conn:
        notes = await conn.fetch(
            "SELECT target, subject FROM notification_outbox WHERE kind = 'login_cap'"
            " AND monitor_id = (SELECT id FROM monitors WHERE public_id = $1)",
            uuid.UUID(m["publicId"]),
        )
    assert [n["target"] for n in notes] == [org.emails["owner"]]
    assert "Login cap reached" in notes[0]["subject"]
    r = await api.get(f"{PATHS['smtp']}/{m['publicId']}/login-backoff", headers=org.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["loginCapped"] is True and body["loginCap"] == 1
    assert body["loginCappedSince"] is not None


def _five_a_minute(user: str) -> dict[str, Any]:
    return {
        "hostname": "mx.example.org",
        "allowedCheckCountryCodes": ["DE", "FR", "NL", "GB", "US"],
        "checkInterval": 60,
        "smtpConfig": {"auth": {"user": user, "pass": "pw"}},
    }


async def test_an_update_past_the_ceiling_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, org: Tenant, settings: ControllerSettings
) -> None:
    """Pins: a PATCH that moves a monitor onto a full account (new credentials, or a shorter
    interval of one of its monitors) is a 403 `login_cap` naming the setting, and the monitor
    stays as it was; a write that adds no logins (a rename) still passes."""
    per_monitor = 5 * (2 * 10 + settings.fair_use.trigger_check_burst)
    fits = settings.fair_use.login_cap_per_account // per_monitor
    for _ in range(fits):
        await create(api, org, **_five_a_minute("alice"))
    slow = await create(api, org, **{**_five_a_minute("alice"), "checkInterval": 3600})
    bob = await create(api, org, **_five_a_minute("bob"))
    url = f"{PATHS['smtp']}/{bob['publicId']}"
    r = await api.patch(url, json={"smtpConfig": ALICE}, headers=org.auth())
    error = assert_error(r, 403, code="login_cap")
    assert "alice@mx.example.org" in error["message"]
    assert "LOGIN_CAP_PER_ACCOUNT" in error["message"]
    got = (await api.get(url, headers=org.auth())).json()
    assert got["smtpConfig"]["auth"]["user"] == "bob"

    slow_url = f"{PATHS['smtp']}/{slow['publicId']}"
    r = await api.patch(slow_url, json={"checkInterval": 60}, headers=org.auth())
    assert_error(r, 403, code="login_cap")
    assert (await api.get(slow_url, headers=org.auth())).json()["checkInterval"] == 3600
    r = await api.patch(slow_url, json={"name": "renamed"}, headers=org.auth())
    assert r.status_code == 200, r.text


async def test_an_alertsite_create_past_the_ceiling_is_refused(
    api: httpx.AsyncClient, org: Tenant, settings: ControllerSettings
) -> None:
    """Pins: /api/v3 is held to the same ceiling: an AlertSite create whose login (`login`
    at `hostname`) would take the account past LOGIN_CAP_PER_ACCOUNT is a 403 in AlertSite's
    shape naming the setting, and no monitor is created; another login on that host fits."""
    per_monitor = 5 * (2 * 10 + settings.fair_use.trigger_check_burst)
    for _ in range(settings.fair_use.login_cap_per_account // per_monitor):
        await create(api, org, **_five_a_minute("alice"))
    body = {
        **MINIMAL,
        "hostname": "mx.example.org",
        "interval": 1,
        "login": "alice",
        "password": "pw",
        "locations": [{"id": cc} for cc in ("DE", "FR", "NL", "GB", "US")],
    }
    before = (await api.get(PATHS["smtp"], headers=org.auth())).json()["total"]
    r = await api.post(f"{V3}/monitors/email-smtp", json=body, headers=org.auth())
    message = as_error(r, 403)
    assert "alice@mx.example.org" in message and "LOGIN_CAP_PER_ACCOUNT" in message
    assert (await api.get(PATHS["smtp"], headers=org.auth())).json()["total"] == before
    r = await api.post(
        f"{V3}/monitors/email-smtp", json={**body, "login": "carol"}, headers=org.auth()
    )
    assert r.status_code == 200, r.text
