"""Who reads the deployment's own health (`GET /api/fleet`, `GET /api/oracles`: its agents,
resolvers and lists per country, with what the operator sets): owners and admins of any
organization (the people its `fleet` notices go to) and global supporters; never members,
readonly users or anonymous callers. The facts are no organization's: an owner of another
organization reads the same rows."""

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from controller.fleet import health_store as fleet_db
from controller.operator_health import store as health_db
from controller.operator_health.rules import Stored
from controller.oracles import store as oracles_db
from tests.api.helpers import assert_error
from tests.conftest import Tenant, make_tenant

COUNTRY = "XR"  # no other test's health rows use it
SINCE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PATHS = {"/api/fleet": "checks", "/api/oracles": "oracles"}


@pytest.fixture
async def orgs(pool: asyncpg.Pool) -> tuple[Tenant, Tenant]:
    """Two organizations (the first with a global supporter) and one unhealthy row each of the
    fleet's and the oracles' health."""
    async with pool.acquire() as conn:
        bad = Stored("unhealthy", "seeded", SINCE, "unhealthy")
        await health_db.save(conn, fleet_db.HEALTH, "agents", COUNTRY, bad)
        await health_db.save(conn, oracles_db.HEALTH, "dns", COUNTRY, bad)
    return await make_tenant(pool, supporter=True), await make_tenant(pool)


def _seeded(body: dict[str, list[dict[str, str]]], key: str) -> list[dict[str, str]]:
    return [row for row in body[key] if row["country"] == COUNTRY]


@pytest.mark.parametrize("path", PATHS)
async def test_owners_admins_and_supporters_of_any_organization_read_it(
    http: httpx.AsyncClient, orgs: tuple[Tenant, Tenant], path: str
) -> None:
    mine, other = orgs
    seen = []
    for org, role in [(mine, "owner"), (mine, "admin"), (mine, "supporter"), (other, "owner")]:
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
@pytest.mark.parametrize("role", ["member", "readonly"])
async def test_members_and_readonly_users_are_refused(
    http: httpx.AsyncClient, orgs: tuple[Tenant, Tenant], path: str, role: str
) -> None:
    for org in orgs:
        assert_error(await http.get(path, headers=org.auth(role)), 403, code="forbidden")


@pytest.mark.parametrize("path", PATHS)
async def test_anonymous_callers_are_refused(http: httpx.AsyncClient, path: str) -> None:
    assert (await http.get(path)).status_code == 401
