"""`GET /api/oracles`: each oracle's health per country as the oracle watch last judged it (the
agents' resolver by its canaries, each list by its test entries), with what the operator sets
when it is not believed (controller/oracles/rules.py)."""

import asyncpg
import msgspec
from litestar import get

from controller.oracles import store as db
from controller.oracles.rules import fix
from controller.web.authed_request import AuthedRequest
from shared.timefmt import iso_ms


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
async def list_oracles(request: AuthedRequest) -> OraclesOut:
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        stored = await db.healths(conn)
    return OraclesOut(
        [
            OracleOut(
                oracle,
                country,
                s.state,
                s.reason,
                iso_ms(s.since),
                fix(oracle) if s.state in ("unhealthy", "unknown") else "",
            )
            for (oracle, country), s in sorted(stored.items())
        ]
    )
