"""Monitors: one table for every type, config as JSONB (secrets sealed by the API layer), and
`Monitor`, the one typed view of a row that new code goes through."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from controller.db.pool import Conn
from controller.db.sql import like_pattern
from controller.monitors.config import CONFIG_TYPES as CONFIG_TYPES
from controller.monitors.config import MonitorConfigError as MonitorConfigError
from controller.monitors.config import decode_config as decode_config
from controller.monitors.config import grants_of as grants_of
from controller.monitors.config import stored_config as stored_config
from controller.monitors.model import COMMON_COLUMNS, MonitorCommon
from controller.monitors.oauth2_grants import Grant
from shared.guards import BrokenInvariant
from shared.messages import JobConfig, StoredType


class Monitor(MonitorCommon, kw_only=True, frozen=True):
    """A monitor row, typed: `MonitorCommon`'s fields and the controller's own. `config` is
    its type's wire config Struct with each secret still as stored (a `SealedSecret`,
    controller.secrets.box); a Secret's repr is the mask, and the repr leaves out
    `config_as_sent`, so a Monitor is safe to log.

    `config_as_sent`: the config as stored, only the keys the API was sent (secrets sealed).
    `config` cannot tell a key left out from one sent with its default value, so two readers
    need it and no other may use it: the API's response building
    (`controller.web.api.monitor_rules.present`: SMTP and IMAP/POP configs show only the keys
    sent, as the seeds do) and the write path (`stored_values`: a PATCH that restates the
    stored config changes nothing; a secret bound to the stored keys). Every other reader
    takes `config`."""

    type: StoredType
    config: JobConfig
    # The outbound addresses and domains listed for the blocklists (`{"ips", "domains"}`,
    # validation.reputation); None: none.
    reputation: dict[str, list[str]] | None = None
    # Monitors as code's variable name of each secret, by config path (a label, never read).
    secret_env: dict[str, str] | None = None
    next_due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_checked_at: datetime | None
    config_as_sent: dict[str, Any]
    # Its logins' OAuth2 grants (secrets sealed), by where the config holds each
    # (`kinds.Login.oauth2`); the wire config Struct has no place for them.
    grants: dict[str, Grant] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        shown = (
            f"{n}={getattr(self, n)!r}"
            for n in self.__struct_fields__
            if n not in ("config_as_sent", "grants")
        )
        return f"Monitor({', '.join(shown)})"


_CONFIGS = ("config", "config_as_sent", "grants")


def decode(row: asyncpg.Record) -> Monitor:
    """The row (of `COLUMNS`) as a Monitor; MonitorConfigError for a config that does not fit."""
    fields = {name: row[name] for name in Monitor.__struct_fields__ if name not in _CONFIGS}
    stored = row["config"] or {}
    try:
        config = decode_config(row["type"], stored)
    except MonitorConfigError as exc:
        raise MonitorConfigError(f"monitor {row['public_id']}: {exc}") from None
    return Monitor(
        **fields,
        config=config,
        config_as_sent=stored,
        grants=grants_of(row["type"], stored),
    )


# Every field of `Monitor` is the column of its name but these, which `decode` derives.
_DERIVED = ("config_as_sent", "grants", "last_checked_at", "next_due_at")
# `next_due_at`: the due time the scheduler moves every round, in `monitor_due` (migration 0128;
# `monitors.next_due_at` is only a previous release's copy), read here and by the claims
# (`controller.scheduling.due_store`); `last_checked_at`: the latest over the monitor's
# countries (the ingester keeps it per country).
_STORED = ", ".join(name for name in Monitor.__struct_fields__ if name not in _DERIVED)
DUE_AT = "(SELECT d.next_due_at FROM monitor_due d WHERE d.monitor_id = monitors.id) AS next_due_at"
COLUMNS = (
    f"{_STORED}, {DUE_AT}, (SELECT max(s.last_checked_at) FROM monitor_country_state s"
    "  WHERE s.monitor_id = monitors.id) AS last_checked_at"
)


class RoundState(msgspec.Struct, kw_only=True, frozen=True):
    """Where a monitor's rounds stand, kept by the scheduler and the alerter (never written by
    the API): the countries its latest round went to, since when its rounds count for alerting,
    when a round last resolved its mail DNS, and its login back-off (0 failures: none)."""

    countries: list[str] | None
    since: datetime
    mail_dns_at: datetime | None
    login_failures: int
    login_retry_at: datetime | None


class WatchedMonitor(msgspec.Struct, frozen=True):
    """A monitor as the scheduler and the alerter take it: the typed monitor and its rounds."""

    monitor: Monitor
    rounds: RoundState


ROUND_COLUMNS = (
    "round_countries, rounds_since, mail_dns_at,"
    " (SELECT b.failures FROM login_backoff b WHERE b.monitor_id = monitors.id) AS login_failures,"
    " (SELECT b.retry_at FROM login_backoff b WHERE b.monitor_id = monitors.id) AS login_retry_at"
)
# Selected `FROM monitors` (unaliased: the subqueries name it).
WATCHED_COLUMNS = f"{COLUMNS}, {ROUND_COLUMNS}"
# `WATCHED_COLUMNS` with `last_checked_at` null, as no round's plan reads it (it is a subquery per
# monitor), and the due time from `monitor_due` joined as `due`: what the scheduler's claims read.
PLANNED_COLUMNS = (
    f"{_STORED}, due.next_due_at, NULL::timestamptz AS last_checked_at, {ROUND_COLUMNS}"
)


def decode_watched(row: asyncpg.Record) -> WatchedMonitor:
    """A row of `WATCHED_COLUMNS`; MonitorConfigError for a config that does not fit."""
    return WatchedMonitor(
        decode(row),
        RoundState(
            countries=row["round_countries"],
            since=row["rounds_since"],
            mail_dns_at=row["mail_dns_at"],
            login_failures=row["login_failures"] or 0,
            login_retry_at=row["login_retry_at"],
        ),
    )


async def watched(conn: Conn, monitor_id: int) -> WatchedMonitor | None:
    """One monitor with its rounds; None when it is gone."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {WATCHED_COLUMNS} FROM monitors WHERE id = $1", monitor_id
    )
    return None if row is None else decode_watched(row)


