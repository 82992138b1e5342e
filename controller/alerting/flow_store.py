"""Flow incidents as stored (`flow_incidents`, and `incidents.flow_incident_id` naming the one
each monitor's outage joined): read, opened, joined, told, ended. The caller owns the
transaction; the alerter is their only writer, one organization's at a time (`lock`)."""

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec

from controller.alerting import flows
from controller.alerting.flows import Dependent, Flow, Outage
from controller.db.pool import Conn
from controller.ingest import store as results
from controller.monitors import store as monitors
from controller.monitors.store import Monitor, MonitorConfigError
from controller.notify.evidence_store import EVIDENCE_MAX
from controller.scheduling import confirm_store


async def lock(conn: Conn, organization_id: int) -> None:
    """Hold the organization's flow incidents until the transaction ends: outages evaluated at
    once (lanes, replicas) join one flow incident instead of opening one each."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('flow_incidents'), $1)", organization_id
    )


async def _monitors(conn: Conn, ids: Collection[int]) -> dict[int, Monitor]:
    """The monitors by id (one whose config no longer decodes is left out)."""
    rows = await conn.fetch(
        f"SELECT {monitors.COLUMNS} FROM monitors WHERE id = ANY($1::bigint[])", list(ids)
    )
    found = {}
    for r in rows:
        try:
            found[r["id"]] = monitors.decode(r)
        except MonitorConfigError:
            continue
    return found


async def open_flows(conn: Conn, organization_id: int, now: datetime) -> list[Flow]:
    """The organization's open flow incidents with their open outages; those whose outages
    have all gone (their monitors deleted) are ended at `now` instead (`end_gone`)."""
    await end_gone(conn, organization_id, now)
    flows = await conn.fetch(
        "SELECT id, opened_at, monitors, countries, cause_kinds, notified FROM flow_incidents"
        " WHERE organization_id = $1 AND ended_at IS NULL",
        organization_id,
    )
    if not flows:
        return []
    rows = await conn.fetch(
        "SELECT flow_incident_id, monitor_id, started_at, cause_kind, countries, messages"
        " FROM incidents WHERE flow_incident_id = ANY($1::bigint[]) AND ended_at IS NULL",
        [f["id"] for f in flows],
    )
    by_id = await _monitors(conn, {r["monitor_id"] for r in rows})
    by_flow: dict[int, list[Outage]] = {}
    for r in rows:
        if (monitor := by_id.get(r["monitor_id"])) is not None:
            outage = Outage(
                Dependent.of(monitor),
                r["started_at"],
                r["cause_kind"],
                frozenset(r["countries"]),
                tuple(r["messages"]),
            )
            by_flow.setdefault(r["flow_incident_id"], []).append(outage)
    return [
        Flow(
            f["id"],
            f["opened_at"],
            tuple(by_flow.get(f["id"], [])),
            frozenset(f["monitors"]),
            frozenset(f["countries"]),
            frozenset(f["cause_kinds"]),
            f["notified"],
        )
        for f in flows
    ]


# How far back before an outage the addresses its monitors connected to are read: the
# server's addresses while it answered (a down server's checks often connect to none).
ADDRESSES_SINCE = timedelta(days=1)


async def addresses(conn: Conn, outages: Iterable[Outage], now: datetime) -> flows.Addresses:
    """The addresses the outages' monitors' results connected to from `ADDRESSES_SINCE`
    before the oldest of them started until `now`, by host name (`flows.by_host`)."""
    found = list(outages)
    if not found:
        return flows.NO_ADDRESSES
    since = min(o.started_at for o in found) - ADDRESSES_SINCE
    return await addresses_of(conn, [o.monitor for o in found], since, now)


async def addresses_of(
    conn: Conn, monitors: Iterable[Dependent], since: datetime, until: datetime
) -> flows.Addresses:
    """The addresses the monitors' results scheduled from `since` to `until` (the reader's
    now) connected to, by host name (`flows.by_host`), and those the agents saw meanwhile for
    the host names they declare in `dependsOn` (`declared_addresses`): what
    `flows.same_server` and `flows.related` read."""
    deps = {d.monitor_id: d for d in monitors}
    if not deps:
        return flows.NO_ADDRESSES
    seen = await results.recent_addresses(conn, list(deps), since, until)
    found = flows.by_host((d, seen.get(i, ())) for i, d in deps.items())
    declared = {(h, d.customer_id) for d in deps.values() for h in d.on_hosts}
    for name, address in await declared_addresses(conn, declared, list(deps), since, until):
        found.setdefault(name, set()).add(address)
    return found


# Declared host names read at most per read: a few outages' `dependsOn` names.
DECLARED_MAX = 64
# Monitors on a declared name whose addresses are read, reverse DNS rows read per SMTP
# monitor: the bounds confirmation rounds find a declared name's addresses by too.
NAMED_MAX = confirm_store.NAMED_MAX
PTR_ROWS = confirm_store.PTR_ROWS
_SEEN = results.RECENT_ADDRESSES.format(monitor="m.id", since="$3", until="$8", limit="$4")


async def declared_addresses(
    conn: Conn,
    declared: Collection[tuple[str, int]],
    monitor_ids: Sequence[int],
    since: datetime,
    until: datetime,
) -> list[tuple[str, str]]:
    """(name, address) for each declared (host name (`flows.host`), customer): the addresses
    the customer's monitors on that name (the first `NAMED_MAX`; not round trips) connected to
    from `since` to `until` (each's latest `results.ADDRESSES_MAX` rows naming one:
    `results.RECENT_ADDRESSES`),
    and the addresses whose PTR names the agents resolved back to them include the name
    (forward-confirmed reverse DNS of the SMTP monitors `monitor_ids`, the customer's, each's
    latest `PTR_ROWS` rows since `since`). So a `dependsOn` name no failing monitor checks,
    or none at all, is found at the addresses the agents saw for it. The first
    `DECLARED_MAX` by name."""
    wanted = sorted(declared)[:DECLARED_MAX]
    if not wanted:
        return []
    rows = await conn.fetch(
        "WITH d AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS d(name, customer_id)),"
        " ptr AS (SELECT m.customer_id, p.ptr FROM monitors m"
        "  CROSS JOIN LATERAL (SELECT r.facts FROM side_reverse_dns r WHERE r.monitor_id = m.id"
        "   AND r.scheduled_at >= $3 ORDER BY r.scheduled_at DESC LIMIT $5) r"
        "  CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.facts -> 'addresses')"
        "   = 'array' THEN r.facts -> 'addresses' ELSE '[]' END) p(ptr)"
        "  WHERE m.id = ANY($6::bigint[]) AND m.type = 'smtp'"
        "  AND jsonb_typeof(p.ptr -> 'confirmed') = 'array' AND p.ptr ->> 'address' IS NOT NULL),"
        " named AS (SELECT d.name, m.id, row_number() OVER (PARTITION BY d.name, d.customer_id"
        "  ORDER BY m.id) AS k FROM monitors m JOIN d ON d.customer_id = m.customer_id"
        "  AND d.name = lower(rtrim(btrim(m.hostname), '.'))"
        "  WHERE m.customer_id = ANY($2::bigint[]) AND m.type <> 'roundtrip')"
        f" SELECT m.name, a.address FROM named m CROSS JOIN LATERAL {_SEEN} a WHERE m.k <= $7"
        " UNION SELECT d.name, ptr.ptr ->> 'address' FROM d JOIN ptr"
        "  ON ptr.customer_id = d.customer_id"
        "  AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(ptr.ptr -> 'confirmed') c"
        "   WHERE lower(rtrim(btrim(c), '.')) = d.name)",
        [n for n, _ in wanted],
        [c for _, c in wanted],
        since,
        results.ADDRESSES_MAX,
        PTR_ROWS,
        list(monitor_ids),
        NAMED_MAX,
        until,
    )
    return [(r["name"], r["address"]) for r in rows]


async def end_gone(conn: Conn, organization_id: int, now: datetime) -> int:
    """End at `now` the organization's open flow incidents none of whose outages is open
    (their monitors were deleted while down), under its flow incident lock; return how many
    (the SQL function `flow_incidents_end_gone`, migration 0136)."""
    ended: int = await conn.fetchval("SELECT flow_incidents_end_gone($1, $2)", organization_id, now)
    return ended


async def start(
    conn: Conn,
    organization_id: int,
    incident_id: int,
    started_at: datetime,
    opened_at: datetime | None = None,
) -> int:
    """A flow incident of its own for the outage `incident_id`, opened at `opened_at` (the
    opener's clock; the column's default when not given); return its id."""
    opened = ("", "") if opened_at is None else (", opened_at", ", $3")
    flow_id: int = await conn.fetchval(
        f"INSERT INTO flow_incidents (organization_id, started_at{opened[0]})"
        f" VALUES ($1, $2{opened[1]}) RETURNING id",
        organization_id,
        started_at,
        *([] if opened_at is None else [opened_at]),
    )
    await join(conn, flow_id, incident_id)
    return flow_id


async def join(conn: Conn, flow_id: int, incident_id: int) -> None:
    await conn.execute(
        "UPDATE incidents SET flow_incident_id = $1 WHERE id = $2", flow_id, incident_id
    )


async def merge(conn: Conn, into: int, merged: Sequence[int]) -> None:
    """The outages of the flow incidents `merged` (nobody told of them) join `into`, and so
    does their evidence (findings never sent on their own: the oldest `EVIDENCE_MAX` kept);
    they are gone."""
    await conn.execute(
        "UPDATE incidents SET flow_incident_id = $1 WHERE flow_incident_id = ANY($2::bigint[])",
        into,
        list(merged),
    )
    await conn.execute(
        "UPDATE flow_incident_evidence SET flow_incident_id = $1"
        " WHERE flow_incident_id = ANY($2::bigint[])",
        into,
        list(merged),
    )
    await conn.execute(
        "DELETE FROM flow_incident_evidence WHERE flow_incident_id = $1 AND id NOT IN"
        " (SELECT id FROM flow_incident_evidence WHERE flow_incident_id = $1"
        "  ORDER BY at, id LIMIT $2)",
        into,
        EVIDENCE_MAX,
    )
    await conn.execute(
        "UPDATE flow_incidents f SET started_at = least(f.started_at,"
        "   (SELECT min(g.started_at) FROM flow_incidents g WHERE g.id = ANY($2::bigint[]))),"
        " due_at = least(f.due_at,"
        "   (SELECT min(g.due_at) FROM flow_incidents g WHERE g.id = ANY($2::bigint[])))"
        " WHERE f.id = $1",
        into,
        list(merged),
    )
    await conn.execute("DELETE FROM flow_incidents WHERE id = ANY($1::bigint[])", list(merged))


class FlowState(msgspec.Struct, frozen=True, kw_only=True):
    """A flow incident as its notices need it. `monitors`, `countries`, `cause_kinds`: what its
    people were told of so far; `members`: the monitors whose outages joined it; `open`: its
    outages still open; `last_notified_at`: its last notice."""

    id: int
    public_id: UUID
    organization_id: int
    started_at: datetime
    ended_at: datetime | None
    monitors: list[int]
    countries: list[str]
    cause_kinds: list[str]
    notified: bool
    changes: int
    reminders: int
    last_notified_at: datetime | None
    due_at: datetime | None
    pending: list[str]
    members: int
    open: int
    held: list[int]


async def state(conn: Conn, flow_id: int) -> FlowState | None:
    row = await conn.fetchrow(
        "SELECT f.id, f.public_id, f.organization_id, f.started_at, f.ended_at, f.monitors,"
        " f.countries, f.cause_kinds, f.notified, f.changes, f.reminders, f.last_notified_at,"
        " f.due_at, f.pending, f.held,"
        " (SELECT count(DISTINCT i.monitor_id) FROM incidents i"
        "  WHERE i.flow_incident_id = f.id) AS members,"
        " (SELECT count(*) FROM incidents i"
        "  WHERE i.flow_incident_id = f.id AND i.ended_at IS NULL) AS open"
        " FROM flow_incidents f WHERE f.id = $1",
        flow_id,
    )
    return None if row is None else FlowState(**dict(row))


async def want(conn: Conn, flow_id: int, due_at: datetime, changes: Sequence[str]) -> None:
    """Its next notice is due at `due_at` (unless one is due already), telling of `changes`
    too."""
    await conn.execute(
        "UPDATE flow_incidents SET due_at = coalesce(due_at, $2),"
        " pending = ARRAY(SELECT DISTINCT unnest(pending || $3::text[]) ORDER BY 1)"
        " WHERE id = $1",
        flow_id,
        due_at,
        list(changes),
    )


async def hold(conn: Conn, flow_id: int) -> None:
    """Its due notice is not sent now (every monitor in maintenance): none is due until an
    outage wants one again; the changes wanted so far stay to be told."""
    await conn.execute("UPDATE flow_incidents SET due_at = NULL WHERE id = $1", flow_id)


async def held_back(conn: Conn, flow_id: int, monitor_ids: Collection[int]) -> None:
    """Its notice skipped these monitors' recipients (maintenance): they are told later."""
    await conn.execute(
        "UPDATE flow_incidents SET held = ARRAY(SELECT DISTINCT unnest(held || $2::bigint[])"
        " ORDER BY 1) WHERE id = $1",
        flow_id,
        list(monitor_ids),
    )


