"""A check round now, on request: the API's `trigger-check` and the console's "Check now" both
go through here.

In order: readonly users and global supporters may not (403); a disabled monitor is not checked
(409 naming `status`); the controller must run the check pipeline (503); the organization's
trigger allowance pays for it (`fair_use.take_trigger`: 429); then the scheduler plans and sends
the round (503 while it does not yet know the live agents; 404 when the monitor went meanwhile).
Looking the monitor up (404 for another organization's) is the caller's, before this.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import structlog

from controller.access.accounts_store import Principal
from controller.fleet.live import AgentsUnknownError
from controller.monitors import fair_use
from controller.monitors.errors import Conflict, NotAllowed, NotFound, Unavailable
from controller.monitors.store import Monitor
from controller.scheduling import rules as schedule
from controller.scheduling.plan import PlannedRound
from shared.clock import Clock

log = structlog.get_logger(__name__)

# The scheduler's round now for a monitor id (None: the monitor is gone).
RoundNow = Callable[[int], Awaitable[PlannedRound | None]]


@dataclass(frozen=True)
class MonitorTrigger:
    pool: asyncpg.Pool
    limits: fair_use.Limits
    round_now: RoundNow | None  # None: the check pipeline does not run in this process
    clock: Clock  # the instant the allowance is taken at

    async def run(self, principal: Principal, monitor: Monitor) -> PlannedRound:
        """Plan and send a round of `monitor` now, on behalf of `principal`."""
        if principal.is_global_supporter or principal.role == "readonly":
            raise NotAllowed(
                "Forbidden: readonly users and global supporters may not trigger checks"
            )
        if monitor.status == "disabled":
            raise Conflict(
                "The monitor is disabled, so it is not checked: set its status to active or"
                " maintenance to run checks",
                code="monitor_disabled",
                fields=["status"],
            )
        if self.round_now is None:
            raise Unavailable("The check pipeline is not running here")
        lim = self.limits
        countries = schedule.planned_countries(monitor.allowed_country_codes, lim.default_countries)
        async with self.pool.acquire() as conn, conn.transaction():
            await fair_use.take_trigger(
                conn,
                lim,
                monitor.organization_id,
                monitor.id,
                countries,
                monitor.timeout_seconds,
                self.clock.now(),
            )
        try:
            plan = await self.round_now(monitor.id)
        except AgentsUnknownError as exc:
            raise Unavailable(f"Try again shortly: {exc}") from None
        if plan is None:
            raise NotFound("Not found")
        log.info("check triggered", monitor=str(monitor.public_id), user=principal.email)
        return plan