# Columns the API may write; anything else in `changes` is a programming error.
WRITABLE = frozenset({*COMMON_COLUMNS, "customer_id", "type", "config", "next_due_at"})


def stored_values(monitor: Monitor) -> dict[str, object]:
    """The monitor's `WRITABLE` columns as stored (`config`: as sent), what a write's changes
    are compared with."""
    values = {name: getattr(monitor, name) for name in WRITABLE if name != "config"}
    return {**values, "config": monitor.config_as_sent}


async def insert(
    conn: Conn, organization_id: int, values: Mapping[str, object], now: datetime
) -> Monitor:
    """Insert a monitor made at the writer's `now` (`created_at`, `updated_at`: the instant its
    triggers queue it for judging); MonitorConfigError when `values` hold a config its type does
    not take."""
    names = sorted(values)
    if not (set(names) <= WRITABLE):
        raise BrokenInvariant(
            f"store.insert: expected set(names) <= WRITABLE: {set(names) - WRITABLE}"
        )
    placeholders = ", ".join(f"${i}" for i in range(3, len(names) + 3))
    row: asyncpg.Record | None = await conn.fetchrow(
        f"INSERT INTO monitors (organization_id, created_at, updated_at, {', '.join(names)})"
        f" VALUES ($1, $2, $2, {placeholders}) RETURNING {COLUMNS}",
        organization_id,
        now,
        *(values[n] for n in names),
    )
    if row is None:
        raise BrokenInvariant("store.insert: the statement returned no row")
    return decode(row)


async def get(
    conn: Conn,
    ident: UUID | int,
    types: Sequence[str],
    organization_id: int | None,
    *,
    for_update: bool = False,
) -> Monitor | None:
    """The monitor with that public UUID or numeric id, of one of `types`, inside the
    organization (None: any organization)."""
    column = "public_id" if isinstance(ident, UUID) else "id"
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM monitors WHERE {column} = $1 AND type = ANY($2::text[])"
        " AND ($3::bigint IS NULL OR organization_id = $3)" + (" FOR UPDATE" if for_update else ""),
        ident,
        types,
        organization_id,
    )
    return None if row is None else decode(row)


async def by_public_ids(conn: Conn, public_ids: Sequence[UUID]) -> dict[UUID, Monitor]:
    """The monitors of `public_ids` that are there, by public id, but those whose config does
    not fit (`MonitorConfigError`: their rounds send nothing); their due and last checked
    times are left None (not read)."""
    rows = await conn.fetch(
        f"SELECT {_STORED}, NULL::timestamptz AS next_due_at,"
        " NULL::timestamptz AS last_checked_at FROM monitors WHERE public_id = ANY($1::uuid[])",
        sorted(set(public_ids)),
    )
    found: dict[UUID, Monitor] = {}
    for row in rows:
        try:
            found[row["public_id"]] = decode(row)
        except MonitorConfigError:
            continue
    return found


def searched(pattern: str, column: str = "id", organization: str | None = None) -> str:
    """The filter "name or hostname holds the ILIKE `pattern`" (a placeholder such as `$4`,
    any case) on the monitor id `column`, within the organization `organization` (a
    placeholder; NULL or None: every one): read from `monitor_search` (migration 0041: both
    lower-cased), whose trigram indexes answer it without reading every monitor; the matches
    are an array, so that the monitors are read by their ids, never whole."""
    within = (
        ""
        if organization is None
        else (f"({organization} IS NULL OR s.organization_id = {organization}) AND ")
    )
    return (
        f"{column} = ANY(ARRAY(SELECT s.monitor_id FROM monitor_search s WHERE {within}"
        f"(s.name LIKE lower({pattern}) OR s.hostname LIKE lower({pattern}))))"
    )


