"""What the web surfaces use, built once per app and handed to handlers by Litestar's dependency
injection: a handler names what it needs as a parameter (`pool`, `box`, `logins`, `sender`,
`writes`, `trigger`, `agents`, `nats_up`, `page_cache`, `background`, `world`, and the settings
groups it reads: `access_settings`, `api_settings`, `budget_settings`, `fair_use_settings`,
`notify_settings`, `oauth2_settings`, `reports_settings`, `reputation_settings`,
`status_page_settings`), and `DEPENDENCIES` provides it. No handler takes the whole
`ControllerSettings` (tests/unit/test_wiring.py).

`Services.open` builds them when the app starts (the pool and the pipeline are the caller's,
opened and closed by the composition root, controller.runtime.serve) and closes what it made when
the app stops. Only the providers here read the app's state, and only its `services`.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import asyncpg
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from controller.fleet.live import LiveAgents
from controller.monitors import fair_use
from controller.monitors.writes import MonitorWrites
from controller.notify.channel_send import ChannelSender, channel_sender
from controller.notify.egress import Egress
from controller.oracles.metrics import World
from controller.scheduling.trigger import MonitorTrigger, RoundNow
from controller.secrets.box import SecretBox
from controller.settings import (
    AccessSettings,
    ApiSettings,
    BlocklistSettings,
    ControllerSettings,
    FairUseSettings,
    NoticeBudgetSettings,
    NotifySettings,
    OAuth2Settings,
    ReportsSettings,
    StatusPageSettings,
)
from controller.sidechecks.blocklists.rules import lists_setting
from controller.sidechecks.world import world_gauges
from controller.statuspages.cache import PageCache
from controller.web.api.auth import Logins
from shared.clock import WALL, Clock

if TYPE_CHECKING:
    # What the composition root hands the app: a type only, so web/ does not depend on the
    # runtime package above it.
    from controller.runtime.pipeline import Pipeline

T = TypeVar("T")

THROTTLE_PURPOSE = "login-throttle"
# Whether this process's NATS connection is up (None: the pipeline does not run here).
NatsUp = Callable[[], bool]


class Background:
    """Work run after a response, each task held until it ends."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass(frozen=True)
class Services:
    settings: ControllerSettings
    pool: asyncpg.Pool
    box: SecretBox
    logins: Logins
    sender: ChannelSender
    writes: MonitorWrites
    trigger: MonitorTrigger
    agents: LiveAgents | None  # None: the check pipeline does not run in this process
    nats_up: NatsUp | None
    page_cache: PageCache  # the public status pages, built at most once a while each
    background: Background
    world: World  # the gauges read from PostgreSQL at a scrape (findings, oracles, reports)
    clock: Clock  # the instant the handlers' reads are taken at

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: ControllerSettings,
        pool: asyncpg.Pool,
        box: SecretBox,
        pipeline: "Pipeline | None",
        egress: Egress | None,
    ) -> AsyncIterator["Services"]:
        limits = fair_use.Limits.of(settings.fair_use)
        clock = clock_of(pipeline)
        logins = Logins.from_settings(settings.access, box.subkeys(THROTTLE_PURPOSE)[0], clock)
        try:
            yield cls(
                settings=settings,
                pool=pool,
                box=box,
                logins=logins,
                sender=channel_sender(settings.notify, pool, box, egress, clock=clock.now),
                writes=MonitorWrites(pool, box, limits, clock, settings.oauth2.token_hosts),
                trigger=MonitorTrigger(pool, limits, _round_now(pipeline), clock),
                agents=None if pipeline is None else pipeline.agents,
                nats_up=None if pipeline is None else _connected(pipeline),
                page_cache=PageCache(),
                background=Background(),
                world=World(
                    world_gauges(lists_setting(settings.reputation.blocklists)), clock=clock
                ),
                clock=clock,
            )
        finally:
            logins.passwords.close()


