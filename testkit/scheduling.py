"""A scheduler wired as the composition root wires one (controller.runtime.pipeline,
`build_scheduler`), from the values a test or a benchmark sets instead of settings."""

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
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
from controller.settings import FairUseSettings, SchedulingSettings
from controller.sidechecks.blocklists import ANSWERS, Answers
from controller.sidechecks.blocklists.rules import BlockList, Fresh
from controller.sidechecks.heartbeat_mail import READERS
from controller.sidechecks.heartbeat_mail import Readers as HeartbeatReaders
from controller.sidechecks.heartbeat_mail.rules import Reader
from controller.sidechecks.readiness.budget import QUERIES_PER_HOUR as READINESS_QUERIES_PER_HOUR
from shared.timefmt import utcnow


@dataclass(frozen=True)
class Answered:
    """The lists' answers as a test or a benchmark gives them (`Answers`; the controller's
    are read from the store): the names answered on every list per country (`names`), on one
    list (`on`), the dead lists (`dead`), those a monitor's last
    round in a country found (`found`) and when it asked (`asked`), by (monitor id, country)."""

    lists: tuple[BlockList, ...]
    interval_s: int = 6 * 3600
    names: Mapping[str, Collection[str]] = field(default_factory=dict)
    found: Mapping[tuple[int, str], Collection[str]] = field(default_factory=dict)
    asked: Mapping[tuple[int, str], datetime] = field(default_factory=dict)
    # Per country: what each list answered (zone → names) beside `names`, and the dead lists.
    on: Mapping[str, Mapping[str, Collection[str]]] = field(default_factory=dict)
    dead: Mapping[str, Collection[str]] = field(default_factory=dict)

    def fresh(self, country: str) -> Fresh:
        everywhere = set(self.names.get(country, ()))
        own = self.on.get(country, {})
        return Fresh(
            {b.zone: frozenset({*everywhere, *own.get(b.zone, ())}) for b in self.lists},
            frozenset(self.dead.get(country, ())),
        )

    def known(self, monitor_id: int, country: str) -> Collection[str]:
        return self.found.get((monitor_id, country), ())

    def asked_at(self, monitor_id: int, country: str) -> datetime | None:
        return self.asked.get((monitor_id, country))


def round_planner(
    box: SecretBox,
    keys: CountryKeys,
    *,
    default_countries: int = 2,
    dns_interval_s: int = 3600,
    login_spacing_s: float = 5.0,
    result_bundles: bool = False,
    blocklists: Answers | None = None,
    readers: HeartbeatReaders | None = None,
) -> RoundPlanner:
    """A round planner of the scheduling settings given (DNS_POSTURE_INTERVAL_SECONDS,
    LOGIN_SPACING_SECONDS, RESULT_BUNDLES), the defaults for the rest."""
    scheduling = SchedulingSettings(
        dns_posture_interval_seconds=dns_interval_s,
        login_spacing_seconds=login_spacing_s,
        result_bundles=result_bundles,
    )
    return RoundPlanner(
        JobIds.from_box(box),
        box,
        keys,
        scheduling=scheduling,
        default_countries=default_countries,
        held=[
            *([ANSWERS.held(blocklists)] if blocklists is not None else []),
            *([READERS.held(readers)] if readers is not None else []),
        ],
    )


@dataclass(frozen=True)
class Readers:
    """Who reads which mailbox for heartbeat mail, as given (controller.sidechecks.
    heartbeat_mail.Readers): heartbeats by the internal id of their mailbox's monitor."""

    by_monitor: Mapping[int, Sequence[Reader]]

    def of(self, monitor_id: int) -> Sequence[Reader]:
        return self.by_monitor.get(monitor_id, ())


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
            budgets=SchedulingSettings(
                readiness_queries_per_hour=readiness_queries,
                dns_posture_interval_seconds=planning.get("dns_interval_s", 3600),
            ),
        ),
        JobPublisher(
            js, agents, keys, JobIds.from_box(box).asks, default_countries=default_countries
        ),
        scheduling=SchedulingSettings(
            scheduler_batch=batch,
            scheduler_gather_seconds=gather_s,
            confirm_rounds_per_minute=confirm_per_minute,
        ),
        fair_use=FairUseSettings(
            default_check_countries=default_countries, org_max_checks_per_minute=checks_per_minute
        ),
        clock=clock,
    )
