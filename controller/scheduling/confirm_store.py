"""Confirmation rounds: the alerter asks for them, the scheduler sends them
(`controller.scheduling.confirm`
has the rules). The caller owns the transaction."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from controller.db.pool import Conn
from controller.ingest import store as results
from controller.monitors import limits_store as limits
from controller.scheduling import confirm

# Sent rows are kept this long at least (fair shares count the last minute); a claim removes older.
KEEP = timedelta(hours=1)


async def request(
    conn: Conn,
    monitor_id: int,
    after_round: datetime,
    now: datetime,
    organization_id: int,
    cost_s: float,
) -> str:
    """Ask for a confirmation of the failing round scheduled `after_round`: `requested` (it
    waits for a slot of the global budget, `claim`), or `asked` (it was, by an earlier
    evaluation), or `org_capped` (the monitor's organization's allowance for triggered checks
    had no `cost_s` left)."""
    asked = await conn.fetchval(
        "SELECT 1 FROM confirmation_rounds WHERE monitor_id = $1 AND after_round = $2",
        monitor_id,
        after_round,
    )
    if asked:
        return "asked"
    if await limits.take_trigger(conn, "organizations", organization_id, cost_s, 60.0, now):
        return "org_capped"
    added: str = await conn.execute(
        "INSERT INTO confirmation_rounds (monitor_id, after_round, requested_at)"
        " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        monitor_id,
        after_round,
        now,
    )
    return "requested" if added == "INSERT 0 1" else "asked"


@dataclass
class Claimed:
    """What one `claim` did: the (monitor, failing round) to send now, and how many waiting
    requests were dropped unsent (`expired`: waited a whole interval of their monitor, so the
    next scheduled round has come)."""

    rounds: list[tuple[int, datetime]] = field(default_factory=list)
    expired: int = 0


async def claim(
    conn: Conn, now: datetime, per_minute: int, limit: int, skip: Sequence[int] = ()
) -> Claimed:
    """The confirmations to send `now`, marked sent: as many as the global budget
    (`per_minute`, a rate shared by replicas) has slots, at most `limit`, given fairly between
    organizations (`controller.scheduling.confirm.fair_pick`). Nothing while another replica claims
    (it
    holds the budget until its transaction ends). Not the monitors in `skip` (their OAuth2
    tokens are being fetched)."""
    budget = await conn.fetchrow("SELECT tat FROM confirmation_budget FOR UPDATE SKIP LOCKED")
    if budget is None:
        return Claimed()
    await conn.execute(
        "DELETE FROM confirmation_rounds WHERE requested_at < $1 AND sent_at IS NOT NULL",
        now - KEEP,
    )
    expired = await conn.fetch(
        "DELETE FROM confirmation_rounds c USING monitors m WHERE m.id = c.monitor_id"
        " AND c.sent_at IS NULL AND c.requested_at + m.check_interval * interval '1 s' < $1"
        " RETURNING 1",
        now,
    )
    n = min(confirm.slots(budget["tat"], now, per_minute), limit)
    if n <= 0:
        return Claimed(expired=len(expired))
    rows = await conn.fetch(
        "SELECT monitor_id, after_round, organization_id, requested_at FROM ("
        "  SELECT c.monitor_id, c.after_round, m.organization_id, c.requested_at,"
        "   row_number() OVER (PARTITION BY m.organization_id"
        "    ORDER BY c.requested_at, c.monitor_id, c.after_round) AS nth"
        "  FROM confirmation_rounds c JOIN monitors m ON m.id = c.monitor_id"
        "  WHERE c.sent_at IS NULL AND c.monitor_id <> ALL($2::bigint[])) p WHERE nth <= $1",
        n,
        list(skip),
    )
    recent = await conn.fetch(
        "SELECT m.organization_id, count(*) AS sent FROM confirmation_rounds c"
        " JOIN monitors m ON m.id = c.monitor_id WHERE c.sent_at > $1 GROUP BY 1",
        now - confirm.RECENT,
    )
    chosen = confirm.fair_pick(
        [confirm.Pending(**dict(r)) for r in rows],
        {r["organization_id"]: r["sent"] for r in recent},
        n,
    )
    if chosen:
        await conn.execute(
            "UPDATE confirmation_rounds c SET sent_at = $3"
            " FROM unnest($1::bigint[], $2::timestamptz[]) AS s(monitor_id, after_round)"
            " WHERE c.monitor_id = s.monitor_id AND c.after_round = s.after_round",
            [p.monitor_id for p in chosen],
            [p.after_round for p in chosen],
            now,
        )
        await conn.execute(
            "UPDATE confirmation_budget SET tat = $1",
            confirm.spent(budget["tat"], now, per_minute, len(chosen)),
        )
    return Claimed([(p.monitor_id, p.after_round) for p in chosen], len(expired))


async def failed_agents(
    conn: Conn, rounds: Sequence[tuple[int, datetime]]
) -> dict[int, dict[str, set[str]]]:
    """Per monitor and country, the agents whose check of the failing round failed."""
    rows = await conn.fetch(
        "SELECT c.monitor_id, r.country, r.agent_id"
        " FROM unnest($1::bigint[], $2::timestamptz[]) AS c(monitor_id, at)"
        " CROSS JOIN LATERAL (SELECT r.country, r.agent_id FROM check_results r"
        "  WHERE r.monitor_id = c.monitor_id AND r.scheduled_at = c.at"
        "  AND r.hour = date_trunc('hour', c.at, 'UTC')"
        # OFFSET 0 keeps the subquery a subquery: its conditions reach the view's indexes
        "  AND r.status = 'down' AND r.agent_id IS NOT NULL OFFSET 0) r",
        [m for m, _ in rounds],
        [at for _, at in rounds],
    )
    found: dict[int, dict[str, set[str]]] = {}
    for r in rows:
        found.setdefault(r["monitor_id"], {}).setdefault(r["country"], set()).add(r["agent_id"])
    return found


async def give_back(conn: Conn, rounds: Sequence[tuple[int, datetime]]) -> None:
    """Claimed confirmations not sent after all (their OAuth2 tokens are being fetched): they
    wait again, and a later claim sends them."""
    if rounds:
        await conn.execute(
            "UPDATE confirmation_rounds c SET sent_at = NULL"
            " FROM unnest($1::bigint[], $2::timestamptz[]) AS s(monitor_id, after_round)"
            " WHERE c.monitor_id = s.monitor_id AND c.after_round = s.after_round",
            [m for m, _ in rounds],
            [at for _, at in rounds],
        )


# A host name as the flow rules compare it (`controller.alerting.flows.host`): trimmed, lower
# case, no trailing dot.
_HOST = "lower(rtrim(btrim({}), '.'))"
# The monitors `s` that may be `m`'s siblings: one customer's (two customers' are never
# checked or told together), not disabled. Read first, along `monitors_customer`, so no
# other customer's monitor is read, nor its addresses.
_CANDIDATE = (
    "s.customer_id = m.customer_id AND s.organization_id = m.organization_id"
    " AND s.status <> 'disabled'"
)
# Of those, `m`'s siblings by name: the same host name (any port or protocol), or one
# declaring the other in `dependsOn` (by public id or host name).
_BY_NAME = (
    f"({_HOST.format('s.hostname')} = {_HOST.format('m.hostname')}"
    f"  OR EXISTS (SELECT 1 FROM unnest(s.depends_on) d WHERE {_HOST.format('d')}"
    f"   IN (m.public_id::text, {_HOST.format('m.hostname')}))"
    f"  OR EXISTS (SELECT 1 FROM unnest(m.depends_on) d WHERE {_HOST.format('d')}"
    f"   IN (s.public_id::text, {_HOST.format('s.hostname')})))"
)


# Monitors on a declared name whose addresses are read (any of them shows the name's), and
# reverse DNS rows read per SMTP monitor (about one DNS round's countries): the bounds of
# `controller.alerting.flow_store.declared_addresses` too.
NAMED_MAX = 4
PTR_ROWS = 4


def _seen(monitor: str, since: str, until: str, limit: str) -> str:
    """SQL: the addresses `monitor`'s results scheduled from `since` to `until` (the reader's
    now) connected to, of each's latest `limit` rows (`results.RECENT_ADDRESSES`)."""
    return results.RECENT_ADDRESSES.format(monitor=monitor, since=since, until=until, limit=limit)


