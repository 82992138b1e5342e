"""Fair use: one organization's monitors, checks per minute and trigger-checks are bounded.

- at most `ORG_MAX_MONITORS` monitors (403 on the create past it), and at most
  `ORG_MAX_MAINTENANCE_WINDOWS` maintenance windows (every judged round reads the windows of its
  monitor and customer: without a bound, one member could make the alerter, which every
  organization shares, read millions of rows a round);
- a check budget, `ORG_MAX_CHECKS_PER_MINUTE`: countries x rounds per minute over the checked
  monitors. A create or change that raises it past the budget is a 403: waiting does not help,
  the request has to change. A change that does not add checks is always allowed, so an
  organization over a budget lowered later can still edit and shrink;
- trigger-checks: `TRIGGER_CHECK_BURST` back to back per monitor, then one per
  `TRIGGER_CHECK_INTERVAL_SECONDS`; and the checks they run draw on an allowance of the
  budget's size per minute for the whole organization, else many rarely scheduled monitors of
  many countries could each be triggered for a round a minute. Past either: 429 with
  `Retry-After`, since waiting does help.

Row-counting limits run in the writing transaction under the organization's row lock
(`controller.db.limits`), so concurrent requests on several replicas cannot overshoot.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controller.api.errors import ApiError
from controller.db import limits
from controller.db.pool import Conn
from shared.settings import ControllerSettings


@dataclass(frozen=True)
class Limits:
    max_monitors: int
    max_windows: int
    checks_per_minute: int
    default_countries: int
    trigger_burst: int
    trigger_interval_s: float

    @classmethod
    def of(cls, settings: ControllerSettings) -> "Limits":
        return cls(
            settings.org_max_monitors,
            settings.org_max_maintenance_windows,
            settings.org_max_checks_per_minute,
            settings.default_check_countries,
            settings.trigger_check_burst,
            settings.trigger_check_interval_seconds,
        )


async def admit_new_monitor(conn: Conn, lim: Limits, organization_id: int) -> None:
    """Before an insert, in its transaction: room for one more monitor (locks the org row)."""
    await limits.lock_organization(conn, organization_id)
    if await limits.monitor_count(conn, organization_id) >= lim.max_monitors:
        raise ApiError(
            403,
            f"Your organization has reached its limit of {lim.max_monitors} monitors"
            " (ORG_MAX_MONITORS): delete one before creating another",
            code="monitor_limit",
        )


async def admit_new_window(conn: Conn, lim: Limits, organization_id: int) -> None:
    """Before an insert, in its transaction: room for one more maintenance window (locks the
    org row)."""
    await limits.lock_organization(conn, organization_id)
    if await limits.window_count(conn, organization_id) >= lim.max_windows:
        raise ApiError(
            403,
            f"Your organization has reached its limit of {lim.max_windows} maintenance windows"
            " (ORG_MAX_MAINTENANCE_WINDOWS): delete ones that are over before creating another",
            code="maintenance_window_limit",
        )


async def checks_of(conn: Conn, lim: Limits, organization_id: int, monitor_id: int) -> float:
    """One monitor's checks per minute (0 when disabled)."""
    return await limits.checks_per_minute(conn, organization_id, lim.default_countries, monitor_id)


async def admit_checks(
    conn: Conn,
    lim: Limits,
    organization_id: int,
    monitor_id: int,
    before: float,
    fields: Iterable[str],
) -> None:
    """After the monitor was written, in the same transaction: a 403 naming `fields` (the
    request's fields that add checks) when it added checks and the organization is now past
    its budget; raising rolls the write back."""
    added = await checks_of(conn, lim, organization_id, monitor_id)
    if added <= before:
        return
    await limits.lock_organization(conn, organization_id)
    total = await limits.checks_per_minute(conn, organization_id, lim.default_countries)
    if total <= lim.checks_per_minute:
        return
    names = list(fields)
    raise ApiError(
        403,
        f"This would take your organization to {total:,.1f} checks per minute, past its budget"
        f" of {lim.checks_per_minute:,} (ORG_MAX_CHECKS_PER_MINUTE: countries x rounds per"
        " minute over its active and maintenance monitors); check this monitor from fewer"
        f" countries or less often ({', '.join(names)}), or disable others",
        code="check_budget",
        fields=names,
    )


def budget_fields(changes: dict[str, Any], names: dict[str, str]) -> list[str]:
    """The API's names (`names`: column → field) of the budget columns in `changes`."""
    return [names[c] for c in names if c in changes]


async def take_trigger(
    conn: Conn, lim: Limits, organization_id: int, monitor_id: int, countries: int
) -> None:
    """In a transaction: take one trigger-check of the monitor and `countries` checks from the
    organization's allowance, or neither (the 429 rolls both back)."""
    wait = await limits.take_trigger(
        conn,
        "monitors",
        monitor_id,
        lim.trigger_interval_s,
        lim.trigger_interval_s * lim.trigger_burst,
    )
    what = (
        f"this monitor's trigger-checks ({lim.trigger_burst} back to back, then one every"
        f" {lim.trigger_interval_s:g} s: TRIGGER_CHECK_BURST, TRIGGER_CHECK_INTERVAL_SECONDS)"
    )
    if not wait:
        per_check = 60.0 / lim.checks_per_minute
        wait = await limits.take_trigger(
            conn, "organizations", organization_id, countries * per_check, 60.0
        )
        what = (
            f"your organization's triggered checks ({lim.checks_per_minute:,} per minute:"
            " ORG_MAX_CHECKS_PER_MINUTE)"
        )
    if wait:
        retry = max(1, math.ceil(wait))
        raise ApiError(
            429,
            f"Too many trigger-checks: {what} are used up; try again in {retry} s",
            code="trigger_limit",
            headers={"Retry-After": str(retry)},
        )
