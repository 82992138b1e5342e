"""The scheduler's planner: claimed monitors → their rounds (controller.scheduling.plan), with
the countries that have live agents now and the OAuth2 logins' access tokens.

No network call happens in a claim's transaction other than the publish to NATS: a monitor
with an OAuth2 login whose access token is not cached is left unplanned (its row unlocked at
the commit), its token is fetched in the background (controller.oauth2.tokens, bounded per
organization), and it is claimed again, with the outcome, once the fetch is done; claims skip it
meanwhile (`fetching`). So a hanging token endpoint holds no row lock and delays no other
organization's rounds.
"""

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog

from controller.db.pool import Conn
from controller.fleet.live import LiveAgents
from controller.monitors import mailbox_apis
from controller.monitors.store import WatchedMonitor
from controller.oauth2.tokens import TokenFailure, TokenService
from controller.scheduling import confirm_store as confirmations
from controller.scheduling import plan as planning
from controller.scheduling import rules as schedule
from controller.scheduling.due_store import ClaimedMonitor, monitor_of
from controller.scheduling.plan import PlannedRound, RoundPlanner
from controller.secrets.seal_keys import CountryKeys
from shared.messages import FEATURE_OAUTH2
from shared.secret import Secret

log = structlog.get_logger(__name__)

Tokens = Mapping[int, Mapping[str, Secret] | TokenFailure]


