"""The agent's Prometheus metrics, served on AGENT_METRICS_PORT (`agent.ops`).

Labels are bounded (country, check type, status, error kind, and the operator's own canaries):
never a monitor or a job. A Worker binds its country's series once (`for_country`) and then
calls one method per event.
"""

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import Counter as CounterT
from prometheus_client.metrics import Gauge as GaugeT

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


@dataclass(frozen=True)
class AgentMetrics:
    """One country's series."""

    country: str
    in_flight: GaugeT
    fetched: CounterT
    published: CounterT
    publish_failed: CounterT

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
    )