# A handler's parameters that Litestar injects by their names (`DEPENDENCIES`).
PoolDep: TypeAlias = NamedDependency[asyncpg.Pool]
BoxDep: TypeAlias = NamedDependency[SecretBox]
SenderDep: TypeAlias = NamedDependency[ChannelSender]
WritesDep: TypeAlias = NamedDependency[MonitorWrites]
TriggerDep: TypeAlias = NamedDependency[MonitorTrigger]
AgentsDep: TypeAlias = NamedDependency[LiveAgents | None]
NatsUpDep: TypeAlias = NamedDependency[NatsUp | None]
PageCacheDep: TypeAlias = NamedDependency[PageCache]
BackgroundDep: TypeAlias = NamedDependency[Background]
WorldDep: TypeAlias = NamedDependency[World]
ClockDep: TypeAlias = NamedDependency[Clock]
# The settings groups the web surfaces read, each its own dependency.
AccessSettingsDep: TypeAlias = NamedDependency[AccessSettings]
ApiSettingsDep: TypeAlias = NamedDependency[ApiSettings]
BudgetSettingsDep: TypeAlias = NamedDependency[NoticeBudgetSettings]
FairUseSettingsDep: TypeAlias = NamedDependency[FairUseSettings]
NotifySettingsDep: TypeAlias = NamedDependency[NotifySettings]
OAuth2SettingsDep: TypeAlias = NamedDependency[OAuth2Settings]
ReportsSettingsDep: TypeAlias = NamedDependency[ReportsSettings]
ReputationSettingsDep: TypeAlias = NamedDependency[BlocklistSettings]
StatusPageSettingsDep: TypeAlias = NamedDependency[StatusPageSettings]


def _round_now(pipeline: "Pipeline | None") -> RoundNow | None:
    """The scheduler's trigger-check, when the pipeline (with its scheduler) runs here."""
    if pipeline is None or pipeline.scheduler is None:
        return None
    return pipeline.scheduler.trigger


def _connected(pipeline: "Pipeline") -> NatsUp:
    return lambda: bool(pipeline.nc.is_connected)


def _services(state: State) -> Services:
    services: Services = state.services
    return services


def provide_pool(state: State) -> asyncpg.Pool:
    return _services(state).pool


def provide_box(state: State) -> SecretBox:
    return _services(state).box


def provide_logins(state: State) -> Logins:
    return _services(state).logins


def provide_sender(state: State) -> ChannelSender:
    return _services(state).sender


def provide_writes(state: State) -> MonitorWrites:
    return _services(state).writes


def provide_trigger(state: State) -> MonitorTrigger:
    return _services(state).trigger


def provide_agents(state: State) -> LiveAgents | None:
    return _services(state).agents


def provide_nats_up(state: State) -> NatsUp | None:
    return _services(state).nats_up


def provide_page_cache(state: State) -> PageCache:
    return _services(state).page_cache


def provide_background(state: State) -> Background:
    return _services(state).background


def provide_world(state: State) -> World:
    return _services(state).world


def clock_of(pipeline: "Pipeline | None") -> Clock:
    """The clock the app's handlers and middleware read: the pipeline's, else the wall's."""
    return WALL if pipeline is None else pipeline.clock


def provide_clock(state: State) -> Clock:
    return _services(state).clock


def provide_group(group: Callable[[ControllerSettings], T]) -> Callable[[State], T]:
    """The provider of one settings group, `group` of the app's settings."""

    def provide(state: State) -> T:
        return group(_services(state).settings)

    return provide


DEPENDENCIES = {
    name: Provide(provider, sync_to_thread=False)
    for name, provider in (
        ("pool", provide_pool),
        ("box", provide_box),
        ("logins", provide_logins),
        ("sender", provide_sender),
        ("writes", provide_writes),
        ("trigger", provide_trigger),
        ("agents", provide_agents),
        ("nats_up", provide_nats_up),
        ("page_cache", provide_page_cache),
        ("background", provide_background),
        ("world", provide_world),
        ("clock", provide_clock),
        # the settings groups the handlers read, each its own
        ("access_settings", provide_group(lambda s: s.access)),
        ("api_settings", provide_group(lambda s: s.api)),
        ("budget_settings", provide_group(lambda s: s.budget)),
        ("fair_use_settings", provide_group(lambda s: s.fair_use)),
        ("notify_settings", provide_group(lambda s: s.notify)),
        ("oauth2_settings", provide_group(lambda s: s.oauth2)),
        ("reports_settings", provide_group(lambda s: s.reports)),
        ("reputation_settings", provide_group(lambda s: s.reputation)),
        ("status_page_settings", provide_group(lambda s: s.status_pages)),
    )
}
