"""`GET /api/oracles`: each oracle's health per country as the oracle watch last judged it (the
agents' resolver by its canaries, each list by its test entries), with what the operator sets
when it is not believed (controller/oracles/rules.py)."""

import msgspec
from litestar import get

from controller.operator_health import store as health_db
from controller.oracles import store as db
from controller.oracles.rules import fix
from controller.web.api import guards
from controller.web.api.operator_health import health_rows, readable
from controller.web.authed_request import AuthedRequest
from controller.web.services import ClockDep, PoolDep


class OracleOut(msgspec.Struct, rename="camel"):
    oracle: str  # `dns` (the agents' resolver for mail and reverse DNS) or a list's zone
    country: str
    state: str  # healthy, unhealthy, unknown; unchecked: no round asked it lately
    reason: str
    since: str  # when it took this state
    what_to_set: str  # "" while healthy or unchecked


class OraclesOut(msgspec.Struct, rename="camel"):
    oracles: list[OracleOut]


@get("/api/oracles", tags=["blocklists"], summary="The resolvers' and blocklists' health")
async def list_oracles(request: AuthedRequest, pool: PoolDep, clock: ClockDep) -> OraclesOut:
    guards.requires_admin_reader(request.user)
    async with pool.acquire() as conn:
        stored = await readable(
            conn, request.user, await health_db.healths(conn, db.HEALTH), clock.now()
        )
    return OraclesOut(health_rows(stored, what_to_set, OracleOut))


def what_to_set(oracle: str, state: str, reason: str = "") -> str:
    return fix(oracle, reason) if state in ("unhealthy", "unknown") else ""