async def told_late(conn: Conn, flow_id: int, monitor_id: int) -> None:
    """The monitor's recipients, held back, were told of it now."""
    await conn.execute(
        "UPDATE flow_incidents SET held = array_remove(held, $2) WHERE id = $1",
        flow_id,
        monitor_id,
    )


async def told(conn: Conn, flow_id: int, kind: str, now: datetime) -> None:
    """Its notice of `kind` went out, telling of every outage that joined it so far."""
    await conn.execute(
        "UPDATE flow_incidents f SET notified = true, last_notified_at = $3,"
        " changes = f.changes + (CASE WHEN $2 = 'changed' THEN 1 ELSE 0 END),"
        " reminders = f.reminders + (CASE WHEN $2 = 'reminder' THEN 1 ELSE 0 END),"
        " due_at = NULL, pending = '{}',"
        " monitors = ARRAY(SELECT DISTINCT i.monitor_id FROM incidents i"
        "   WHERE i.flow_incident_id = f.id ORDER BY 1),"
        " countries = ARRAY(SELECT DISTINCT c FROM incidents i, unnest(i.countries) c"
        "   WHERE i.flow_incident_id = f.id ORDER BY 1),"
        " cause_kinds = ARRAY(SELECT DISTINCT i.cause_kind FROM incidents i"
        "   WHERE i.flow_incident_id = f.id ORDER BY 1)"
        " WHERE f.id = $1",
        flow_id,
        kind,
        now,
    )