class Planner:
    def __init__(
        self,
        rounds: RoundPlanner,
        agents: LiveAgents,
        keys: CountryKeys,
        tokens: TokenService | None = None,
    ) -> None:
        """`rounds`: the pure plan of one monitor's round; `agents`: the live agents view
        (which countries a round goes to); `keys`: the countries' sealing keys, refreshed before
        each claim; `tokens`: OAuth2 access tokens (None: OAuth2 logins are never sent)."""
        self._rounds = rounds
        self._agents = agents
        self._keys = keys
        self._tokens = tokens

    def is_warm(self) -> bool:
        """Whether the live agents view is complete: until then a country missing from it may
        have agents, so no round is planned (it would be recorded `no_agent`)."""
        return self._agents.is_warm()

    async def until_warm(self) -> None:
        """Wait for the view (AgentsUnknownError if that takes too long)."""
        await self._agents.until_warm()

    async def refresh_keys(self) -> None:
        await self._keys.refresh()

    def fetching(self) -> list[int]:
        """Monitors whose OAuth2 tokens are being fetched: no claim takes them meanwhile."""
        return self._tokens.fetching() if self._tokens is not None else []

    async def ready_tokens(
        self, conn: Conn, claimed: Sequence[ClaimedMonitor], now: datetime
    ) -> tuple[dict[int, Mapping[str, Secret] | TokenFailure], set[int]]:
        """In a claim's transaction: the access tokens known without asking an endpoint, by
        monitor id, and the monitors whose tokens are now fetched in the background (left
        unplanned: claimed again when the fetch is done)."""
        ready: dict[int, Mapping[str, Secret] | TokenFailure] = {}
        waiting: set[int] = set()
        if self._tokens is None:
            return ready, waiting
        for w, until in self._token_logins(claimed, now):
            got = await self._tokens.ready(conn, w.monitor, until)
            if got is None:
                self._tokens.start(w.monitor, until)
                waiting.add(w.monitor.id)
            else:
                ready[w.monitor.id] = got
        return ready, waiting

    async def rounds(
        self,
        claimed: Sequence[ClaimedMonitor],
        now: datetime,
        live: frozenset[str] | None = None,
        tokens: Tokens | None = None,
    ) -> list[PlannedRound]:
        """The rounds of claimed monitors, planned in a thread unless the batch is light
        (`planning.light`: few monitors and rows, no credentials). Decrypting and sealing cost
        0.1-0.2 ms a credentialed job: a batch of them inline would stall the loop (API,
        ingester, alerter) for hundreds of milliseconds, in a thread it does not, as OpenSSL
        and libsodium release the GIL (bench/seal.py). `live`: the countries with live agents
        (None: the view's now); `tokens`: the OAuth2 logins' access tokens (or why there are
        none), by monitor id."""
        got = tokens or {}
        countries = self._agents.countries() if live is None else live
        oauth2_live = self._agents.countries_with(FEATURE_OAUTH2)
        apis_live = self._apis_live()
        return await self._planned(
            claimed,
            now,
            lambda m: self._round(
                m,
                now,
                countries,
                tokens=got.get(monitor_of(m).id),
                oauth2_live=oauth2_live,
                apis_live=apis_live,
            ),
        )

    async def confirmation_rounds(
        self,
        conn: Conn,
        monitors: Sequence[ClaimedMonitor],
        asked: Sequence[tuple[int, datetime]],
        tokens: Tokens,
        now: datetime,
    ) -> list[PlannedRound]:
        """The confirmation rounds the alerter asked for (`asked`: monitor and round), each as
        a triggered round from all its countries, asking another agent than the one that
        failed where its country has one (`plan.second_opinions`); planned in a thread unless
        light, as routine batches are."""
        live_agents = [(beat.country, beat.agent_id) for beat in self._agents.agents()]
        avoid = planning.second_opinions(
            await confirmations.failed_agents(conn, asked), live_agents
        )
        live = self._agents.countries()
        oauth2_live = self._agents.countries_with(FEATURE_OAUTH2)
        apis_live = self._apis_live()
        return await self._planned(
            monitors,
            now,
            lambda m: self._round(
                m,
                now,
                live,
                trigger=True,
                avoid=avoid.get(monitor_of(m).id, {}),
                tokens=tokens.get(monitor_of(m).id),
                oauth2_live=oauth2_live,
                apis_live=apis_live,
            ),
            trigger=True,
        )

    async def triggered_round(self, claimed: ClaimedMonitor, now: datetime) -> PlannedRound:
        """A round now from all the monitor's countries (a "Check now"), planned in a thread
        unless light, as routine batches are: a credentialed monitor listing every country
        decrypts and seals a job per country. Its access tokens are got holding no connection:
        many triggers at once must not hold the pool while the token service needs it."""
        tokens = await self._access_tokens([claimed], now)
        live = self._agents.countries()
        oauth2_live = self._agents.countries_with(FEATURE_OAUTH2)
        apis_live = self._apis_live()
        [planned] = await self._planned(
            [claimed],
            now,
            lambda m: self._round(
                m,
                now,
                live,
                trigger=True,
                tokens=tokens.get(monitor_of(m).id),
                oauth2_live=oauth2_live,
                apis_live=apis_live,
            ),
            trigger=True,
        )
        return planned

    async def settled(self) -> None:
        """Wait for the OAuth2 token fetches started so far (tests, shutdown)."""
        if self._tokens is not None:
            await self._tokens.settled()

    async def close(self) -> None:
        if self._tokens is not None:
            await self._tokens.close()

    async def _planned(
        self,
        claimed: Sequence[ClaimedMonitor],
        now: datetime,
        round_of: Callable[[ClaimedMonitor], PlannedRound],
        *,
        trigger: bool = False,
    ) -> list[PlannedRound]:
        """`round_of` each claimed monitor: on the loop when the batch is light
        (`RoundPlanner.light`), else in a thread, so no batch, routine or triggered, decrypts,
        seals or hashes many rows on the loop."""

        def plan() -> list[PlannedRound]:
            return [round_of(m) for m in claimed]

        if self._rounds.light(claimed, now, trigger=trigger):
            return plan()
        return await asyncio.to_thread(plan)

    def _apis_live(self) -> dict[str, frozenset[str]]:
        """By mailbox API feature, the countries whose every live agent has it."""
        return {f: self._agents.countries_with(f) for f in mailbox_apis.ALL_FEATURES}

    def _token_logins(
        self, claimed: Sequence[ClaimedMonitor], now: datetime
    ) -> list[tuple[WatchedMonitor, datetime]]:
        """The claimed monitors with OAuth2 logins whose round may log in now (none while a
        login back-off holds every country), each with how long its token must live."""
        if self._tokens is None:
            return []
        return [
            (
                m,
                schedule.settles_at(now, m.monitor.check_interval, m.monitor.timeout_seconds),
            )
            for m in claimed
            if isinstance(m, WatchedMonitor)
            and m.monitor.grants
            and (m.rounds.login_retry_at is None or m.rounds.login_retry_at <= now)
        ]

    async def _access_tokens(
        self, claimed: Sequence[ClaimedMonitor], now: datetime
    ) -> dict[int, Mapping[str, Secret] | TokenFailure]:
        """The access tokens of the claimed monitors, asking the endpoints and waiting for
        them: only where no transaction is open (a triggered round)."""
        if self._tokens is None:
            return {}
        service = self._tokens
        wanted = self._token_logins(claimed, now)
        got = await asyncio.gather(*(service.tokens(w.monitor, until) for w, until in wanted))
        return {w.monitor.id: t for (w, _), t in zip(wanted, got, strict=True)}

    def _round(
        self,
        claimed: ClaimedMonitor,
        now: datetime,
        live: frozenset[str],
        *,
        trigger: bool = False,
        avoid: Mapping[str, list[str]] | None = None,
        tokens: Mapping[str, Secret] | TokenFailure | None = None,
        oauth2_live: frozenset[str],
        apis_live: Mapping[str, frozenset[str]],
    ) -> PlannedRound:
        """The monitor's round (`RoundPlanner.round`). A monitor that cannot become jobs is
        logged and skipped (its next due time still moves), so one bad monitor never stops the
        scheduler. `oauth2_live`: the countries whose every live agent logs in with OAuth2,
        `apis_live`: by mailbox API feature, the countries whose every live agent has it; both
        read once for the caller's whole batch."""
        plan = self._rounds.round(
            claimed,
            now,
            live,
            trigger=trigger,
            avoid=avoid,
            tokens=tokens,
            oauth2_live=oauth2_live,
            apis_live=apis_live,
        )
        if plan.unusable is None and plan.countries:
            return plan
        monitor = monitor_of(claimed)
        bound = log.bind(
            monitor_id=str(monitor.public_id), monitor_type=monitor.type, monitor_db_id=monitor.id
        )
        if plan.unusable is not None:
            bound.error("monitor unusable; round skipped", error=plan.unusable)
        else:
            bound.warning("no live agent in any country")
        return plan
