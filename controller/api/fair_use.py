"""Fair use: one organization's monitors, checks per minute and trigger-checks are bounded.

- at most `ORG_MAX_MONITORS` monitors (403 on the create past it), and at most
  `ORG_MAX_MAINTENANCE_WINDOWS` maintenance windows (every judged round reads the windows of its
  monitor and customer: without a bound, one member could make the alerter, which every
  organization shares, read millions of rows a round);
- a check budget, `ORG_MAX_CHECKS_PER_MINUTE`: countries x rounds per minute over the checked
  monitors. A create or change that raises it past the budget is a 403: waiting does not help,
  the request has to change. A change that does not add checks is always allowed, so an
  organization over a budget lowered later can still edit and shrink;
- logins: the logins per 10 minutes the organization's monitors of one account (user@host)
  need together (controller.login_cap) stay within `LOGIN_CAP_PER_ACCOUNT`; a write that takes
  them past it is a 403 naming the figure, the account and the setting;
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

from controller import login_cap
from controller.api.errors import ApiError
from controller.db import account_logins, limits
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
    login_ceiling: int = 1000

    @classmethod
    def of(cls, settings: ControllerSettings) -> "Limits":
        return cls(
            settings.org_max_monitors,
            settings.org_max_maintenance_windows,
            settings.org_max_checks_per_minute,
            settings.default_check_countries,
            settings.trigger_check_burst,
            settings.trigger_check_interval_seconds,
            settings.login_cap_per_account,
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


@dataclass(frozen=True)
class Usage:
    """What one monitor adds to its organization's budgets before a write."""

    checks: float = 0.0
    account: str | None = None
    logins: int = 0  # its account's need over the organization's monitors


NOTHING = Usage()


async def checks_of(conn: Conn, lim: Limits, organization_id: int, monitor_id: int) -> Usage:
    """One monitor's checks per minute (0 when disabled), and its account's login need."""
    checks = await limits.checks_per_minute(
        conn, organization_id, lim.default_countries, monitor_id
    )
    need = await account_logins.need(conn, [monitor_id], lim.default_countries, lim.trigger_burst)
    _, account, logins = need.get(monitor_id, (organization_id, None, 0))
    return Usage(checks, account, logins)


async def admit_checks(
    conn: Conn,
    lim: Limits,
    organization_id: int,
    monitor_id: int,
    before: Usage,
    fields: Iterable[str],
) -> None:
    """After the monitor was written, in the same transaction: a 403 naming `fields` (the
    request's fields that add checks) when it added checks and the organization is now past
    its budget, or when its account now needs more logins than the ceiling; raising rolls the
    write back."""
    added = await checks_of(conn, lim, organization_id, monitor_id)
    await _admit_logins(lim, added, before)
    if added.checks <= before.checks:
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


async def _admit_logins(lim: Limits, after: Usage, before: Usage) -> None:
    """The account's logins per window stay within the ceiling, unless the write does not
    add any (same account, no more need)."""
    if after.account is None:
        return
    need_before = before.logins if before.account == after.account else 0
    if login_cap.admissible(after.logins, need_before, lim.login_ceiling):
        return
    raise ApiError(
        403,
        f"Your organization's monitors of the account {after.account} would log in to it up to"
        f" {after.logins:,} times per 10 minutes (countries x rounds x logins a check, each round"
        " confirmed once, plus trigger-checks), past the ceiling of"
        f" {lim.login_ceiling:,} ({login_cap.SETTING}); check it from fewer countries or less"
        " often, or disable other monitors of that account",
        code="login_cap",
        fields=["checkInterval", "allowedCheckCountryCodes"],
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