async def named(conn: Conn, key: str, incident_ids: Collection[int]) -> None:
    """The outbox rows of the flow incident's notice `key` (its dedupe key, made per address
    and channel) name the outages `incident_ids`, whichever member's they were queued for."""
    await conn.execute(
        "INSERT INTO notice_incidents (incident_id, outbox_id)"
        " SELECT n.id, o.id FROM notification_outbox o, unnest($2::bigint[]) AS n(id)"
        " WHERE o.incident_id = ANY($2::bigint[]) AND starts_with(o.dedupe_key, $1)"
        " ON CONFLICT DO NOTHING",
        key + ":",
        list(incident_ids),
    )


async def due(conn: Conn, now: datetime, limit: int) -> list[tuple[int, int]]:
    """Open flow incidents whose next notice is due, oldest first: (id, organization id)."""
    rows = await conn.fetch(
        "SELECT id, organization_id FROM flow_incidents"
        " WHERE due_at <= $1 AND ended_at IS NULL ORDER BY due_at LIMIT $2",
        now,
        limit,
    )
    return [(r["id"], r["organization_id"]) for r in rows]


async def first_waiting(conn: Conn, now: datetime, limit: int) -> list[tuple[int, int, list[int]]]:
    """Open flow incidents whose first notice waits (due after `now`), soonest due first:
    (id, organization id, the monitors of its open outages)."""
    rows = await conn.fetch(
        "SELECT f.id, f.organization_id, ARRAY(SELECT i.monitor_id FROM incidents i"
        "  WHERE i.flow_incident_id = f.id AND i.ended_at IS NULL) AS monitors"
        " FROM flow_incidents f WHERE f.due_at > $1 AND NOT f.notified AND f.ended_at IS NULL"
        " ORDER BY f.due_at LIMIT $2",
        now,
        limit,
    )
    return [(r["id"], r["organization_id"], list(r["monitors"])) for r in rows]


