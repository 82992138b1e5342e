"""`GET /api/fleet`: each fleet check's health per country as the fleet watch last judged it (a
live agent, `saturated` rounds under the threshold, agents with every feature the scheduler
uses), with what the operator does when it fails (controller/fleet/health.py)."""

import msgspec
from litestar import get

from controller.fleet import health_store as db
from controller.fleet.health import FIXES
from controller.operator_health import store as health_db
from controller.web.api import guards
from controller.web.api.operator_health import health_rows, readable
from controller.web.authed_request import AuthedRequest
from controller.web.services import ClockDep, PoolDep


class FleetCheckOut(msgspec.Struct, rename="camel"):
    check: str  # agents, saturation, features
    country: str
    state: str  # healthy, unhealthy; unchecked: not judged now
    reason: str
    since: str  # when it took this state
    what_to_do: str  # "" unless unhealthy


class FleetOut(msgspec.Struct, rename="camel"):
    checks: list[FleetCheckOut]


@get("/api/fleet", tags=["blocklists"], summary="The fleet's health per country")
async def list_fleet(request: AuthedRequest, pool: PoolDep, clock: ClockDep) -> FleetOut:
    guards.requires_admin_reader(request.user)
    async with pool.acquire() as conn:
        stored = await readable(
            conn, request.user, await health_db.healths(conn, db.HEALTH), clock.now()
        )
    return FleetOut(health_rows(stored, what_to_do, FleetCheckOut))


def what_to_do(check: str, state: str, reason: str = "") -> str:
    return FIXES.get(check, "") if state == "unhealthy" else ""