async def list_page(
    conn: Conn,
    *,
    organization_id: int | None,
    types: Sequence[str],
    customer_id: int | None,
    search: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Monitor], int]:
    """One page of monitors, newest first, and how many the filters select.

    Only the filters given reach the SQL (a search its own statement, so a plan PostgreSQL keeps
    for it still uses the trigram indexes), so the planner walks `monitors_org_created` in page
    order; the page's ids are found first and only those rows read whole, so a deep page skips
    ids, not whole rows."""
    filters = ["type = ANY($1::text[])"]
    args: list[object] = [list(types)]
    placeholders: dict[str, str] = {}
    for column, value in (
        ("organization_id", organization_id),
        ("customer_id", customer_id),
        ("status", status),
    ):
        if value is not None:
            args.append(value)
            placeholders[column] = f"${len(args)}"
            filters.append(f"{column} = {placeholders[column]}")
    if search is not None:
        args.append(like_pattern(search))
        within = placeholders.get("organization_id")
        filters.append(searched(f"${len(args)}", organization=within))
    where = " AND ".join(filters)
    n = len(args)
    # A search's matches are found first (`monitor_search`'s trigram indexes), then
    # sorted: walking `monitors_org_created` would read every monitor before a rare match.
    page_ids = (
        f"WITH hits AS MATERIALIZED (SELECT id, created_at FROM monitors WHERE {where})"
        " SELECT id FROM hits"
        if search is not None
        else f"SELECT id FROM monitors WHERE {where}"
    )
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM monitors WHERE id = ANY(ARRAY({page_ids}"
        f" ORDER BY created_at DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}))"
        " ORDER BY created_at DESC, id DESC",
        *args,
        limit,
        offset,
    )
    total: int = await conn.fetchval(f"SELECT count(*) FROM monitors WHERE {where}", *args)
    return [decode(r) for r in rows], total


async def update(
    conn: Conn, monitor_id: int, changes: Mapping[str, object], now: datetime
) -> Monitor:
    """Write `changes` to the monitor, `updated_at` the writer's `now`, and always after the
    one before (a microsecond on, if the clock stood or stepped back): it is the token a write
    built on an earlier read is told `Stale` by."""
    names = sorted(changes)
    if not (set(names) <= WRITABLE):
        raise BrokenInvariant(
            f"store.update: expected set(names) <= WRITABLE: {set(names) - WRITABLE}"
        )
    assignments = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=3))
    row: asyncpg.Record | None = await conn.fetchrow(
        f"UPDATE monitors SET {assignments}{', ' if names else ''}updated_at ="
        " greatest($2::timestamptz, updated_at + interval '1 microsecond')"
        f" WHERE id = $1 RETURNING {COLUMNS}",
        monitor_id,
        now,
        *(changes[n] for n in names),
    )
    if row is None:
        raise BrokenInvariant("store.update: the statement returned no row")
    return decode(row)


async def of_organization(conn: Conn, organization_id: int, ids: Sequence[UUID]) -> set[UUID]:
    """Those of the public ids `ids` that name a monitor of the organization."""
    rows = await conn.fetch(
        "SELECT public_id FROM monitors WHERE organization_id = $1 AND public_id = ANY($2::uuid[])",
        organization_id,
        list(ids),
    )
    return {r["public_id"] for r in rows}


class MailboxOf(msgspec.Struct, frozen=True):
    """A monitor a heartbeat names as its mailbox: its type, and how many other heartbeats
    read it."""

    type: str
    readers: int


async def mailbox_of(
    conn: Conn, organization_id: int, public_id: UUID, heartbeat: UUID | None
) -> MailboxOf | None:
    """The organization's monitor `public_id` as a heartbeat's mailbox, the heartbeats other
    than `heartbeat` that read it counted; None when the organization has none of that id."""
    row = await conn.fetchrow(
        "SELECT m.type, (SELECT count(*) FROM monitors h WHERE h.type = 'heartbeat'"
        " AND h.organization_id = m.organization_id AND h.public_id IS DISTINCT FROM $3"
        " AND h.config ->> 'mailboxMonitorId' = m.public_id::text) AS readers"
        " FROM monitors m WHERE m.organization_id = $1 AND m.public_id = $2",
        organization_id,
        public_id,
        heartbeat,
    )
    return None if row is None else MailboxOf(row["type"], row["readers"])


async def delete(conn: Conn, monitor_id: int) -> None:
    await conn.execute("DELETE FROM monitors WHERE id = $1", monitor_id)


async def end_flows_gone(conn: Conn, organization_id: int, now: datetime) -> None:
    """After a deletion has committed (a transaction of its own: the flow incident lock comes
    before any incident row), the organization's flow incidents none of whose outages is open
    any more end at `now` (the SQL function `flow_incidents_end_gone`, migration 0136): a
    monitor deleted while down was the last open outage of its flow incident."""
    await conn.execute("SELECT flow_incidents_end_gone($1, $2)", organization_id, now)
