"""Results, uptime, latest state per country and trigger-check of a monitor; live agents.

Under `/api/smtp-monitors/{id}/…`, `/api/imap-pop-monitors/{id}/…` and
`/api/roundtrip-monitors/{id}/…`, with the monitor
endpoints' tenancy: another organization's monitor is a 404.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

import asyncpg
import msgspec
from litestar import Router, get, post
from litestar.params import QueryParameter

from controller.db.pool import on_generic_plans
from controller.fleet.live import LiveAgents
from controller.ingest import store as results
from controller.ingest.store import StoredResult
from controller.monitors.kinds import Kind
from controller.scheduling.trigger import MonitorTrigger
from controller.web.agents_view import agents_view
from controller.web.api.errors import ApiError, bad_request
from controller.web.api.monitor_kinds import KindApi
from controller.web.api.monitor_lookup import visible_monitor
from controller.web.api.page import Page, published
from controller.web.api.side_checks import SideChecksOut, side_checks_out
from controller.web.api.side_checks import facts as side_facts
from controller.web.authed_request import AuthedRequest
from controller.web.services import AgentsDep, ClockDep, PoolDep, TriggerDep
from shared.messages import (
    ArcResults,
    AuthResults,
    Hop,
    Phases,
    SelfCheck,
    TlsInfo,
)
from shared.sidechecks.mail_dns import WIRE as MAIL_DNS
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.relay import WIRE as RELAY
from shared.sidechecks.relay import RelayTest
from shared.sidechecks.reverse_dns import WIRE as REVERSE_DNS
from shared.sidechecks.reverse_dns import ReverseDns
from shared.timefmt import iso_ms, iso_ms_or_none, parse_iso

PageParam = Annotated[int, QueryParameter(ge=1, le=1_000_000, description="1-based page number")]
PerPageParam = Annotated[
    int, QueryParameter(name="perPage", ge=1, le=200, description="items per page")
]
CountryParam = Annotated[
    str | None, QueryParameter(max_length=2, description="ISO 3166-1 alpha-2 code")
]
FromParam = Annotated[
    str | None, QueryParameter(name="from", description="ISO-8601 time, scheduled at or after")
]
ToParam = Annotated[
    str | None, QueryParameter(name="to", description="ISO-8601 time, scheduled before")
]
WINDOWS = (("day", timedelta(days=1)), ("week", timedelta(days=7)), ("month", timedelta(days=30)))


class CheckResultOut(msgspec.Struct, rename="camel", kw_only=True):
    """The wire `CheckResult`, plus `storedAt`; `status` may also be `missed` (error kind
    `no_agent`: no live agent in the country, `expired`: no agent ran it in time, or
    `no_seal_key`: its credentials could not be sealed to the country, so it was not sent), and
    `inconclusive` (error kind `inconclusive`: the agent's own path failed its self-check, so
    the failure says nothing about the server; counted like missed)."""

    v: int = 1
    job_id: str
    monitor_id: str
    monitor_type: str
    country: str
    agent_id: str | None
    scheduled_at: str
    started_at: str | None
    finished_at: str | None
    status: str
    error_kind: str | None
    message: str
    banner: str | None
    response_time_ms: float | None
    phases: Phases
    tls: TlsInfo | None
    address: str | None
    capabilities: list[str] | None
    capabilities_before_tls: list[str] | None
    stored_at: str
    # Round-trip monitors only (null for the other kinds).
    folder: str | None = None
    hops: list[Hop] | None = None
    auth_results: AuthResults | None = None
    # The message's ARC chain as found (sets, the topmost seal's `cv`, the topmost
    # ARC-Authentication-Results); null without one, and for the other kinds.
    arc: ArcResults | None = None
    # Deprecated copies of `sideChecks`' facts, deleted by LEGACY_FIELDS_END (docs/stream.md).
    # On the rounds that carried a mail DNS probe (the monitor's `mailDomain`), else null.
    mail_dns: MailDns | None = None
    # SMTP, on the same rounds: the reverse DNS of the server's addresses, else null (as in
    # `sideChecks.reverse_dns`).
    reverse_dns: ReverseDns | None = None
    # SMTP monitors with `relayCheck`, on the same rounds: the open relay test's answers.
    relay: RelayTest | None = None
    side_checks: SideChecksOut = msgspec.field(default_factory=SideChecksOut)


CheckResultPage = Annotated[Page[CheckResultOut], published("CheckResultPage")]


class Counts(msgspec.Struct, rename="camel"):
    """`up`, `down`, `missed`: rounds (missed and inconclusive both in `missed`).
    `uptimePercent` is time, not rounds: `upSeconds` / (`upSeconds` + `downSeconds`), where each
    state lasts from its result to the country's next result (confirmation rounds add no
    weight) and time after a missed or inconclusive round counts for neither; null without
    data."""

    up: int
    down: int
    missed: int
    uptime_percent: float | None
    up_seconds: float = 0.0
    down_seconds: float = 0.0


class UptimeWindow(msgspec.Struct, rename="camel"):
    window: str
    since: str = msgspec.field(name="from")
    until: str = msgspec.field(name="to")
    overall: Counts = msgspec.field(default_factory=lambda: Counts(0, 0, 0, None))
    countries: dict[str, Counts] = msgspec.field(default_factory=dict)


class Uptime(msgspec.Struct, rename="camel"):
    monitor_id: str
    windows: list[UptimeWindow]


class CountryState(msgspec.Struct, rename="camel"):
    country: str
    status: str
    error_kind: str | None
    message: str
    scheduled_at: str
    job_id: str
    consecutive_failures: int
    consecutive_successes: int


class CountryStates(msgspec.Struct, rename="camel"):
    monitor_id: str
    items: list[CountryState]


class TriggeredJob(msgspec.Struct, rename="camel"):
    job_id: str
    country: str
    status: str  # `queued`, or `no_agent` / `no_seal_key` (recorded as a missed result)


class Triggered(msgspec.Struct, rename="camel"):
    """The round a trigger-check ran: `joined`, a round trip's round already in flight, whose
    results are its answer (`scheduledAt` and `jobs` are that round's; nothing new was sent)."""

    monitor_id: str
    scheduled_at: str
    jobs: list[TriggeredJob]
    joined: bool = False


class AgentOut(msgspec.Struct, rename="camel"):
    """A live agent; `selfCheck`: its canaries' last states, the ports none of its canaries
    reach (`blockedPorts`: their jobs go to other agents of the country) and its resolver
    check, as its latest heartbeat said (capped: controller.fleet.self_check); null when the agent
    has no canaries configured."""

    id: str
    country: str
    version: str
    last_seen: str
    started_at: str
    in_flight: int
    capacity: int
    self_check: SelfCheck | None = None


class CountryAgents(msgspec.Struct, rename="camel"):
    """A country: its live agents (the deployment's operators only: `[]` for anyone else) and
    whether an agent serves it now (`live`)."""

    country: str
    agents: list[AgentOut]
    live: bool = True


class AgentsOut(msgspec.Struct, rename="camel"):
    countries: list[CountryAgents]
    total: int


def _running(agents: LiveAgents | None) -> LiveAgents:
    if agents is None:
        raise ApiError(503, "The check pipeline is not running here", code="unavailable")
    return agents


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise bad_request(name, f"{name} must be an ISO-8601 time", "invalid_query") from None


def _result(r: StoredResult) -> CheckResultOut:
    return CheckResultOut(
        job_id=r.job_id,
        monitor_id=str(r.monitor_public_id),
        monitor_type=r.monitor_type,
        country=r.country,
        agent_id=r.agent_id,
        scheduled_at=iso_ms(r.scheduled_at),
        started_at=iso_ms_or_none(r.started_at),
        finished_at=iso_ms_or_none(r.finished_at),
        status=r.status,
        error_kind=r.error_kind,
        message=r.message,
        banner=r.banner,
        response_time_ms=r.response_time_ms,
        phases=r.phases or Phases(),
        tls=r.tls,
        address=r.address,
        capabilities=r.capabilities,
        capabilities_before_tls=r.capabilities_before_tls,
        stored_at=iso_ms(r.stored_at),
        mail_dns=side_facts(r.side, MAIL_DNS),
        reverse_dns=side_facts(r.side, REVERSE_DNS),
        relay=side_facts(r.side, RELAY),
        folder=r.folder,
        hops=r.hops,
        auth_results=r.auth_results,
        arc=r.arc,
        side_checks=side_checks_out(r.side),
    )


async def _results(
    kind: Kind,
    request: AuthedRequest,
    pool: asyncpg.Pool,
    raw_id: str,
    country: str | None,
    since: str | None,
    until: str | None,
    page: int,
    per_page: int,
    now: datetime,
) -> CheckResultPage:
    since_at, until_at = _time(since, "from"), _time(until, "to")
    monitor = await visible_monitor(kind, request, raw_id, pool)
    async with on_generic_plans(pool) as conn:
        rows, total = await results.list_page(
            conn,
            monitor.id,
            country=country.upper() if country else None,
            since=since_at,
            until=until_at,
            limit=per_page,
            offset=(page - 1) * per_page,
            now=now,
        )
    return Page([_result(r) for r in rows], total, page, per_page)


def _counts(rounds: Sequence[int], up_ms: int, down_ms: int) -> Counts:
    share = round(100 * up_ms / (up_ms + down_ms), 4) if up_ms + down_ms else None
    up, down, missed = rounds
    return Counts(up, down, missed, share, up_ms / 1000, down_ms / 1000)


async def _uptime(
    kind: Kind, request: AuthedRequest, pool: asyncpg.Pool, raw_id: str, now: datetime
) -> Uptime:
    """Each window's `from` is when its known time really starts (a monitor younger than the
    window: its first result), `to` now."""
    monitor = await visible_monitor(kind, request, raw_id, pool)
    longest_first = sorted(WINDOWS, key=lambda w: w[1], reverse=True)  # the query's order
    starts = [now - span for _, span in longest_first]
    async with on_generic_plans(pool) as conn:
        rows = await results.counts(conn, monitor.id, starts, now)
        times = [await results.state_time(conn, monitor.id, start, now) for start in starts]
    windows: dict[str, UptimeWindow] = {}
    for pos, (name, _) in enumerate(longest_first):
        rounds = {r.country: r.windows[pos] for r in rows}
        spent = {t.country: t for t in times[pos]}
        covered = min((t.covered_from for t in times[pos]), default=starts[pos])
        window = windows[name] = UptimeWindow(name, iso_ms(covered), iso_ms(now))
        totals = [0, 0, 0, 0, 0]
        for country in sorted(rounds.keys() | spent.keys()):
            counted = rounds.get(country)
            c = [counted.up, counted.down, counted.missed] if counted else [0, 0, 0]
            t = spent.get(country)
            ms = [t.up_ms, t.down_ms] if t else [0, 0]
            if any(c) or any(ms):
                window.countries[country] = _counts(c, *ms)
            totals = [a + b for a, b in zip(totals, c + ms, strict=True)]
        window.overall = _counts(totals[:3], totals[3], totals[4])
    return Uptime(str(monitor.public_id), [windows[name] for name, _ in WINDOWS])


async def _countries(
    kind: Kind, request: AuthedRequest, pool: asyncpg.Pool, raw_id: str
) -> CountryStates:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    async with pool.acquire() as conn:
        rows = await results.country_states(conn, monitor.id)
    return CountryStates(
        str(monitor.public_id),
        [
            CountryState(
                r.country,
                r.last_status,
                r.last_error_kind,
                r.last_message,
                iso_ms(r.last_scheduled_at),
                r.last_job_id,
                r.consecutive_failures,
                r.consecutive_successes,
            )
            for r in rows
        ],
    )


async def _trigger(
    kind: Kind, request: AuthedRequest, pool: asyncpg.Pool, raw_id: str, trigger: MonitorTrigger
) -> Triggered:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    plan = await trigger.run(request.user, monitor)
    if plan.joined is not None:
        return Triggered(
            str(monitor.public_id),
            iso_ms(plan.joined.scheduled_at),
            [TriggeredJob(job_id, cc, "queued") for cc, job_id in plan.joined.jobs],
            joined=True,
        )
    # Logins to one account go out one country after another: the later ones are queued too.
    queued = [*plan.jobs, *(j for _, j in plan.deferred)]
    jobs = [TriggeredJob(j.job_id, j.country, "queued") for j in queued]
    jobs += [TriggeredJob(r.job_id, r.country, r.error_kind or "") for r in plan.missed]
    return Triggered(
        str(monitor.public_id),
        iso_ms(plan.scheduled_at),
        sorted(jobs, key=lambda j: j.country),
    )


def router(api: KindApi) -> Router:
    """`api`'s kind's results, uptime, latest state per country and trigger-check."""
    kind = api.kind

    async def results(
        request: AuthedRequest,
        pool: PoolDep,
        clock: ClockDep,
        monitor_id: str,
        country: CountryParam = None,
        since: FromParam = None,
        until: ToParam = None,
        page: PageParam = 1,
        per_page: PerPageParam = 50,
    ) -> CheckResultPage:
        return await _results(
            kind, request, pool, monitor_id, country, since, until, page, per_page, clock.now()
        )

    async def uptime(
        request: AuthedRequest, pool: PoolDep, clock: ClockDep, monitor_id: str
    ) -> Uptime:
        return await _uptime(kind, request, pool, monitor_id, clock.now())

    async def countries(request: AuthedRequest, pool: PoolDep, monitor_id: str) -> CountryStates:
        return await _countries(kind, request, pool, monitor_id)

    async def trigger_check(
        request: AuthedRequest,
        pool: PoolDep,
        monitor_id: str,
        trigger: TriggerDep,
    ) -> Triggered:
        return await _trigger(kind, request, pool, monitor_id, trigger)

    one, label = api.by_id, api.label
    return Router(
        api.item_path,
        tags=[api.tag],
        route_handlers=[
            get("/results", summary=f"{label} results, newest first")(one(results)),
            get("/uptime", summary=f"{label} uptime per country and overall")(one(uptime)),
            get("/countries", summary=f"{label} latest state per country")(one(countries)),
            post("/trigger-check", status_code=202, summary=f"Run {api.a_label} round now")(
                one(trigger_check)
            ),
        ],
    )


@get("/api/agents", tags=["agents"], summary="Live agents per country")
async def list_agents(
    request: AuthedRequest, pool: PoolDep, agents: AgentsDep, clock: ClockDep
) -> AgentsOut:
    """Every live agent for the deployment's operators; for anyone else whether an agent
    serves each of the countries served now and those their monitors list
    (controller/web/agents_view.py); `total`: the agents listed."""
    seen = await agents_view(pool, request.user, _running(agents), clock.now())
    countries = [
        CountryAgents(
            c.country,
            [
                AgentOut(
                    b.agent_id,
                    b.country,
                    b.version,
                    b.seen_at,
                    b.started_at,
                    b.in_flight,
                    b.capacity,
                    b.self_check,
                )
                for b in c.agents
            ],
            c.live,
        )
        for c in seen
    ]
    return AgentsOut(countries, sum(len(c.agents) for c in countries))