async def end(conn: Conn, flow_id: int, ended_at: datetime) -> None:
    await conn.execute(
        "UPDATE flow_incidents SET ended_at = $2, due_at = NULL, pending = '{}'"
        " WHERE id = $1 AND ended_at IS NULL",
        flow_id,
        ended_at,
    )


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """A monitor whose outage joined a flow incident: its latest outage in it."""

    monitor: Monitor
    incident_id: int
    started_at: datetime
    ended_at: datetime | None
    cause_kind: str
    cause: str
    countries: list[str]


async def members(conn: Conn, flow_id: int) -> list[Member]:
    """The monitors whose outages joined the flow incident, each with its latest outage in
    it, oldest first (a monitor whose config no longer decodes is left out)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (monitor_id) id, monitor_id, started_at, ended_at, cause_kind,"
        " cause, countries FROM incidents WHERE flow_incident_id = $1"
        " ORDER BY monitor_id, started_at DESC, id DESC",
        flow_id,
    )
    by_id = await _monitors(conn, [r["monitor_id"] for r in rows])
    found = [
        Member(
            monitor=by_id[r["monitor_id"]],
            incident_id=r["id"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            cause_kind=r["cause_kind"],
            cause=r["cause"],
            countries=list(r["countries"]),
        )
        for r in rows
        if r["monitor_id"] in by_id
    ]
    return sorted(found, key=lambda m: (m.started_at, m.incident_id))


class ListedMember(msgspec.Struct, frozen=True, kw_only=True):
    """A monitor in a listed flow incident: its latest incident in it."""

    flow_incident_id: int
    monitor_public_id: UUID
    name: str
    type: str
    hostname: str
    port: int | None
    started_at: datetime
    ended_at: datetime | None
    cause_kind: str
    cause: str
    countries: list[str]


class ListedFlow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    public_id: UUID
    started_at: datetime
    ended_at: datetime | None
    notified: bool
    members: list[ListedMember]

    @property
    def countries(self) -> list[str]:
        """Every country its monitors' outages were seen from."""
        return sorted({c for m in self.members for c in m.countries})

    @property
    def cause_kinds(self) -> list[str]:
        return sorted({m.cause_kind for m in self.members})

    @property
    def down(self) -> int:
        """Its monitors still down in it."""
        return sum(m.ended_at is None for m in self.members)


