"""The controller's Prometheus metrics, served by the API at `GET /metrics`.

Labels stay few and bounded (country, type, status, error kind, channel, method, route template,
status class), never a monitor, job or user: one series per monitor would grow without limit.
The code that does the work calls one function here per event; gauges that need a question to
PostgreSQL or NATS (outbox backlog, ingest lag) are sampled by `sample_every` instead.

The live agents' self-checks are read off this controller's view of them whenever the registry is
collected (`watch_agents`), so an agent that is gone leaves no series behind; they are bounded by
AGENTS_PER_COUNTRY_MAX per country and the caps of controller.fleet.self_check per agent.
"""

import asyncio
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from controller.jobs.result_kinds import INCONCLUSIVE, MISSED_KINDS, ResultRow
from shared.loop import run_every
from shared.messages import ERROR_KINDS, AgentHeartbeat, CheckJob, CheckResult
from shared.subjects import RESULTS_STREAM

log = structlog.get_logger(__name__)

SAMPLE_EVERY_S = 5.0
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

JOBS_PUBLISHED = Counter(
    "mailprobe_jobs_published",
    "check jobs published on mon.jobs.CC (acked by JetStream)",
    ["country"],
)
LATENESS = Histogram(
    "mailprobe_schedule_lateness_seconds",
    "publish time minus due time of a scheduled round",
    buckets=LATENESS_BUCKETS,
)
NO_AGENT = Counter(
    "mailprobe_no_agent_rounds",
    "rounds recorded as no_agent: the country had no live agent",
    ["country"],
)
NO_SEAL_KEY = Counter(
    "mailprobe_no_seal_key_rounds",
    "rounds with credentials recorded as no_seal_key: SEAL_PUBLIC_KEYS_DIR has no key for the "
    "country, so the job was not sent",
    ["country"],
)
RESULTS_INGESTED = Counter(
    "mailprobe_results_ingested",
    "results taken from RESULTS and committed (repeats included); error_kind none when up",
    ["country", "status", "error_kind"],
)
RESULTS_REFUSED = Counter(
    "mailprobe_results_refused",
    "results the ingester moved aside unstored, by why: undecodable, wrong_subject (its body"
    " names another subject or country), unsent_round (its job id is not of a round sent to"
    " its country), refused_value (PostgreSQL refused a value)",
    ["reason"],
)
SIDE_FACTS_DROPPED = Counter(
    "mailprobe_side_check_facts_dropped",
    "side facts the ingester dropped from a result it kept, by side check (`unknown`: a name"
    " this controller does not know) and why (`malformed`: they do not fit its types;"
    " `unasked`: no round of the result's monitor asks that side check, or its job did not;"
    " `unsealed`: the job's sealed asks were not echoed, or do not open;"
    " `unasked_names`: cut to the names its job asked; `inconclusive`: the result's agent's own"
    " path failed; `legacy_fields`: sent in the fields of agents that predate `sideChecks` by"
    " an agent that echoes sealed asks)",
    ["side_check", "reason"],
)
SIDE_CHECK_ERRORS = Counter(
    "mailprobe_side_check_errors",
    "side checks a result reports gave no facts, by side check and why (`timeout`: past the"
    " job's side check deadline; `internal`: the agent's side check raised; `malformed_ask`:"
    " the job's ask did not fit it)",
    ["side_check", "kind"],
)
RESULTS_CLAMPED = Counter(
    "mailprobe_results_clamped",
    "results whose startedAt or finishedAt (`field`) lay outside their job's window and were"
    " moved into it (controller/ingest/job_window.py)",
    ["field"],
)
INGEST_BATCH = Histogram(
    "mailprobe_ingest_batch_seconds",
    "time to store and ack one batch of results",
    buckets=LATENCY_BUCKETS,
)
INGEST_LAG = Gauge(
    "mailprobe_ingest_lag_messages",
    "results waiting for the ingest consumer (num_pending), sampled",
)
INGEST_ACK_PENDING = Gauge(
    "mailprobe_ingest_ack_pending_messages",
    "results delivered to the ingest consumer and not yet acked, sampled",
)
ALERT_EVALUATIONS = Counter(
    "mailprobe_alert_evaluations",
    "queued monitors this process's alerter evaluated (leased, judged and released)",
)
NOTIFICATIONS = Counter(
    "mailprobe_notifications",
    "notification delivery attempts by channel and outcome (sent, failed)",
    ["channel", "outcome"],
)
NOTIFICATIONS_DROPPED = Counter(
    "mailprobe_notifications_dropped",
    "notifications dropped unsent past their organization's hourly budget, by the budget's"
    " source and channel family",
    ["source", "channel"],
)
OUTBOX_PENDING = Gauge(
    "mailprobe_outbox_pending",
    "notifications waiting in the outbox (due or backing off), sampled",
)
CONFIRMATIONS = Counter(
    "mailprobe_confirmation_rounds",
    "confirmation rounds of failing rounds: requested by the alerter, capped (over "
    "CONFIRM_ROUNDS_PER_MINUTE, not requested), org_capped (the organization's triggered "
    "checks of ORG_MAX_CHECKS_PER_MINUTE used up, not requested), sent by the scheduler",
    ["outcome"],
)
FLOW_JOINS = Counter(
    "mailprobe_flow_incident_joins",
    "monitors' outages that joined an open flow incident (one mail-flow problem) instead of"
    " opening their own, by relation: same server, declared, login at the same time",
    ["relation"],
)
LOGIN_BACKOFF = Counter(
    "mailprobe_login_backoff",
    "monitors whose credentials were rejected and whose logins were backed off (backed_off, "
    "counted per rejected round), or resumed after a login or new credentials were judged",
    ["outcome"],
)
REPORTS = Counter(
    "mailprobe_reports",
    "TLS-RPT and DMARC aggregate reports received, by kind (tls, dmarc, unknown), way (https,"
    " mail) and outcome (stored, or the reason it was rejected)",
    ["kind", "via", "outcome"],
)
API_REQUESTS = Histogram(
    "mailprobe_api_request_seconds",
    "API request latency by method, route template and status class",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
API_CONNECTIONS_CUT = Counter(
    "mailprobe_api_connections_cut",
    "API connections refused or closed by the front's bounds: address_full, replica_full"
    " (refused at a cap), gave_way (idle, closed for a new one at the replica's cap), unread"
    " (an answer not taken within API_WRITE_SECONDS)",
    ["reason"],
)
API_THROTTLED = Counter(
    "mailprobe_api_throttled",
    "API requests answered 429 because their source address was past"
    " API_REQUESTS_PER_SECOND_PER_ADDRESS (its burst spent)",
)


SIDE_CHECK_FACTS = Counter(
    "mailprobe_side_check_facts_total",
    "Side checks' facts stored (a round's answer from one country; a report judged), by side check",
    ["side_check"],
)


def side_checks_known(names: Iterable[str]) -> None:
    """Each side check's series, at 0 until its first facts (and the refusals')."""
    for name in names:
        SIDE_CHECK_FACTS.labels(name)
    for reason in REFUSAL_REASONS:
        RESULTS_REFUSED.labels(reason)


def side_check_facts(name: str, n: int = 1) -> None:
    SIDE_CHECK_FACTS.labels(name).inc(n)


# Why the ingester moves a result aside (`mailprobe_results_refused_total{reason}`).
REFUSAL_REASONS = ("undecodable", "wrong_subject", "unsent_round", "refused_value")


def result_refused(reason: str) -> None:
    RESULTS_REFUSED.labels(reason).inc()


def result_clamped(field: str) -> None:
    RESULTS_CLAMPED.labels(field).inc()


def side_facts_dropped(side_check: str, reason: str) -> None:
    """`side_check`: a registered name, else `unknown` (an agent's name is no label)."""
    SIDE_FACTS_DROPPED.labels(side_check, reason).inc()


def side_check_error(side_check: str, kind: str) -> None:
    """`side_check`: a registered name; `kind`: one of SIDE_CHECK_ERROR_KINDS."""
    SIDE_CHECK_ERRORS.labels(side_check, kind).inc()


def exposition() -> tuple[bytes, str]:
    """The registry in the text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class AgentsView(Protocol):
    def agents(self) -> list[AgentHeartbeat]: ...


_VIEWS: set[AgentsView] = set()


def watch_agents(view: AgentsView) -> None:
    """Export `view`'s live agents' self-checks (controller.fleet.live.LiveAgents, once started)."""
    _VIEWS.add(view)


def unwatch_agents(view: AgentsView) -> None:
    _VIEWS.discard(view)


class _SelfChecks(Collector):
    """Per live agent: its blocked ports (a series each, 1), its canaries (1 ok, 0 failing,
    none before the first run) and its resolver check, read off the watched views (an agent
    seen by two is exported once)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        agent = ["country", "agent"]
        blocked = GaugeMetricFamily(
            "mailprobe_live_agent_port_blocked",
            "1 for each port none of the agent's canaries reaches (its jobs go to other agents)",
            labels=[*agent, "port"],
        )
        canary = GaugeMetricFamily(
            "mailprobe_live_agent_canary_ok",
            "the agent's self-check canary: 1 ok, 0 failing (absent until it first ran)",
            labels=[*agent, "kind", "target"],
        )
        resolver = GaugeMetricFamily(
            "mailprobe_live_agent_resolver_ok",
            "the agent's resolver check: 1 ok, 0 failing (absent when none ran)",
            labels=agent,
        )
        live: dict[tuple[str, str], AgentHeartbeat] = {}
        for view in list(_VIEWS):
            for a in view.agents():
                live.setdefault((a.country, a.agent_id), a)
        for key, a in sorted(live.items()):
            if (check := a.self_check) is None:
                continue
            for port in check.blocked_ports:
                blocked.add_metric([*key, str(port)], 1.0)
            for c in check.canaries:
                if c.ok is not None:
                    canary.add_metric([*key, c.kind, c.target], float(c.ok))
            if check.resolver_ok is not None:
                resolver.add_metric(list(key), float(check.resolver_ok))
        yield from (blocked, canary, resolver)


REGISTRY.register(_SelfChecks())


def jobs_published(jobs: Iterable[CheckJob]) -> None:
    for country, n in Tally(job.country for job in jobs).items():
        JOBS_PUBLISHED.labels(country).inc(n)


def rounds_scheduled(due_times: Iterable[datetime], now: datetime) -> None:
    for due in due_times:
        LATENESS.observe(max(0.0, (now - due).total_seconds()))


def missed_rounds(rows: Iterable[ResultRow]) -> None:
    """The rounds the scheduler recorded missed, by kind (`no_agent`, `no_seal_key`)."""
    counters = {"no_agent": NO_AGENT, "no_seal_key": NO_SEAL_KEY}
    for (kind, country), n in Tally((row.error_kind, row.country) for row in rows).items():
        if kind in counters:
            counters[kind].labels(country).inc(n)


def confirmation(outcome: str, n: int = 1) -> None:
    """`requested`, `capped`, `org_capped` or `sent`."""
    CONFIRMATIONS.labels(outcome).inc(n)


def flow_joined(relation: str) -> None:
    FLOW_JOINS.labels(relation).inc()


def login_backoff(outcome: str) -> None:
    """`backed_off` or `resumed`."""
    LOGIN_BACKOFF.labels(outcome).inc()


def batch_ingested(rows: Iterable[CheckResult], seconds: float) -> None:
    INGEST_BATCH.observe(seconds)
    for (country, status, kind), n in Tally(_labels(r) for r in rows).items():
        RESULTS_INGESTED.labels(country, status, kind).inc(n)


def _labels(r: CheckResult) -> tuple[str, str, str]:
    """Country, status as stored (`missed` for a round nobody ran, `inconclusive` when the
    agent's own path explains the failure) and error kind: one of the known kinds or `other`,
    since an agent (a newer or a rogue one) may send any string and each new label value would
    be a new series for as long as the process lives."""
    if r.status == "up":
        return r.country, "up", "none"
    if INCONCLUSIVE in (r.status, r.error_kind):
        return r.country, INCONCLUSIVE, INCONCLUSIVE
    kind = r.error_kind or "none"
    if kind != "none" and kind not in ERROR_KINDS:
        kind = "other"
    return r.country, "missed" if kind in MISSED_KINDS else "down", kind


def alert_evaluated() -> None:
    ALERT_EVALUATIONS.inc()


def notifications(channels: Sequence[str], errors: Sequence[str | None]) -> None:
    for (channel, failed), n in Tally(
        zip(channels, (e is not None for e in errors), strict=True)
    ).items():
        NOTIFICATIONS.labels(channel, "failed" if failed else "sent").inc(n)


def notifications_dropped(source: str, channel: str, n: int) -> None:
    NOTIFICATIONS_DROPPED.labels(source, channel).inc(n)


def report_taken(kind: str, via: str, outcome: str) -> None:
    REPORTS.labels(kind, via, outcome).inc()


def api_connection_cut(reason: str) -> None:
    API_CONNECTIONS_CUT.labels(reason).inc()


def api_throttled() -> None:
    API_THROTTLED.inc()


def api_request(method: str, route: str, status: int, seconds: float) -> None:
    API_REQUESTS.labels(method, route, f"{status // 100}xx").observe(seconds)


Probe = Callable[[], Awaitable[None]]


def ingest_lag(js: JetStreamContext, durable: str) -> Probe:
    async def probe() -> None:
        try:
            info = await js.consumer_info(RESULTS_STREAM, durable)
        except NotFoundError:
            # The ingester creates its consumer when it starts, just after the first sample:
            # no consumer yet is nothing to report, not a failure (it warned on every start).
            return
        INGEST_LAG.set(info.num_pending or 0)
        INGEST_ACK_PENDING.set(info.num_ack_pending or 0)

    return probe


def outbox_pending(count: Callable[[], Awaitable[int]]) -> Probe:
    """Samples the notifications waiting to go out (`count`: the outbox store's)."""

    async def probe() -> None:
        OUTBOX_PENDING.set(await count())

    return probe


async def sample_every(
    stop: asyncio.Event, probes: Sequence[Probe], interval_s: float = SAMPLE_EVERY_S
) -> None:
    """Run the probes every `interval_s` until `stop`."""

    async def one_pass() -> None:
        await sample(probes)

    await run_every(interval_s, one_pass, name="metrics sampler", stop=stop)


async def sample(probes: Sequence[Probe]) -> None:
    """Run each probe once; a failing one is logged, never fatal (its gauge keeps its value)."""
    for probe in probes:
        try:
            await probe()
        except Exception as exc:
            log.warning("metrics sample failed", probe=probe.__qualname__, error=repr(exc))