def _declared_at(declaring: str, other: str, since: str, until: str, limit: str) -> str:
    """SQL: the monitor `declaring` names in `dependsOn` a host name seen at an address of
    `other`'s: a name the customer's monitors on it (the first `NAMED_MAX`, not round trips)
    connected to an address `other`'s recent results did (`_seen`), or (`other` an SMTP
    monitor) a name its latest `PTR_ROWS` reverse DNS rows since `since` confirm (a PTR name
    resolving back to the address it connected to). As `flow_store.declared_addresses` finds a
    name's addresses."""
    name = _HOST.format("dn.d")
    return (
        f"(cardinality({declaring}.depends_on) > 0 AND EXISTS (SELECT 1"
        f" FROM unnest({declaring}.depends_on) dn(d) WHERE EXISTS (SELECT 1 FROM"
        "  (SELECT n.id FROM monitors n WHERE n.customer_id = m.customer_id"
        f"   AND n.type <> 'roundtrip' AND {_HOST.format('n.hostname')} = {name}"
        f"   ORDER BY n.id LIMIT {NAMED_MAX}) n"
        f"  WHERE EXISTS (SELECT 1 FROM {_seen('n.id', since, until, limit)} na"
        f"   WHERE na.address IN {_seen(f'{other}.id', since, until, limit)}))"
        f" OR ({other}.type = 'smtp' AND EXISTS (SELECT 1 FROM (SELECT r.facts"
        f"  FROM side_reverse_dns r WHERE r.monitor_id = {other}.id AND r.scheduled_at >= {since}"
        f"  ORDER BY r.scheduled_at DESC LIMIT {PTR_ROWS}) r CROSS JOIN LATERAL"
        "  jsonb_array_elements(CASE WHEN jsonb_typeof(r.facts -> 'addresses') = 'array'"
        "   THEN r.facts -> 'addresses' ELSE '[]' END) p(ptr)"
        "  WHERE jsonb_typeof(p.ptr -> 'confirmed') = 'array'"
        "  AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(p.ptr -> 'confirmed') c"
        f"   WHERE {_HOST.format('c')} = {name})))))"
    )


