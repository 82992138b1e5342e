"""One pass of an operator health watch, in the caller's transaction: what was judged now moved
against what is stored (`move`: a stored name not judged now takes `gone`, each stepped by
`rules.step`, saved when it changed) and each change that held told (`tell_owners`: one `fleet`
notice to the owners of each organization it touches; `tell_operators`: one to the deployment's
operators; the fleet's own budget, never the outages')."""

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from controller.access import accounts_store as accounts
from controller.db.pool import Conn
from controller.notify import budget_store as budget_db
from controller.notify import recipients
from controller.notify.entry import Notice, Source, notify
from controller.notify.texts import Texts
from controller.operator_health import rules
from controller.operator_health import store as db
from controller.operator_health.rules import Change, Health, Stored
from controller.operator_health.store import Table

# The notification kind owners opt in and out of for these notices.
KIND = "finding"


class Told(NamedTuple):
    """A change that held: the name, the country, its health now and which way it went."""

    name: str
    country: str
    stored: Stored
    change: Change


async def move(
    conn: Conn,
    table: Table,
    stored: Mapping[tuple[str, str], Stored],
    judged: Mapping[tuple[str, str], Health],
    at: datetime,
    *,
    hold: timedelta,
    gone: Health,
    quiet: Collection[tuple[str, str]] = (),
) -> list[Told]:
    """Step every judged name, and every stored one not judged now (as `gone`), to `at`; saved
    when it changed; the changes to tell, in (name, country) order, none of `quiet`'s."""
    now_health = dict(judged) | {key: gone for key in stored.keys() - judged.keys()}
    told: list[Told] = []
    for key in sorted(now_health):
        before = stored.get(key)
        after, change = rules.step(before, now_health[key], at, hold, key in quiet)
        if after != before:
            await db.save(conn, table, *key, after)
        if change is not None:
            told.append(Told(*key, after, change))
    return told


async def tell_owners(
    conn: Conn, organizations: Iterable[int], texts: Texts, key: str, now: datetime
) -> None:
    """`texts` to the owners of each organization at `now`, deduplicated by `key` per
    organization."""
    for org in organizations:
        _, owners = await budget_db.owners(conn, org)
        notes = recipients.to_owners(KIND, owners, texts, f"{key}:{org}")
        await notify(conn, Notice(Source.FLEET, org, None, None, notes), now)


async def tell_operators(conn: Conn, texts: Texts, key: str, now: datetime) -> None:
    """`texts` to each of the deployment's operators (`accounts.operators`) at `now`, one notice
    per organization they belong to, charged to that organization's fleet budget."""
    by_org: dict[int, list[recipients.Owner]] = {}
    for op in await accounts.operators(conn):
        by_org.setdefault(op.organization_id, []).append(recipients.Owner(op.id, op.email))
    for org, ops in by_org.items():
        notes = recipients.to_owners(KIND, ops, texts, f"{key}:operators:{org}")
        await notify(conn, Notice(Source.FLEET, org, None, None, notes), now)
