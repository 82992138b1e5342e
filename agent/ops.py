"""The agent's HTTP endpoints for operators on AGENT_METRICS_HOST:AGENT_METRICS_PORT:
`GET /metrics`, `GET /health` and `GET /ready` (connected to NATS with the country's consumer
bound; 503 otherwise, and from SIGTERM on). Served by `shared.ops`, which the controller uses
too; the readiness check is the worker's.
"""

from shared.ops import Readiness, start

__all__ = ["Readiness", "start"]