def _sibling(since: str, until: str, limit: str) -> str:
    """The one rule of `m`'s siblings `s` (`siblings` asks them, `unsettled` waits for them):
    `_CANDIDATE`s that are siblings `_BY_NAME`, or (with the SQL value `since` not NULL)
    whose recent results connected to an address `m`'s did (`_seen`): each's latest
    `limit` rows naming one (`results.RECENT_ADDRESSES`, as `results.recent_addresses` reads
    them for the grouping), not round trips (their results name one address for two legs),
    or one declaring in `dependsOn` a name seen at an address of the other's (`_declared_at`).
    These are the host names `controller.alerting.flows.same_server` takes for one server."""
    return (
        f"{_CANDIDATE} AND ({_BY_NAME} OR ({since}::timestamptz IS NOT NULL"
        " AND ((s.type <> 'roundtrip' AND m.type <> 'roundtrip'"
        f"  AND EXISTS (SELECT 1 FROM {_seen('s.id', since, until, limit)} sa"
        f"   WHERE sa.address IN {_seen('m.id', since, until, limit)}))"
        f" OR {_declared_at('s', 'm', since, until, limit)}"
        f" OR {_declared_at('m', 's', since, until, limit)})))"
    )


# A confirmation round of the monitor `s` (its alert state `a`) asked since $2 whose round is
# not judged yet: unsent, or sent after the last round the alerter judged.
_UNJUDGED = (
    "EXISTS (SELECT 1 FROM confirmation_rounds c"
    " WHERE c.monitor_id = s.id AND c.requested_at > $2 AND (c.sent_at IS NULL"
    "  OR a.last_round_at IS NULL OR a.last_round_at < date_trunc('milliseconds', c.sent_at)))"
)


