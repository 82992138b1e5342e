"""Fair use (issue 12 #5): per-organization monitors and check budget, trigger-checks limited per
monitor and per organization and refused on a disabled monitor, lists capped — native API and
/api/v3 alike, over real HTTP, with the limits counted in PostgreSQL so replicas share them."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from controller.monitors import fair_use
from controller.monitors.limits_store import Cost, take_trigger
from controller.monitors.validation import COUNTRIES
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import ManualClock
from shared.timefmt import utcnow
from testkit.serving import http_client, serve_app
from tests.alertsite.helpers import MINIMAL, V3, as_error
from tests.api.helpers import SMTP, assert_error, seed_body
from tests.api.rig import Rig, pipeline_api
from tests.conftest import Tenant, make_tenant

COUNTRY = "WS"  # the rig's live country; no other test uses it
LIMITS: dict[str, Any] = {
    "org_max_monitors": 3,
    "org_max_maintenance_windows": 4,
    "org_max_checks_per_minute": 20,
    "org_max_slot_seconds_per_minute": 600,
    "trigger_check_burst": 2,
    "trigger_check_interval_seconds": 30.0,
    "default_check_countries": 2,
}
FIVE = ["DE", "FR", "NL", "BE", "AT"]


@pytest.fixture(scope="module")
async def rig(
    settings: ControllerSettings, pool: asyncpg.Pool, nats_url: str
) -> AsyncIterator[Rig]:
    """The API with low limits and a pipeline (no agent: triggered jobs just wait)."""
    async with pipeline_api(settings, pool, nats_url, COUNTRY, **LIMITS) as rig:
        yield rig


@pytest.fixture
async def api(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=rig.url, timeout=10) as client:
        yield client


async def post(api: httpx.AsyncClient, org: Tenant, **fields: Any) -> httpx.Response:
    defaults = {"checkInterval": 3600, "timeoutSeconds": 5, "smtpConfig": {}}
    body = seed_body("smtp", org, **{**defaults, **fields})
    return await api.post(SMTP, json=body, headers=org.auth("member"))


async def created(api: httpx.AsyncClient, org: Tenant, **fields: Any) -> dict[str, Any]:
    r = await post(api, org, **fields)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


# monitors per organization ---------------------------------------------------------------------


async def test_an_organization_has_at_most_org_max_monitors(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Disabled ones count too; deleting one makes room; /api/v3 is held to the same count."""
    first = await created(api, tenant, status="disabled")
    await created(api, tenant)
    await created(api, tenant)
    r = await post(api, tenant)
    error = assert_error(r, 403, code="monitor_limit")
    assert "limit of 3 monitors (ORG_MAX_MONITORS)" in error["message"]
    r = await api.post(f"{V3}/monitors/email-smtp", json=MINIMAL, headers=tenant.auth())
    assert "limit of 3 monitors" in as_error(r, 403)
    r = await api.delete(f"{SMTP}/{first['publicId']}", headers=tenant.auth())
    assert r.status_code == 204
    await created(api, tenant)


async def test_concurrent_creates_on_two_replicas_never_pass_the_limit(
    rig: Rig, api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """Twelve creates at once, half through a second API process on the same database: the
    count is taken under the organization's row lock, so exactly three get in."""
    async with (
        serve_app(create_app(rig.settings, pool, rig.pipeline)) as other_url,
        http_client(base_url=other_url, timeout=10) as other,
    ):
        answers = await asyncio.gather(*(post(c, tenant) for c in [api, other] * 6))
    assert sorted(r.status_code for r in answers) == [201] * 3 + [403] * 9
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM monitors WHERE organization_id = $1", tenant.org_id
        )
    assert count == 3


# maintenance windows --------------------------------------------------------------------------


