"""Fair use: one organization's monitors, checks per minute and trigger-checks are bounded.

- at most `ORG_MAX_MONITORS` monitors (403 on the create past it), and at most
  `ORG_MAX_MAINTENANCE_WINDOWS` maintenance windows (every judged round reads the windows of its
  monitor and customer: without a bound, one member could make the alerter, which every
  organization shares, read millions of rows a round);
- a check budget, `ORG_MAX_CHECKS_PER_MINUTE`: countries x rounds per minute over the checked
  monitors. A create or change that raises it past the budget is a 403: waiting does not help,
  the request has to change. A change that does not add checks is always allowed, so an
  organization over a budget lowered later can still edit and shrink;
- a slot budget, `ORG_MAX_SLOT_SECONDS_PER_MINUTE`: the same checks, each weighted by its
  `timeoutSeconds`, the longest it may hold an agent's slot. The check budget alone let
  monitors at a server that accepts and never greets hold every slot of a country's agents
  for little of the budget; held the same way (403, changes that add none always allowed);
- logins: the logins per 10 minutes the organization's monitors of one account (user@host)
  need together (controller.logins.cap) stay within `LOGIN_CAP_PER_ACCOUNT`; a write that takes
  them past it is a 403 naming the figure, the account and the setting;
- trigger-checks: `TRIGGER_CHECK_BURST` back to back per monitor, then one per
  `TRIGGER_CHECK_INTERVAL_SECONDS`; and the checks they run draw on an allowance of the
  budgets' size per minute for the whole organization, else many rarely scheduled monitors of
  many countries could each be triggered for a round a minute. Past either: 429 with
  `Retry-After`, since waiting does help.

Row-counting limits run in the writing transaction under the organization's row lock
(`controller.monitors.limits_store`), so concurrent requests on several replicas cannot overshoot.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from controller.db.pool import Conn
from controller.logins import account_store as account_logins
from controller.logins import cap as login_cap
from controller.monitors import limits_store as limits
from controller.monitors.errors import NotAllowed, TooSoon
from controller.monitors.limits_store import Cost
from controller.settings import FairUseSettings


@dataclass(frozen=True)
class Limits:
    max_monitors: int
    max_windows: int
    checks_per_minute: int
    slot_seconds: int
    default_countries: int
    trigger_burst: int
    trigger_interval_s: float
    login_ceiling: int = 1000
    blocklist_names: int = 1000

    @classmethod
    def of(cls, fair_use: FairUseSettings) -> "Limits":
        return cls(
            fair_use.org_max_monitors,
            fair_use.org_max_maintenance_windows,
            fair_use.org_max_checks_per_minute,
            fair_use.org_max_slot_seconds_per_minute,
            fair_use.default_check_countries,
            fair_use.trigger_check_burst,
            fair_use.trigger_check_interval_seconds,
            fair_use.login_cap_per_account,
            fair_use.org_max_blocklist_names,
        )


async def admit_new_monitor(conn: Conn, lim: Limits, organization_id: int) -> None:
    """Before an insert, in its transaction: room for one more monitor (locks the org row)."""
    await limits.lock_organization(conn, organization_id)
    if await limits.monitor_count(conn, organization_id) >= lim.max_monitors:
        raise NotAllowed(
            f"Your organization has reached its limit of {lim.max_monitors} monitors"
            " (ORG_MAX_MONITORS): delete one before creating another",
            code="monitor_limit",
        )


async def admit_new_window(conn: Conn, lim: Limits, organization_id: int) -> None:
    """Before an insert, in its transaction: room for one more maintenance window (locks the
    org row)."""
    await limits.lock_organization(conn, organization_id)
    if await limits.window_count(conn, organization_id) >= lim.max_windows:
        raise NotAllowed(
            f"Your organization has reached its limit of {lim.max_windows} maintenance windows"
            " (ORG_MAX_MAINTENANCE_WINDOWS): delete ones that are over before creating another",
            code="maintenance_window_limit",
        )


async def admit_blocklist_names(
    conn: Conn, lim: Limits, organization_id: int, before: frozenset[str], after: frozenset[str]
) -> None:
    """After a write that changed a monitor's `reputation`, in its transaction: a 403 when the
    organization now lists more distinct addresses and domains for the blocklists than
    `ORG_MAX_BLOCKLIST_NAMES` and the write added one (`before` → `after`: the monitor's
    own names), so one organization cannot make the agents ask the lists about thousands of
    names; an organization over a limit lowered later can still shrink."""
    if after <= before:
        return
    await limits.lock_organization(conn, organization_id)
    total = await limits.blocklist_names(conn, organization_id)
    if total > lim.blocklist_names:
        raise NotAllowed(
            f"This would take your organization to {total:,} outbound addresses and domains"
            f" listed for the blocklists, past its limit of {lim.blocklist_names:,}"
            " (ORG_MAX_BLOCKLIST_NAMES, each counted once over its monitors); list fewer here,"
            " or remove them from other monitors",
            code="blocklist_name_limit",
            fields=["reputation"],
        )


def listed_names(reputation: Mapping[str, Any] | None) -> frozenset[str]:
    """The names a monitor's `reputation` lists."""
    if not reputation:
        return frozenset()
    return frozenset([*(reputation.get("ips") or ()), *(reputation.get("domains") or ())])