# `siblings`: $1 the monitor, $2 `confirm.RECENT` ago, $3 recovering, $4 the limit, $5 the
# addresses' since (NULL: none), $6 `results.ADDRESSES_MAX`, $7 now.
SIBLINGS_QUERY = (
    "SELECT s.id AS monitor_id, s.public_id::text, s.organization_id, s.allowed_country_codes"
    f" FROM monitors m JOIN monitors s ON s.id <> m.id AND {_sibling('$5', '$7', '$6')}"
    " LEFT JOIN monitor_alert_state a ON a.monitor_id = s.id"
    " LEFT JOIN monitor_alert_settings ms ON ms.monitor_id = s.id"
    " LEFT JOIN organization_alert_settings os ON os.organization_id = s.organization_id"
    " WHERE m.id = $1 AND coalesce(ms.confirm_failures, os.confirm_failures, true)"
    " AND CASE WHEN $3 THEN a.open_incident_id IS NOT NULL AND a.consecutive_up_rounds = 0"
    "  ELSE a.open_incident_id IS NULL AND coalesce(a.consecutive_down_rounds, 0) = 0 END"
    " AND NOT EXISTS (SELECT 1 FROM login_backoff b WHERE b.monitor_id = s.id)"
    f" AND NOT {_UNJUDGED} ORDER BY s.id LIMIT $4"
)


class Sibling(msgspec.Struct, frozen=True):
    """A monitor checked at once with a failing (or recovering) one (`_sibling`)."""

    monitor_id: int
    public_id: str
    organization_id: int
    allowed_country_codes: list[str] | None


async def siblings(
    conn: Conn,
    monitor_id: int,
    now: datetime,
    *,
    recovering: bool,
    limit: int = confirm.SIBLINGS_MAX,
    addresses_since: datetime | None = None,
) -> list[Sibling]:
    """The siblings of `monitor_id` (`_sibling`: the same host name, `dependsOn` either way,
    or with `addresses_since` a host name connected to one of its addresses) a confirmation
    round of theirs would tell something new: with no incident open and no failing run when
    the monitor started failing; with an incident open and no passing run when it recovers.
    Not those whose confirmations are off, whose logins are backed off, or with a
    confirmation round asked within `confirm.RECENT` and not judged yet (`_UNJUDGED`:
    monitors of one host failing together ask once each); the first `limit` by id."""
    rows = await conn.fetch(
        SIBLINGS_QUERY,
        monitor_id,
        now - confirm.RECENT,
        recovering,
        limit,
        addresses_since,
        results.ADDRESSES_MAX,
        now,
    )
    return [Sibling(**dict(r)) for r in rows]


async def unsettled(
    conn: Conn,
    monitor_ids: Sequence[int],
    now: datetime,
    *,
    addresses_since: datetime | None = None,
) -> int:
    """How many siblings of `monitor_ids` (`_sibling`, the rule `siblings` asks them by: with
    `addresses_since`, host names connected to one of their addresses too), not among them,
    are still being checked: in a failing run with no incident open yet, with a confirmation
    round asked within `confirm.RECENT` whose round is not judged yet (`_UNJUDGED`), or whose
    results the alerter has to judge within `confirm.JUDGING` (its `alert_queue` row: waiting,
    leased, or a round of its closing)."""
    found: int = await conn.fetchval(
        "SELECT count(DISTINCT s.id) FROM monitors m"
        f" JOIN monitors s ON s.id <> ALL($1::bigint[]) AND {_sibling('$4', '$6', '$5')}"
        " LEFT JOIN monitor_alert_state a ON a.monitor_id = s.id"
        " WHERE m.id = ANY($1::bigint[])"
        " AND ((a.consecutive_down_rounds > 0 AND a.open_incident_id IS NULL)"
        f"  OR {_UNJUDGED}"
        "  OR EXISTS (SELECT 1 FROM alert_queue q WHERE q.monitor_id = s.id AND q.due_at <= $3))",
        list(monitor_ids),
        now - confirm.RECENT,
        now + confirm.JUDGING,
        addresses_since,
        results.ADDRESSES_MAX,
        now,
    )
    return found