async def test_maintenance_windows_are_limited_per_organization_across_replicas(
    rig: Rig, api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """Every judged round reads its monitor's and customer's windows, so a member creating
    windows without end made the alerter every organization shares read them all, each round
    (100,000 took 1 s of its loop). Ten creates at once on two replicas: four get in, the rest
    are 403 naming the setting; deleting one makes room."""
    window = {
        "customerId": tenant.customer_public_id,
        "weekday": 1,
        "startTime": "02:30",
        "durationMinutes": 5,
    }
    url = "/api/maintenance-windows"
    async with (
        serve_app(create_app(rig.settings, pool, rig.pipeline)) as other_url,
        http_client(base_url=other_url, timeout=10) as other,
    ):
        answers = await asyncio.gather(
            *(c.post(url, json=window, headers=tenant.auth("member")) for c in [api, other] * 5)
        )
    assert sorted(r.status_code for r in answers) == [201] * 4 + [403] * 6
    refused = next(r for r in answers if r.status_code == 403)
    error = assert_error(refused, 403, code="maintenance_window_limit")
    assert "limit of 4 maintenance windows (ORG_MAX_MAINTENANCE_WINDOWS)" in error["message"]
    first = next(r for r in answers if r.status_code == 201).json()
    assert (await api.delete(f"{url}/{first['id']}", headers=tenant.auth())).status_code == 204
    r = await api.post(url, json=window, headers=tenant.auth("member"))
    assert r.status_code == 201, r.text


# the check budget -----------------------------------------------------------------------------


async def test_the_issues_monitor_of_every_country_every_10_s_fits_once_under_the_default(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Default budget (2000 checks a minute): one monitor checked from all 249 countries every
    10 s is 1494 a minute and allowed; a second is refused, naming the budget and the fields."""
    body = seed_body(
        "smtp",
        tenant,
        checkInterval=10,
        timeoutSeconds=5,
        allowedCheckCountryCodes=sorted(COUNTRIES),
        smtpConfig={},
    )
    r = await http.post(SMTP, json=body, headers=tenant.auth("member"))
    assert r.status_code == 201, r.text
    r = await http.post(SMTP, json=body, headers=tenant.auth("member"))
    error = assert_error(
        r, 403, code="check_budget", fields=["allowedCheckCountryCodes", "checkInterval"]
    )
    assert "2,988.0 checks per minute, past its budget of 2,000" in error["message"]
    assert "ORG_MAX_CHECKS_PER_MINUTE" in error["message"]


async def test_changes_that_add_checks_past_the_budget_are_refused(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Budget 20 a minute: 5 countries at 30 s is 10. Raising the countries or the rate past
    20, or enabling a disabled monitor past it, is a 403 naming the field; the monitor stays
    as it was. Lowering, and changes that add no checks, are fine."""
    one = await created(api, tenant, allowedCheckCountryCodes=FIVE, checkInterval=30)
    two = await created(api, tenant, allowedCheckCountryCodes=FIVE, checkInterval=60)
    url = f"{SMTP}/{two['publicId']}"
    r = await api.patch(url, json={"checkInterval": 20}, headers=tenant.auth("member"))
    assert_error(r, 403, code="check_budget", fields=["checkInterval"])
    r = await api.patch(
        url, json={"allowedCheckCountryCodes": sorted(COUNTRIES)[:11]}, headers=tenant.auth()
    )
    assert_error(r, 403, code="check_budget", fields=["allowedCheckCountryCodes"])
    got = (await api.get(url, headers=tenant.auth())).json()
    assert (got["checkInterval"], got["allowedCheckCountryCodes"]) == (60, FIVE)
    # Exactly at the budget is fine (10 + 10).
    r = await api.patch(url, json={"checkInterval": 30}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    # A disabled monitor costs nothing; enabling it past the budget is refused.
    r = await api.patch(url, json={"status": "disabled"}, headers=tenant.auth())
    assert r.status_code == 200
    r = await api.patch(
        f"{SMTP}/{one['publicId']}", json={"checkInterval": 15}, headers=tenant.auth()
    )
    assert r.status_code == 200, r.text  # 20 alone
    r = await api.patch(url, json={"status": "active"}, headers=tenant.auth("readonly"))
    assert_error(r, 403, code="check_budget", fields=["status"])
    r = await api.patch(url, json={"status": "maintenance"}, headers=tenant.auth())
    assert_error(r, 403, code="check_budget", fields=["status"])
    # Null countries count as DEFAULT_CHECK_COUNTRIES (2): 2 a minute more is past it.
    r = await post(api, tenant, checkInterval=60)
    assert_error(r, 403, code="check_budget")


async def test_an_organization_over_a_lowered_budget_may_still_edit_and_shrink(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, rig: Rig
) -> None:
    """Another API (replica) with a budget of 5: the organization's 10 a minute are past it,
    yet a rename or fewer countries is allowed; more is not."""
    monitor = await created(api, tenant, allowedCheckCountryCodes=FIVE, checkInterval=30)
    lowered = rig.settings.replace(org_max_checks_per_minute=5)
    url = f"{SMTP}/{monitor['publicId']}"
    async with (
        serve_app(create_app(lowered, pool, rig.pipeline)) as other_url,
        http_client(base_url=other_url, timeout=10) as other,
    ):
        r = await other.patch(url, json={"name": "renamed"}, headers=tenant.auth())
        assert r.status_code == 200, r.text
        r = await other.patch(
            url, json={"allowedCheckCountryCodes": FIVE[:4]}, headers=tenant.auth()
        )
        assert r.status_code == 200, r.text
        r = await other.patch(url, json={"checkInterval": 20}, headers=tenant.auth())
        assert_error(r, 403, code="check_budget", fields=["checkInterval"])


async def test_alertsite_creates_and_edits_are_held_to_the_budget(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    """/api/v3, in its own words: `locations` and `interval` are named. Budget 20: two
    monitors of 5 countries every minute are 10; one more of 11 countries, or one of the two
    moved to 16 countries, is past it."""
    body = {**MINIMAL, "interval": 1, "locations": [{"id": c} for c in FIVE]}
    for _ in range(2):
        r = await api.post(f"{V3}/monitors/email-smtp", json=body, headers=tenant.auth())
        assert r.status_code == 200, r.text
    url = f"{V3}/monitors/email-smtp/{r.json()['id']}"
    many = sorted(COUNTRIES)
    r = await api.post(
        f"{V3}/monitors/email-smtp", json={**body, "locations": many[:11]}, headers=tenant.auth()
    )
    message = as_error(r, 403)
    assert "past its budget of 20" in message and "(locations, interval)" in message
    r = await api.patch(url, json={"locations": many[:16]}, headers=tenant.auth())
    message = as_error(r, 403)
    assert "ORG_MAX_CHECKS_PER_MINUTE" in message and "(locations)" in message
    r = await api.patch(url, json={"locations": many[:15]}, headers=tenant.auth())
    assert r.status_code == 200, r.text


# the slot budget ------------------------------------------------------------------------------


def _lim(checks: int = 20, slots: int = 600) -> fair_use.Limits:
    return fair_use.Limits(3, 4, checks, slots, 2, 2, 30.0)


@pytest.mark.parametrize(
    ("before", "after", "total", "refused"),
    [
        # nothing added: allowed however far past both budgets (a lowered budget)
        (Cost(5, 300), Cost(5, 300), Cost(99, 9999), []),
        (Cost(5, 300), Cost(4, 100), Cost(99, 9999), []),
        # added, within both
        (Cost(0, 0), Cost(5, 300), Cost(20, 600), []),
        # checks added past the check budget
        (Cost(0, 0), Cost(5, 25), Cost(21, 100), ["checks"]),
        # a longer timeout adds slot-seconds only
        (Cost(5, 300), Cost(5, 305), Cost(10, 605), ["slot_seconds"]),
        (Cost(5, 300), Cost(5, 305), Cost(21, 605), ["slot_seconds"]),
        # fewer checks with a longer timeout: past the slot budget only counts
        (Cost(5, 300), Cost(4, 400), Cost(21, 700), ["slot_seconds"]),
        (Cost(0, 0), Cost(5, 1500), Cost(21, 1500), ["checks", "slot_seconds"]),
    ],
)
def test_which_budgets_a_write_breaks(
    before: Cost, after: Cost, total: Cost, refused: list[str]
) -> None:
    """The rule: a budget refuses a write that grew the monitor's cost on it while the
    organization is past it; the slot budget is new (the check budget alone let long
    timeouts hold agents' slots for little of it)."""
    assert fair_use.refused_budgets(_lim(), before, after, total) == refused


@pytest.mark.parametrize(
    ("countries", "timeout_s", "cost_s"),
    [
        (5, 5, 15.0),  # 5 checks of a 20-a-minute budget: the check share is more
        (5, 30, 15.0),  # 150 of 600 slot-seconds: a quarter either way
        (5, 300, 150.0),  # 1,500 slot-seconds: two and a half minutes of the slot budget
        (1, 300, 30.0),
    ],
)
def test_a_trigger_takes_the_larger_share_of_the_two_budgets(
    countries: int, timeout_s: float, cost_s: float
) -> None:
    """Triggers of long checks drew only on the check allowance, so an organization could
    run far more slot-seconds by triggering than its monitors may hold."""
    assert fair_use.trigger_cost_s(_lim(), countries, timeout_s) == pytest.approx(cost_s)


async def test_timeouts_that_hold_slots_past_the_slot_budget_are_refused(
    api: httpx.AsyncClient, tenant: Tenant, rig: Rig, pool: asyncpg.Pool
) -> None:
    """Slot budget 600 (the check budget is 20): 10 countries every 2 minutes with a 60 s
    timeout are 5 checks and 300 slot-seconds a minute. Two such monitors fit, one through
    /api/v3; a longer timeout, or one more monitor however cheap in checks, is a 403 naming
    the figure, the setting and the fields (AlertSite's own on /api/v3); the monitor stays as
    it was. Shorter timeouts are fine, and over a lowered budget a rename and a shorter
    timeout still are."""
    ten = [{"id": c} for c in sorted(COUNTRIES)[:10]]
    v3 = {**MINIMAL, "interval": 2, "timeout": 60, "locations": ten}
    r = await api.post(f"{V3}/monitors/email-smtp", json=v3, headers=tenant.auth())
    assert r.status_code == 200, r.text
    one = f"{V3}/monitors/email-smtp/{r.json()['id']}"
    two = await created(
        api,
        tenant,
        allowedCheckCountryCodes=sorted(COUNTRIES)[:10],
        checkInterval=120,
        timeoutSeconds=60,
    )
    url = f"{SMTP}/{two['publicId']}"
    r = await api.patch(url, json={"timeoutSeconds": 61}, headers=tenant.auth("member"))
    error = assert_error(r, 403, code="slot_budget", fields=["timeoutSeconds"])
    assert "605.0 slot-seconds per minute, past its budget of 600" in error["message"]
    assert "ORG_MAX_SLOT_SECONDS_PER_MINUTE" in error["message"]
    assert (await api.get(url, headers=tenant.auth())).json()["timeoutSeconds"] == 60
    r = await post(api, tenant, allowedCheckCountryCodes=FIVE, checkInterval=3600)
    assert_error(
        r,
        403,
        code="slot_budget",
        fields=["allowedCheckCountryCodes", "checkInterval", "timeoutSeconds"],
    )
    r = await api.post(
        f"{V3}/monitors/email-smtp",
        json={**v3, "interval": 60, "timeout": 5},
        headers=tenant.auth(),
    )
    message = as_error(r, 403)
    assert "ORG_MAX_SLOT_SECONDS_PER_MINUTE" in message
    assert "(locations, interval, timeout)" in message
    r = await api.patch(one, json={"timeout": 61}, headers=tenant.auth())
    message = as_error(r, 403)
    assert "ORG_MAX_SLOT_SECONDS_PER_MINUTE" in message and "(timeout)" in message
    r = await api.patch(url, json={"timeoutSeconds": 30}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    r = await api.patch(one, json={"timeout": 90}, headers=tenant.auth())
    assert r.status_code == 200, r.text  # 450 + 150
    # a disabled monitor costs nothing; enabling it past the budget is refused
    r = await api.patch(url, json={"status": "disabled"}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    r = await api.patch(one, json={"timeout": 120}, headers=tenant.auth())
    assert r.status_code == 200, r.text  # 600 alone
    r = await api.patch(url, json={"status": "active"}, headers=tenant.auth())
    assert_error(r, 403, code="slot_budget", fields=["status"])
    lowered = rig.settings.replace(org_max_slot_seconds_per_minute=100)
    async with (
        serve_app(create_app(lowered, pool, rig.pipeline)) as other_url,
        http_client(base_url=other_url, timeout=10) as other,
    ):
        r = await other.patch(one, json={"name": "renamed"}, headers=tenant.auth())
        assert r.status_code == 200, r.text
        r = await other.patch(one, json={"timeout": 90}, headers=tenant.auth())
        assert r.status_code == 200, r.text
        r = await other.patch(one, json={"timeout": 91}, headers=tenant.auth())
        assert "ORG_MAX_SLOT_SECONDS_PER_MINUTE" in as_error(r, 403)


async def _insert_active(
    pool: asyncpg.Pool, org: Tenant, count: int, interval: int, timeout_s: int
) -> None:
    """`count` active monitors without a country list (checked from DEFAULT_CHECK_COUNTRIES)."""
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, status,"
            " check_interval, timeout_seconds)"
            " SELECT $1, $2, 'smtp', 'm' || n, 'mx.example.com', 'active', $4, $5"
            " FROM generate_series(1, $3) AS n",
            org.org_id,
            org.customer_id,
            count,
            interval,
            timeout_s,
        )


async def test_the_default_slot_budget_fits_an_honest_organization_not_1000_held_timeouts(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """Default budgets (issue 22): an organization at its whole check budget with every default
    (1,000 monitors, two countries, 60 s, 30 s timeouts: 2,000 checks and 60,000 slot-seconds a
    minute) fits; 1,000 monitors at 300 s / 300 s, 20 % of the check budget, held twice as many
    slots and are refused."""
    honest = await make_tenant(pool)
    await _insert_active(pool, honest, 999, 60, 30)
    r = await http.post(
        SMTP,
        json=seed_body("smtp", honest, checkInterval=60, timeoutSeconds=30, smtpConfig={}),
        headers=honest.auth("member"),
    )
    assert r.status_code == 201, r.text
    await _insert_active(pool, tenant, 999, 300, 300)
    r = await http.post(
        SMTP,
        json=seed_body("smtp", tenant, checkInterval=300, timeoutSeconds=300, smtpConfig={}),
        headers=tenant.auth("member"),
    )
    error = assert_error(r, 403, code="slot_budget")
    assert "120,000.0 slot-seconds per minute, past its budget of 60,000" in error["message"]


# trigger-check --------------------------------------------------------------------------------


async def trigger(api: httpx.AsyncClient, org: Tenant, monitor: dict[str, Any]) -> httpx.Response:
    url = f"{SMTP}/{monitor['publicId']}/trigger-check"
    return await api.post(url, headers=org.auth("member"))


async def test_trigger_check_of_a_disabled_monitor_is_409(
    api: httpx.AsyncClient, tenant: Tenant, rig: Rig
) -> None:
    """One request used to queue a round from every listed country of a disabled monitor."""
    monitor = await created(api, tenant, status="disabled", allowedCheckCountryCodes=[COUNTRY])
    r = await trigger(api, tenant, monitor)
    error = assert_error(r, 409, code="monitor_disabled", fields=["status"])
    assert "disabled" in error["message"]
    r = await api.patch(
        f"{SMTP}/{monitor['publicId']}", json={"status": "maintenance"}, headers=tenant.auth()
    )
    assert (await trigger(api, tenant, monitor)).status_code == 202


async def test_trigger_check_is_rate_limited_per_monitor_across_replicas(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, rig: Rig
) -> None:
    """Burst 2, then one per 30 s: the third trigger, sent to another API process, is a 429
    with `Retry-After` (about 30 s) naming the settings; another monitor is not held back."""
    monitor = await created(api, tenant, allowedCheckCountryCodes=[COUNTRY])
    async with (
        serve_app(create_app(rig.settings, pool, rig.pipeline)) as other_url,
        http_client(base_url=other_url, timeout=10) as other,
    ):
        assert (await trigger(api, tenant, monitor)).status_code == 202
        assert (await trigger(other, tenant, monitor)).status_code == 202
        r = await trigger(other, tenant, monitor)
    error = assert_error(r, 429, code="trigger_limit")
    # 30 s less the time since the first trigger: a wait for one trigger, not a whole burst's
    assert 0 < int(r.headers["Retry-After"]) <= 30
    assert "TRIGGER_CHECK_BURST" in error["message"]
    assert f"try again in {r.headers['Retry-After']} s" in error["message"]
    second = await created(api, tenant, allowedCheckCountryCodes=[COUNTRY])
    assert (await trigger(api, tenant, second)).status_code == 202


async def test_trigger_checks_refill_on_the_clock_the_api_is_given(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, rig: Rig
) -> None:
    """The API's trigger-check takes the monitor's allowance at the clock the app is composed
    with (its pipeline's, issue 79), here a manual one starting at the wall's instant (the
    tenant's tokens live by it too): burst 2, then one when the clock has moved 30 s, however
    little the wall has."""
    monitor = await created(api, tenant, allowedCheckCountryCodes=[COUNTRY])
    clock = ManualClock(utcnow())
    pipeline = dataclasses.replace(rig.pipeline, clock=clock)
    async with (
        serve_app(create_app(rig.settings, pool, pipeline)) as url,
        http_client(base_url=url, timeout=10) as manual,
    ):
        assert (await trigger(manual, tenant, monitor)).status_code == 202
        assert (await trigger(manual, tenant, monitor)).status_code == 202
        assert_error(await trigger(manual, tenant, monitor), 429, code="trigger_limit")
        clock.advance(29)
        r = await trigger(manual, tenant, monitor)
        assert_error(r, 429, code="trigger_limit")
        assert r.headers["Retry-After"] == "1"
        clock.advance(1)  # 30 s on the clock given
        assert (await trigger(manual, tenant, monitor)).status_code == 202


async def test_triggered_checks_draw_on_the_organizations_budget(
    api: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """Budget 20 checks a minute for triggers too: rounds of 5 countries, two per monitor
    (its burst), fit four times; the fifth, on a fresh monitor, is a 429 naming the budget, and
    takes nothing from that monitor's own allowance."""
    monitors = [
        await created(api, tenant, allowedCheckCountryCodes=FIVE, checkInterval=86_400)
        for _ in range(3)
    ]
    for monitor in monitors[:2]:
        assert (await trigger(api, tenant, monitor)).status_code == 202
        assert (await trigger(api, tenant, monitor)).status_code == 202
    r = await trigger(api, tenant, monitors[2])
    error = assert_error(r, 429, code="trigger_limit")
    assert "ORG_MAX_CHECKS_PER_MINUTE" in error["message"]
    # a round of 5 checks at 3 s each, less the time since the first trigger
    assert 0 < int(r.headers["Retry-After"]) <= 15
    async with pool.acquire() as conn:
        tat = await conn.fetchval(
            "SELECT trigger_tat FROM monitors WHERE public_id = $1::uuid",
            monitors[2]["publicId"],
        )
    assert tat is None


async def test_triggered_long_checks_draw_on_the_slot_budget(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Slot budget 600 a minute: a round of 5 countries with a 300 s timeout is 1,500
    slot-seconds, so after one such trigger the organization's allowance is spent and the
    next, on another monitor, is a 429 naming the slot budget (it used to cost 5 checks of
    20, and four went through)."""
    monitors = [
        await created(
            api, tenant, allowedCheckCountryCodes=FIVE, checkInterval=86_400, timeoutSeconds=300
        )
        for _ in range(2)
    ]
    assert (await trigger(api, tenant, monitors[0])).status_code == 202
    r = await trigger(api, tenant, monitors[1])
    error = assert_error(r, 429, code="trigger_limit")
    assert "ORG_MAX_SLOT_SECONDS_PER_MINUTE" in error["message"]


# lists ----------------------------------------------------------------------------------------


async def test_alertsite_monitor_list_has_a_default_and_a_maximum_limit(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """GET /api/v3/monitors without `limit` answered every monitor; now 100, at most 1000."""
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, status,"
            " check_interval, timeout_seconds)"
            " SELECT $1, $2, 'smtp', 'm' || n, 'mx.example.com', 'disabled', 60, 30"
            " FROM generate_series(1, 101) AS n",
            tenant.org_id,
            tenant.customer_id,
        )
    r = await http.get(f"{V3}/monitors", headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"limit": 100, "offset": None, "total": 101}
    assert len(r.json()["results"]) == 100
    r = await http.get(f"{V3}/monitors", params={"limit": 1000}, headers=tenant.auth())
    assert len(r.json()["results"]) == 101
    r = await http.get(f"{V3}/monitors", params={"limit": 1001}, headers=tenant.auth())
    assert "limit" in as_error(r, 400)
    r = await http.get(SMTP, params={"perPage": 201}, headers=tenant.auth())
    assert_error(r, 400, fields=["perPage"])


async def test_a_take_is_judged_at_the_instant_given_not_when_its_transaction_began(
    pool: asyncpg.Pool,
) -> None:
    """Two takes of a two-take allowance, each at the instant its caller gives: the one whose
    transaction began first but reaches the row second is still within the allowance (it was
    refused while the take's time was its transaction's start), and a third in the same
    second is not."""
    org = await make_tenant(pool)
    clock = ManualClock(datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC))
    async with pool.acquire() as early, pool.acquire() as late:
        async with early.transaction():
            await early.execute("SELECT now()")  # this transaction's time is now fixed
            await asyncio.sleep(0.3)
            clock.advance(0.3)
            async with late.transaction():
                taken = await take_trigger(late, "organizations", org.org_id, 1.0, 2.0, clock.now())
                assert taken == 0.0
            taken = await take_trigger(early, "organizations", org.org_id, 1.0, 2.0, clock.now())
            assert taken == 0.0
        async with late.transaction():
            wait = await take_trigger(late, "organizations", org.org_id, 1.0, 2.0, clock.now())
            assert wait == 1.0
