"""The agent's Prometheus metrics, served on AGENT_METRICS_PORT (`agent.ops`).

Labels are bounded (country, check type, status, error kind, and the operator's own canaries):
never a monitor or a job. A Worker binds its country's series once (`for_country`) and then
calls one method per event.
"""

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import Counter as CounterT
from prometheus_client.metrics import Gauge as GaugeT
from prometheus_client.metrics import Histogram as HistogramT

DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

CHECKS = Counter(
    "mailprobe_agent_checks",
    "checks run, by country, type, status and error kind (none when up)",
    ["country", "type", "status", "error_kind"],
)
CHECK_SECONDS = Histogram(
    "mailprobe_agent_check_duration_seconds",
    "time from taking a job to having its result, by country and type",
    ["country", "type"],
    buckets=DURATION_BUCKETS,
)
IN_FLIGHT = Gauge(
    "mailprobe_agent_checks_in_flight", "checks running, at most AGENT_CONCURRENCY", ["country"]
)
JOBS_FETCHED = Counter("mailprobe_agent_jobs_fetched", "jobs pulled from mon.jobs.CC", ["country"])
JOBS_REJECTED = Counter(
    "mailprobe_agent_jobs_rejected",
    "messages on mon.jobs.CC no agent can run (malformed, another country), terminated",
    ["country", "reason"],
)
RESULTS_PUBLISHED = Counter(
    "mailprobe_agent_results_published",
    "results acknowledged by the RESULTS stream (their job then acked)",
    ["country"],
)
PUBLISH_FAILURES = Counter(
    "mailprobe_agent_publish_failures",
    "results RESULTS did not acknowledge in time (their job handed back with nak)",
    ["country"],
)
CANARY_OK = Gauge(
    "mailprobe_agent_canary_ok",
    "1 when the self-check (AGENT_CANARIES `port`, AGENT_CANARY_RESOLVE `resolver`) answered"
    " its last run, 0 when it failed",
    ["country", "kind", "target"],
)
PORT_BLOCKED = Gauge(
    "mailprobe_agent_port_blocked",
    "1 while every canary of the port fails (its jobs go to other agents of the country)",
    ["country", "port"],
)
# The hand-off (agent.handoff): results of finished checks waiting for RESULTS to store them.
HANDOFF_RESULTS = Gauge(
    "mailprobe_agent_handoff_results",
    "results of finished checks in the hand-off, waiting for RESULTS to store them",
    ["country"],
)
HANDOFF_BYTES = Gauge(
    "mailprobe_agent_handoff_bytes", "bytes of the results in the hand-off", ["country"]
)
HANDOFF_MAX_RESULTS = Gauge(
    "mailprobe_agent_handoff_max_results", "the hand-off's bound in results", ["country"]
)
HANDOFF_MAX_BYTES = Gauge(
    "mailprobe_agent_handoff_max_bytes", "the hand-off's bound in bytes", ["country"]
)
HANDOFF_ENTERED = Counter(
    "mailprobe_agent_handoff_entered", "results that entered the hand-off", ["country"]
)
HANDOFF_WAITING = Gauge(
    "mailprobe_agent_handoff_waiting",
    "finished checks waiting for room in the hand-off, each holding its slot (back-pressure)",
    ["country"],
)
HANDOFF_WAIT_SECONDS = Histogram(
    "mailprobe_agent_handoff_wait_seconds",
    "how long a finished check waited for room in the hand-off, observed as its wait ends"
    " (its result entered, or the check was cancelled)",
    ["country"],
    buckets=DURATION_BUCKETS,
)


@dataclass(frozen=True, slots=True)
class HandOffMetrics:
    """One country's hand-off series, updated by agent.handoff at its events: a result enters
    or leaves, a check begins or ends waiting for room."""

    results: GaugeT
    bytes: GaugeT
    max_results: GaugeT
    max_bytes: GaugeT
    entered_total: CounterT
    waiting: GaugeT
    wait_seconds: HistogramT

    def bounds(self, results: int, size: int) -> None:
        self.max_results.set(results)
        self.max_bytes.set(size)

    def entered(self, size: int) -> None:
        self.results.inc()
        self.bytes.inc(size)
        self.entered_total.inc()

    def left(self, size: int) -> None:
        self.results.dec()
        self.bytes.dec(size)

    def wait_began(self) -> None:
        self.waiting.inc()

    def wait_ended(self, seconds: float) -> None:
        self.waiting.dec()
        self.wait_seconds.observe(seconds)


@dataclass(frozen=True)
class AgentMetrics:
    """One country's series."""

    country: str
    in_flight: GaugeT
    fetched: CounterT
    published: CounterT
    publish_failed: CounterT
    handoff: HandOffMetrics

    def check(self, monitor_type: str, status: str, error_kind: str | None, seconds: float) -> None:
        CHECKS.labels(self.country, monitor_type, status, error_kind or "none").inc()
        CHECK_SECONDS.labels(self.country, monitor_type).observe(seconds)

    def rejected(self, reason: str) -> None:
        JOBS_REJECTED.labels(self.country, reason).inc()

    def canary(self, kind: str, target: str, ok: bool) -> None:
        CANARY_OK.labels(self.country, kind, target).set(int(ok))

    def port_blocked(self, port: int, blocked: bool) -> None:
        PORT_BLOCKED.labels(self.country, str(port)).set(int(blocked))


def for_country(country: str) -> AgentMetrics:
    return AgentMetrics(
        country,
        IN_FLIGHT.labels(country),
        JOBS_FETCHED.labels(country),
        RESULTS_PUBLISHED.labels(country),
        PUBLISH_FAILURES.labels(country),
        HandOffMetrics(
            HANDOFF_RESULTS.labels(country),
            HANDOFF_BYTES.labels(country),
            HANDOFF_MAX_RESULTS.labels(country),
            HANDOFF_MAX_BYTES.labels(country),
            HANDOFF_ENTERED.labels(country),
            HANDOFF_WAITING.labels(country),
            HANDOFF_WAIT_SECONDS.labels(country),
        ),
    )