_LISTED = "SELECT id, public_id, started_at, ended_at, notified FROM flow_incidents"


def _where(organization_id: int | None, *more: str) -> str:
    """The organization's rows (every one's for None), and `more`: spelt out, so that the
    plan uses the organization's indexes (`flow_incidents_open` for the open ones)."""
    found = ([] if organization_id is None else ["organization_id = $1"]) + list(more)
    return " WHERE " + " AND ".join(found) if found else ""


async def list_flows(
    conn: Conn,
    organization_id: int | None,
    limit: int,
    offset: int,
    *,
    open_only: bool = False,
) -> tuple[list[ListedFlow], int]:
    """A page of the organization's flow incidents (every organization's for None), newest
    first, each with its monitors; `open_only`: those still open."""
    where = _where(organization_id, *(["ended_at IS NULL"] if open_only else []))
    scope = [] if organization_id is None else [organization_id]
    n = len(scope)
    rows = await conn.fetch(
        f"{_LISTED}{where} ORDER BY started_at DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
        *scope,
        limit,
        offset,
    )
    total: int = await conn.fetchval(f"SELECT count(*) FROM flow_incidents{where}", *scope)
    return await _with_members(conn, rows), total


async def one(conn: Conn, public_id: UUID, organization_id: int | None) -> ListedFlow | None:
    """The flow incident with that public id, when it is the organization's (any for None)."""
    scope = [] if organization_id is None else [organization_id]
    where = _where(organization_id, f"public_id = ${len(scope) + 1}")
    rows = await conn.fetch(f"{_LISTED}{where}", *scope, public_id)
    found = await _with_members(conn, rows)
    return found[0] if found else None


async def _with_members(conn: Conn, rows: Sequence[asyncpg.Record]) -> list[ListedFlow]:
    members = await conn.fetch(
        "SELECT DISTINCT ON (i.flow_incident_id, i.monitor_id) i.flow_incident_id,"
        " m.public_id AS monitor_public_id, m.name, m.type, m.hostname, m.port, i.started_at,"
        " i.ended_at, i.cause_kind, i.cause, i.countries"
        " FROM incidents i JOIN monitors m ON m.id = i.monitor_id"
        " WHERE i.flow_incident_id = ANY($1::bigint[])"
        " ORDER BY i.flow_incident_id, i.monitor_id, i.started_at DESC, i.id DESC",
        [r["id"] for r in rows],
    )
    by_flow: dict[int, list[ListedMember]] = {}
    for m in members:
        by_flow.setdefault(m["flow_incident_id"], []).append(ListedMember(**dict(m)))
    return [
        ListedFlow(
            **dict(r),
            members=sorted(by_flow.get(r["id"], []), key=lambda x: (x.started_at, x.name)),
        )
        for r in rows
    ]
