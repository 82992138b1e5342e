"""Who reads the deployment's own health (`GET /api/fleet`, `GET /api/oracles`: its agents,
resolvers and lists per country, with what the operator sets): the deployment's operators and
global supporters every country; owners and admins of an organization only the countries its
monitors list (the ones its `fleet` notices are about), so no tenant learns which countries
another lists; never members, readonly users or anonymous callers."""

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from controller.fleet import health_store as fleet_db
from controller.operator_health import store as health_db
from controller.operator_health.rules import Stored
from controller.oracles import store as oracles_db
from tests.api.helpers import assert_error, create
from tests.conftest import Tenant, make_tenant

COUNTRY = "NR"  # no other test uses it
SINCE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PATHS = {"/api/fleet": "checks", "/api/oracles": "oracles"}


@pytest.fixture
async def orgs(http: httpx.AsyncClient, pool: asyncpg.Pool) -> tuple[Tenant, Tenant]:
    """Two organizations (the first with a global supporter, the second with a monitor that
    lists NR) and one unhealthy row each of the fleet's and the oracles' health in NR."""
    async with pool.acquire() as conn:
        bad = Stored("unhealthy", "seeded", SINCE, "unhealthy")
        await health_db.save(conn, fleet_db.HEALTH, "agents", COUNTRY, bad)
        await health_db.save(conn, oracles_db.HEALTH, "dns", COUNTRY, bad)
    mine, lister = await make_tenant(pool, supporter=True), await make_tenant(pool)
    await create(http, lister, allowedCheckCountryCodes=[COUNTRY])
    return mine, lister


def _seeded(body: dict[str, list[dict[str, str]]], key: str) -> list[dict[str, str]]:
    return [row for row in body[key] if row["country"] == COUNTRY]


@pytest.mark.parametrize("path", PATHS)
async def test_operators_supporters_and_the_listing_organizations_owners_read_it(
    http: httpx.AsyncClient, orgs: tuple[Tenant, Tenant], path: str
) -> None:
    mine, lister = orgs
    seen = []
    for org, role in [
        (mine, "operator"),
        (mine, "supporter"),
        (lister, "owner"),
        (lister, "admin"),
    ]:
        r = await http.get(path, headers=org.auth(role))
        assert r.status_code == 200, (role, r.text)
        seen.append(_seeded(r.json(), PATHS[path]))
    assert seen[0] and all(rows == seen[0] for rows in seen)
    (row,) = seen[0]
    assert (row["state"], row["reason"], row["since"]) == (
        "unhealthy",
        "seeded",
        "2026-01-02T03:04:05.000Z",
    )


@pytest.mark.parametrize("path", PATHS)
async def test_another_organizations_admin_does_not_see_the_countries_it_lists(
    http: httpx.AsyncClient, orgs: tuple[Tenant, Tenant], path: str
) -> None:
    """NR is only the other organization's (no agent serves it): an owner or admin of this one
    reads nothing of it."""
    mine, _ = orgs
    for role in ("owner", "admin"):
        r = await http.get(path, headers=mine.auth(role))
        assert r.status_code == 200, (role, r.text)
        assert _seeded(r.json(), PATHS[path]) == [], role


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("role", ["member", "readonly"])
async def test_members_and_readonly_users_are_refused(
    http: httpx.AsyncClient, orgs: tuple[Tenant, Tenant], path: str, role: str
) -> None:
    for org in orgs:
        assert_error(await http.get(path, headers=org.auth(role)), 403, code="forbidden")


@pytest.mark.parametrize("path", PATHS)
async def test_anonymous_callers_are_refused(http: httpx.AsyncClient, path: str) -> None:
    assert (await http.get(path)).status_code == 401
