"""The agent's Prometheus metrics, served on AGENT_METRICS_PORT (`agent.ops`).

Labels are bounded (country, check type, status, error kind, and the operator's own canaries):
never a monitor or a job. A Worker binds its country's series once (`for_country`) and then
calls one method per event; the hand-off's counts are its own, read as Prometheus scrapes
(`HandOffCollector`).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.metrics import Counter as CounterT
from prometheus_client.metrics import Gauge as GaugeT
from prometheus_client.metrics import Histogram as HistogramT
from prometheus_client.registry import Collector

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
    "mailprobe_agent_checks_in_flight",
    "checks holding a slot (running, or finished and waiting for room in the hand-off),"
    " at most AGENT_CONCURRENCY",
    ["country"],
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
RECEIVER_MESSAGES = Counter(
    "mailprobe_agent_receiver_messages",
    "messages the receiver took (each stored on ARRIVALS before its 250)",
    ["country"],
)
RECEIVER_REFUSALS = Counter(
    "mailprobe_agent_receiver_refusals",
    "what the receiver refused, by reason: connections (over its or a source's cap),"
    " session_time, relay, unknown_address, address_rate, parsers_busy, unstored",
    ["country", "reason"],
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
# The hand-off (agent.handoff): how long a finished check waited for room there. Its other
# series are the hand-off's own counts, read as Prometheus scrapes (`HandOffCollector`).
HANDOFF_WAIT_SECONDS = Histogram(
    "mailprobe_agent_handoff_wait_seconds",
    "how long a finished check waited for room in the hand-off, observed as its wait ends"
    " (its result entered, or the check was cancelled)",
    ["country"],
    buckets=DURATION_BUCKETS,
)


@dataclass(frozen=True, slots=True)
class HandOffReading:
    """A hand-off's counts (agent.handoff) as a scrape reads them."""

    results: int
    bytes: int
    max_results: int
    max_bytes: int
    entered: int
    waiting: int


# name, type, help, the reading's field
_HANDOFF_SERIES = (
    (
        "mailprobe_agent_handoff_results",
        "gauge",
        "results of finished checks in the hand-off, waiting for RESULTS to store them",
        "results",
    ),
    ("mailprobe_agent_handoff_bytes", "gauge", "bytes of the results in the hand-off", "bytes"),
    (
        "mailprobe_agent_handoff_max_results",
        "gauge",
        "the hand-off's bound in results",
        "max_results",
    ),
    ("mailprobe_agent_handoff_max_bytes", "gauge", "the hand-off's bound in bytes", "max_bytes"),
    ("mailprobe_agent_handoff_entered", "counter", "results that entered the hand-off", "entered"),
    (
        "mailprobe_agent_handoff_waiting",
        "gauge",
        "finished checks waiting for room in the hand-off, each holding its slot (back-pressure)",
        "waiting",
    ),
)


class HandOffCollector(Collector):
    """The hand-offs' series, by country: each the hand-off's own count, kept as its results
    enter and leave and its checks begin and end waiting (agent.handoff), read when Prometheus
    scrapes. Nothing samples them in between, and a check pays no series' update for them."""

    def __init__(self) -> None:
        self._readings: dict[str, Callable[[], HandOffReading]] = {}

    def bind(self, country: str, read: Callable[[], HandOffReading]) -> None:
        """`country`'s series read `read` from now on (one agent a process: the latest)."""
        self._readings[country] = read

    def collect(self) -> Iterator[Metric]:
        readings = {country: read() for country, read in self._readings.items()}
        for name, kind, help_text, field in _HANDOFF_SERIES:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, help_text, labels=["country"]
            )
            for country, reading in readings.items():
                family.add_metric([country], getattr(reading, field))
            yield family


HANDOFFS = HandOffCollector()
REGISTRY.register(HANDOFFS)


@dataclass(frozen=True, slots=True)
class HandOffMetrics:
    """One country's hand-off series: its counts, read through `collector`, and how long its
    checks waited for room."""

    country: str
    wait_seconds: HistogramT
    collector: HandOffCollector = HANDOFFS

    def watch(self, read: Callable[[], HandOffReading]) -> None:
        self.collector.bind(self.country, read)

    def waited(self, seconds: float) -> None:
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
        HandOffMetrics(country, HANDOFF_WAIT_SECONDS.labels(country)),
    )
