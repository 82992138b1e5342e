"""Per-monitor Prometheus series for one organization: `GET /metrics/monitors` with a scrape
token (`Authorization: Bearer mps_...`), which owners and admins make in the console.

Cardinality is bounded by the organization's fair-use limits: labels are the monitor's public id,
name and kind, the country and (for phases) one of five phase names; never a hostname, a message
or an error text. The series:

- `mailprobe_monitor_state{monitor,name,kind,state}`: 1 for the monitor's state, 0 for the others
- `mailprobe_check_up{monitor,country}`: 1 up, 0 down (absent while the round was missed or
  inconclusive: neither says anything of the server)
- `mailprobe_check_missed{monitor,country}`: 1 when the latest round ran nowhere
- `mailprobe_check_inconclusive{monitor,country}`: 1 when the latest round's agent found its own
  path broken (a canary of the port, or its resolver check, failed too)
- `mailprobe_check_response_seconds{monitor,country}`, `mailprobe_check_phase_seconds{...,phase}`
- `mailprobe_tls_cert_days_left{monitor,country}`
- `mailprobe_check_scheduled_timestamp_seconds{monitor,country}`: when the latest round was due
"""

import secrets
from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import structlog
from litestar import MediaType, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Template
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.access.credentials import token_digest
from controller.ingest.result_kinds import INCONCLUSIVE, UNCOUNTED
from controller.web.api import guards
from controller.web.console import scrape_store as scrape
from controller.web.console import store as console
from controller.web.console.pages import page, pool_of
from controller.web.console.session import PREFIX, principal_of
from controller.web.console.store import MonitorSummary

log = structlog.get_logger(__name__)

AnyRequest = Request[Any, Any, Any]
PathStr = Annotated[str, PathParameter()]
TOKEN_PREFIX = "mps_"
PHASE_LABELS = {p: p.removesuffix("_ms") for p in console.PHASES}
_PHASE_KEYS = {p: p.replace("_ms", "Ms") for p in console.PHASES}  # the wire's names


class _Series(Collector):
    """The organization's series, read once per scrape."""

    def __init__(self, monitors: list[MonitorSummary], latest: list[asyncpg.Record]) -> None:
        self.monitors, self.latest = monitors, latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "mailprobe_monitor_state",
            "1 for the monitor's current state (up, degraded, down, missed, unknown)",
            labels=["monitor", "name", "kind", "state"],
        )
        for m in self.monitors:
            for s in console.STATES:
                state.add_metric([str(m.public_id), m.name, m.type, s], float(m.state == s))
        yield state
        mc = ["monitor", "country"]
        up = GaugeMetricFamily("mailprobe_check_up", "Latest check: 1 up, 0 down", labels=mc)
        missed = GaugeMetricFamily(
            "mailprobe_check_missed", "1 when the latest round ran nowhere", labels=mc
        )
        inconclusive = GaugeMetricFamily(
            "mailprobe_check_inconclusive",
            "1 when the latest check was inconclusive (the agent's own path failed its self-check)",
            labels=mc,
        )
        rt = GaugeMetricFamily(
            "mailprobe_check_response_seconds", "Latest check's response time", labels=mc
        )
        phase = GaugeMetricFamily(
            "mailprobe_check_phase_seconds", "Latest check's phases", labels=[*mc, "phase"]
        )
        days = GaugeMetricFamily(
            "mailprobe_tls_cert_days_left", "Days until the certificate expires", labels=mc
        )
        due = GaugeMetricFamily(
            "mailprobe_check_scheduled_timestamp_seconds",
            "When the latest round was due (Unix time)",
            labels=mc,
        )
        for r in self.latest:
            key = [str(r["public_id"]), r["country"]]
            missed.add_metric(key, float(r["last_status"] == "missed"))
            inconclusive.add_metric(key, float(r["last_status"] == INCONCLUSIVE))
            due.add_metric(key, r["last_scheduled_at"].timestamp())
            if r["last_status"] not in UNCOUNTED:
                up.add_metric(key, float(r["last_status"] == "up"))
            if r["response_time_ms"] is not None:
                rt.add_metric(key, r["response_time_ms"] / 1000)
            for p, wire in _PHASE_KEYS.items():
                value = (r["phases"] or {}).get(wire)
                if isinstance(value, int | float):
                    phase.add_metric([*key, PHASE_LABELS[p]], value / 1000)
            left = (r["tls"] or {}).get("certDaysLeft")
            if isinstance(left, int | float):
                days.add_metric(key, float(left))
        yield from (up, missed, inconclusive, rt, phase, days, due)


def _bearer(request: AnyRequest) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@get("/metrics/monitors", include_in_schema=False)
async def monitor_metrics(request: AnyRequest) -> Response[bytes]:
    token = _bearer(request)
    async with pool_of(request).acquire() as conn:
        org = None if token is None else await scrape.organization_for(conn, token_digest(token))
        if org is None:
            return Response(
                b"Unauthorized: send a scrape token as `Authorization: Bearer <token>`\n",
                status_code=401,
                media_type=MediaType.TEXT,
                headers={"WWW-Authenticate": "Bearer"},
            )
        monitors, _ = await console.overview(
            conn,
            organization_id=org,
            customer=None,
            kind=None,
            search=None,
            state=None,
            limit=1_000_000,
            offset=0,
        )
        latest = await scrape.latest(conn, org)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Series(monitors, latest))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")


# --- managing tokens in the console -----------------------------------------------------------


async def _tokens_page(request: AnyRequest, new_token: str | None = None) -> Template:
    async with pool_of(request).acquire() as conn:
        tokens = await scrape.of_organization(conn, principal_of(request).organization_id)
    return page(request, "scrape_tokens.html", tokens=tokens, new_token=new_token)


@get("/scrape-tokens", name="console-scrape-tokens")
async def tokens_page(request: AnyRequest) -> Template:
    guards.requires_admin(principal_of(request))
    return await _tokens_page(request)


@post("/scrape-tokens", status_code=200)
async def create_token(request: AnyRequest) -> Template:
    """A new token, shown once on the page that answers (only its digest is stored)."""
    guards.requires_admin(principal_of(request))
    form = await request.form()
    name = str(form.get("name", "")).strip()[:100].replace("\x00", "") or "prometheus"
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with pool_of(request).acquire() as conn:
        await scrape.create(conn, principal_of(request).organization_id, name, token_digest(token))
    log.info("scrape token created", name=name)
    return await _tokens_page(request, new_token=token)


@post("/scrape-tokens/{token_id:str}/delete", status_code=303)
async def delete_token(request: AnyRequest, token_id: PathStr) -> Redirect:
    guards.requires_admin(principal_of(request))
    try:
        ident = UUID(token_id)
    except ValueError:
        raise NotFoundException() from None
    async with pool_of(request).acquire() as conn:
        await scrape.delete(conn, principal_of(request).organization_id, ident)
    return Redirect(f"{PREFIX}/scrape-tokens", status_code=303)