# The monitor columns that add checks; `timeout_seconds` adds slot-seconds only.
CHECK_COLUMNS = ("allowed_country_codes", "check_interval", "status")
SLOT_COLUMNS = (*CHECK_COLUMNS, "timeout_seconds")
Budget = Literal["checks", "slot_seconds"]
NO_COST = Cost(0.0, 0.0)


@dataclass(frozen=True)
class Usage:
    """What one monitor adds to its organization's budgets: its checks and slot-seconds per
    minute, and the logins per window its account needs over the organization's monitors."""

    cost: Cost = NO_COST
    account: str | None = None
    logins: int = 0


NOTHING = Usage()  # what a monitor adds before it is created


async def checks_of(conn: Conn, lim: Limits, organization_id: int, monitor_id: int) -> Usage:
    """One monitor's checks and slot-seconds per minute (0 when disabled), and its account's
    login need."""
    cost = await limits.cost_per_minute(conn, organization_id, lim.default_countries, monitor_id)
    need = await account_logins.need(conn, [monitor_id], lim.default_countries, lim.trigger_burst)
    _, account, logins = need.get(monitor_id, (organization_id, None, 0))
    return Usage(cost, account, logins)


def refused_budgets(lim: Limits, before: Cost, after: Cost, total: Cost) -> list[Budget]:
    """The budgets a write breaks: those the monitor's cost grew on (`before` → `after`) while
    the organization's `total` is past them. A change that adds nothing is always allowed, so
    an organization over a budget lowered later can still edit and shrink."""
    refused: list[Budget] = []
    if after.checks > before.checks and total.checks > lim.checks_per_minute:
        refused.append("checks")
    if after.slot_seconds > before.slot_seconds and total.slot_seconds > lim.slot_seconds:
        refused.append("slot_seconds")
    return refused


async def admit_checks(
    conn: Conn,
    lim: Limits,
    organization_id: int,
    monitor_id: int,
    before: Usage,
    fields: Mapping[str, str],
) -> None:
    """After the monitor was written, in the same transaction: a 403 when it added checks or
    slot-seconds and the organization is now past that budget, or when its account now needs
    more logins than the ceiling; raising rolls the write back. `fields`: the request's
    columns that may add cost → their names in the request, of which the message names those
    that add to the refused budget."""
    added = await checks_of(conn, lim, organization_id, monitor_id)
    await _admit_logins(lim, added, before)
    after = added.cost
    if after.checks <= before.cost.checks and after.slot_seconds <= before.cost.slot_seconds:
        return
    await limits.lock_organization(conn, organization_id)
    total = await limits.cost_per_minute(conn, organization_id, lim.default_countries)
    refused = refused_budgets(lim, before.cost, after, total)
    if "checks" in refused:
        names = [fields[c] for c in CHECK_COLUMNS if c in fields]
        raise NotAllowed(
            f"This would take your organization to {total.checks:,.1f} checks per minute, past"
            f" its budget of {lim.checks_per_minute:,} (ORG_MAX_CHECKS_PER_MINUTE: countries x"
            " rounds per minute over its active and maintenance monitors); check this monitor"
            f" from fewer countries or less often ({', '.join(names)}), or disable others",
            code="check_budget",
            fields=names,
        )
    if "slot_seconds" in refused:
        names = [fields[c] for c in SLOT_COLUMNS if c in fields]
        raise NotAllowed(
            f"This would take your organization to {total.slot_seconds:,.1f} slot-seconds per"
            f" minute, past its budget of {lim.slot_seconds:,}"
            " (ORG_MAX_SLOT_SECONDS_PER_MINUTE: countries x rounds per minute x timeout over its"
            " active and maintenance monitors, the agent time its checks may hold); give this"
            " monitor a shorter timeout, fewer countries or fewer rounds"
            f" ({', '.join(names)}), or disable others",
            code="slot_budget",
            fields=names,
        )


