"""A scheduler wired as the composition root wires one (controller.runtime.pipeline,
`build_scheduler`), from the values a test or a benchmark sets instead of settings."""

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from controller.fleet.live import LiveAgents
from controller.jobs.rules import JobIds
from controller.notify.links import NO_LINKS, Links
from controller.oauth2.tokens import TokenService
from controller.scheduling.admission import Admission
from controller.scheduling.plan import RoundPlanner
from controller.scheduling.planner import Planner
from controller.scheduling.publisher import JobPublisher
from controller.scheduling.scheduler import Scheduler
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.sidechecks.blocklists.rules import BlockList
from controller.sidechecks.readiness.budget import QUERIES_PER_HOUR as READINESS_QUERIES_PER_HOUR
from shared.timefmt import utcnow


def round_planner(
    box: SecretBox,
    keys: CountryKeys,
    *,
    default_countries: int = 2,
    dns_interval_s: int = 3600,
    login_spacing_s: float = 5.0,
    result_bundles: bool = False,
    blocklists: tuple[BlockList, ...] = (),
    blocklist_interval_s: int = 6 * 3600,
    fresh: Callable[[str], Collection[str]] = lambda cc: (),
) -> RoundPlanner:
    return RoundPlanner(
        JobIds.from_box(box),
        box,
        keys,
        default_countries=default_countries,
        dns_interval_s=dns_interval_s,
        login_spacing_s=login_spacing_s,
        result_bundles=result_bundles,
        blocklists=blocklists,
        blocklist_interval_s=blocklist_interval_s,
        fresh=fresh,
    )


def wired_scheduler(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    agents: LiveAgents,
    box: SecretBox,
    keys: CountryKeys,
    *,
    default_countries: int = 2,
    batch: int = 1000,
    gather_s: float = 0.5,
    login_cap: int = 1000,
    trigger_burst: int = 3,
    checks_per_minute: int = 2000,
    mails_per_domain: int = 60,
    confirm_per_minute: int = 600,
    tokens: TokenService | None = None,
    links: Links = NO_LINKS,
    clock: Callable[[], datetime] = utcnow,
    readiness_queries: int = READINESS_QUERIES_PER_HOUR,
    **planning: Any,
) -> Scheduler:
    """`planning`: `round_planner`'s keywords."""
    rounds = round_planner(box, keys, default_countries=default_countries, **planning)
    return Scheduler(
        pool,
        Planner(rounds, agents, keys, tokens),
        Admission(
            agents,
            links,
            default_countries=default_countries,
            login_cap=login_cap,
            trigger_burst=trigger_burst,
            mails_per_domain=mails_per_domain,
            readiness_queries=readiness_queries,
            readiness_window_s=planning.get("dns_interval_s", 3600),
        ),
        JobPublisher(js, agents, keys, default_countries=default_countries),
        default_countries=default_countries,
        batch=batch,
        gather_s=gather_s,
        checks_per_minute=checks_per_minute,
        confirm_per_minute=confirm_per_minute,
        clock=clock,
    )
