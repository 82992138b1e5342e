"""The asyncpg pool, with JSONB encoded by msgspec, on one PostgreSQL host or on the first
writable one of several (a primary and its standbys: libpq's multi-host URL)."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from shared.guards import BrokenInvariant

_encode = msgspec.json.encode
_decode = msgspec.json.decode


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: _encode(v).decode(),
        decoder=_decode,
        schema="pg_catalog",
        format="text",
    )


# Sessions in UTC: a time without an offset (from JSON handed to PostgreSQL) means UTC, as on
# the wire, whatever the server's own TimeZone.
_SERVER_SETTINGS = {"timezone": "UTC"}

# The longest statement kept prepared on a connection (asyncpg's own bound is 15 KiB): one
# longer is parsed, analysed and planned again on every call, milliseconds per batch for the
# ingester's statement (`controller.ingest.store`).
MAX_CACHED_STATEMENT = 64 * 1024


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a released connection needs beyond asyncpg's own rollback of an open transaction:
    nothing, as no query here leaves session state behind (LISTEN, a SET, a cursor; the one
    session advisory lock, the OAuth2 token service's, is released by its holder, which closes
    the connection when it cannot). asyncpg's default sends `RESET ALL` and more: a round trip
    per release."""


# PostgreSQL, or the connection to it, away for now: a lost or refused connection, a server
# starting or shutting down, no writable host yet (mid-failover, NoHostUsable), a standby that
# answered as read-only. What failed may work in seconds; any other error would fail again.
DB_AWAY: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.ReadOnlySQLTransactionError,
)


# A new connection's wait on each host of a multi-host DATABASE_URL, unless the URL's
# `connect_timeout` (libpq's, per host as there) says otherwise: asyncpg's own timeout spans
# all the hosts, so a host that takes the connection and never answers (a primary's machine
# gone dark) would use it all, and the standby after it never be tried.
CONNECT_TIMEOUT_PER_HOST_S = 10.0
_HOSTS = re.compile(
    r"(?P<head>[a-z]+://(?:[^@/?#]*@)?)(?P<hosts>[^/?#]*)(?P<path>[^?#]*)\??(?P<query>.*)"
)


class NoHostUsable(ConnectionError):
    """Every host of a multi-host URL refused, timed out or was not what the URL asks for (a
    standby for `read-write`): as while a single host is away (a ConnectionError, so callers
    retry it as they do a lost connection), and during a failover, before a standby is
    promoted."""


class Hosts:
    """The hosts of a multi-host URL (`postgresql://u:p@h1:5432,h2:5432/db?...`), tried one
    at a time, each with its own timeout, the one that last gave a connection first: after a
    failover, new connections go to the new primary without waiting on the old one. asyncpg
    checks `target_session_attrs` on each (a standby is passed over for `read-write`)."""

    def __init__(self, url: str) -> None:
        parts = _HOSTS.fullmatch(url)
        if parts is None:
            raise BrokenInvariant("pool.Hosts.__init__: not a postgresql:// URL")
        query = parse_qsl(parts["query"], keep_blank_values=True)
        timeouts = [float(v) for k, v in query if k == "connect_timeout"]
        self.timeout_s = timeouts[-1] if timeouts else CONNECT_TIMEOUT_PER_HOST_S
        self.timeout_named = bool(timeouts)
        kept = urlencode([(k, v) for k, v in query if k != "connect_timeout"])
        rest = parts["path"] + (f"?{kept}" if kept else "")
        self.urls = [f"{parts['head']}{host}{rest}" for host in parts["hosts"].split(",")]
        self._first = 0

    async def connect(self, _dsn: object = None, **kwargs: Any) -> asyncpg.Connection:
        """asyncpg's `connect` for the pool (`_dsn`: the pool's URL, stood for by the hosts)."""
        count = len(self.urls)
        error: Exception | None = None
        for n in range(self._first, self._first + count):
            try:
                conn: asyncpg.Connection = await asyncpg.connect(
                    self.urls[n % count], timeout=self.timeout_s, **kwargs
                )
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.TargetServerAttributeNotMatched,  # a standby, for `read-write`
            ) as exc:
                error = exc
                continue
            self._first = n % count
            return conn
        raise NoHostUsable(
            f"none of the {count} hosts of DATABASE_URL took a connection: {error!r}"
        ) from error


def _hosts(url: str) -> Hosts | None:
    """The hosts of `url` when it names several or a `connect_timeout` (which asyncpg would
    send to the server as a setting), else None: asyncpg's own connect."""
    hosts = Hosts(url)
    return hosts if len(hosts.urls) > 1 or hosts.timeout_named else None


async def create_pool(
    url: str, max_size: int = 20, *, application_name: str | None = None, **kwargs: Any
) -> asyncpg.Pool:
    """`application_name` names the pool's sessions in `pg_stat_activity` and PostgreSQL's log
    (the controller: its roles), unless the URL names them itself."""
    settings = dict(_SERVER_SETTINGS)
    if application_name and "application_name" not in parse_qs(urlsplit(url).query):
        settings["application_name"] = application_name
    hosts = _hosts(url)
    if hosts is not None:
        kwargs.setdefault("connect", hosts.connect)
    pool = await asyncpg.create_pool(
        url,
        min_size=min(2, max_size),
        max_size=max_size,
        init=_init,
        reset=_keep_session,
        server_settings=settings,
        max_cacheable_statement_size=MAX_CACHED_STATEMENT,
        **kwargs,
    )
    if pool is None:
        raise BrokenInvariant("pool.create_pool: pool is unset")
    return pool


async def connect(url: str) -> asyncpg.Connection:
    hosts = _hosts(url)
    conn = await (hosts.connect if hosts is not None else asyncpg.connect)(
        url, server_settings=_SERVER_SETTINGS, max_cacheable_statement_size=MAX_CACHED_STATEMENT
    )
    await _init(conn)
    return conn


# What query modules take: a plain connection or one borrowed from the pool.
Conn = asyncpg.Connection | PoolConnectionProxy


async def plan_generically(conn: Conn) -> None:
    """For the rest of the caller's transaction, run every statement on its generic plan (made
    once per connection, its partitions pruned as it starts) instead of one planned again for
    each call's values.

    For statements that read recent results through `check_results` (a view over four tables
    with a partition a day), planning with the values prunes the partitions but costs more than
    the read: 2-3 ms of PostgreSQL's CPU a call on a deployment's ~215 partitions, against
    0.3-0.5 ms on the generic plan. PostgreSQL keeps choosing the custom plans, whose estimates
    count only the partitions left. A `SET LOCAL`: nothing outlives the transaction."""
    await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")


@asynccontextmanager
async def on_generic_plans(pool: asyncpg.Pool) -> AsyncIterator[PoolConnectionProxy]:
    """A connection in a transaction whose statements run on generic plans
    (`plan_generically`), for a request that reads a monitor's results: the API's and the
    console's reads cost PostgreSQL a fraction of their per-call plans on a deployment's
    partitions (`python -m bench reads`)."""
    async with pool.acquire() as conn, conn.transaction():
        await plan_generically(conn)
        yield conn


async def ping(conn: Conn, within_s: float) -> None:
    """Ask the server for nothing; raises as asyncpg does when it does not answer in time."""
    await conn.fetchval("SELECT 1", timeout=within_s)