def budget_fields(changes: Mapping[str, object], names: Mapping[str, str]) -> dict[str, str]:
    """`names` (column → field) narrowed to the columns in `changes`."""
    return {c: name for c, name in names.items() if c in changes}


def trigger_cost_s(lim: Limits, countries: int, timeout_s: float) -> float:
    """The share of a minute of the organization's trigger allowance one trigger takes: its
    checks' share of the check budget, or their slot-seconds' share of the slot budget,
    whichever is more, so neither budget can be run past by triggering."""
    return 60.0 * countries * max(1 / lim.checks_per_minute, timeout_s / lim.slot_seconds)


async def _admit_logins(lim: Limits, after: Usage, before: Usage) -> None:
    """The account's logins per window stay within the ceiling, unless the write does not
    add any (same account, no more need)."""
    if after.account is None:
        return
    need_before = before.logins if before.account == after.account else 0
    if login_cap.admissible(after.logins, need_before, lim.login_ceiling):
        return
    raise NotAllowed(
        f"Your organization's monitors of the account {after.account} would log in to it up to"
        f" {after.logins:,} times per 10 minutes (countries x rounds x logins a check, each round"
        " confirmed once, plus trigger-checks), past the ceiling of"
        f" {lim.login_ceiling:,} ({login_cap.SETTING}); check it from fewer countries or less"
        " often, or disable other monitors of that account",
        code="login_cap",
        fields=["checkInterval", "allowedCheckCountryCodes"],
    )


async def take_trigger(
    conn: Conn,
    lim: Limits,
    organization_id: int,
    monitor_id: int,
    countries: int,
    timeout_s: float,
    now: datetime,
) -> None:
    """In a transaction, at `now`: take one trigger-check of the monitor and its `countries`
    checks of `timeout_s` from the organization's allowance (`trigger_cost_s`), or neither
    (the 429 rolls both back)."""
    wait = await limits.take_trigger(
        conn,
        "monitors",
        monitor_id,
        lim.trigger_interval_s,
        lim.trigger_interval_s * lim.trigger_burst,
        now,
    )
    what = (
        f"this monitor's trigger-checks ({lim.trigger_burst} back to back, then one every"
        f" {lim.trigger_interval_s:g} s: TRIGGER_CHECK_BURST, TRIGGER_CHECK_INTERVAL_SECONDS)"
    )
    if not wait:
        cost = trigger_cost_s(lim, countries, timeout_s)
        wait = await limits.take_trigger(conn, "organizations", organization_id, cost, 60.0, now)
        what = (
            f"your organization's triggered checks ({lim.checks_per_minute:,} checks and"
            f" {lim.slot_seconds:,} slot-seconds per minute: ORG_MAX_CHECKS_PER_MINUTE,"
            " ORG_MAX_SLOT_SECONDS_PER_MINUTE)"
        )
    if wait:
        retry = max(1, math.ceil(wait))
        raise TooSoon(
            f"Too many trigger-checks: {what} are used up; try again in {retry} s",
            code="trigger_limit",
            retry_after_s=retry,
        )
