"""The monitor a `…-monitors/{id}/…` endpoint is about, as the caller may see it: another
organization's monitor is a 404, as an unknown one is."""

import asyncpg

from controller.monitors import store as monitors
from controller.monitors.kinds import Kind
from controller.monitors.store import Monitor
from controller.web.api import guards
from controller.web.api.errors import not_found
from controller.web.api.monitor_rules import public_id
from controller.web.authed_request import AuthedRequest


async def visible_monitor(
    kind: Kind, request: AuthedRequest, raw_id: str, pool: asyncpg.Pool
) -> Monitor:
    """The monitor of `kind` with the public id `raw_id` (a 400 unless a UUID), or a 404."""
    ident = public_id(kind, raw_id)
    async with pool.acquire() as conn:
        found = await monitors.get(conn, ident, kind.types, guards.read_scope(request.user))
    if found is None:
        raise not_found()
    return found
