"""The agent's self-checks (AGENT_CANARIES, AGENT_CANARY_RESOLVE): known-good `host:port`
canaries it connects to and a name it resolves, to tell its own path's failures from servers'.

They run every AGENT_CANARY_INTERVAL_SECONDS from the start, and again when a check failed
before a server answered (`recheck`): failures at the same time share one run, and a run is at
most once every RECHECK_GAP_S, so a wave of failing checks costs one connect per canary. Each
canary is bounded by AGENT_CANARY_TIMEOUT_SECONDS; all run at once. What they saw is
`states` (for agent.selfcheck_rules) and `snapshot()` (for the heartbeat); nothing in them comes
from a job.

The resolver check asks the nameservers the checks ask, by the same rules (agent.resolver), on a
resolver of its own outside every tenant's bound: no check's lookup is ever ahead of it, so a
zone that never answers cannot make the agent judge its resolver dead.
"""

import asyncio
import contextvars
import socket
import time

import structlog

from agent import metrics
from agent.resolver import TargetResolver
from agent.selfcheck_rules import PORT, RESOLVER, blocked_ports, canary_port, resolver_ok
from agent.settings import SelfCheckSettings, parse_canaries
from shared.clock import Clock
from shared.loop import run_every
from shared.messages import CanaryState, SelfCheck
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

# Plain-text mail ports: the server speaks first, so reading its greeting line is cheap and
# tells a real server from something on the path that only accepts connections.
GREETING_PORTS = frozenset({25, 587, 143, 110})
RECHECK_GAP_S = 5.0
ERROR_MAX = 80
# The heartbeat lists at most this many canaries (failing ones first), each target cut to
# TARGET_MAX, so a beat stays far below the 16 KiB the controller takes (and older
# controllers' 4 KiB).
HEARTBEAT_CANARIES = 8
TARGET_MAX = 100


class SelfChecks:
    def __init__(
        self,
        country: str,
        canaries: list[tuple[str, int]],
        resolve_name: str | None = None,
        *,
        interval: float = 60.0,
        timeout: float = 5.0,
        recheck_gap: float = RECHECK_GAP_S,
        greeting_ports: frozenset[int] = GREETING_PORTS,
        clock: Clock,
    ) -> None:
        """`clock`: the recheck gap's monotonic time and the canaries' `checkedAt`."""
        self.states = [
            CanaryState(kind=PORT, target=f"[{h}]:{p}" if ":" in h else f"{h}:{p}")
            for h, p in canaries
        ]
        if resolve_name is not None:
            self.states.append(CanaryState(kind=RESOLVER, target=resolve_name))
        self._canaries = list(canaries)
        self._resolve_name = resolve_name
        self._resolver = TargetResolver()
        self._interval = interval
        self._timeout = timeout
        self._gap = recheck_gap
        self._clock = clock
        self._greeting_ports = greeting_ports
        self._metrics = metrics.for_country(country)
        self._running: asyncio.Task[None] | None = None
        # The agent's log context (country, agent id) for every run, also one a job's
        # failure started: a port turning blocked is the agent's news, not that job's.
        self._context = contextvars.copy_context()
        self._last_run = -float("inf")  # monotonic time the last run started
        self._blocked: list[int] = []
        self._resolver_ok: bool | None = None

    @classmethod
    def from_settings(
        cls, settings: SelfCheckSettings, country: str, clock: Clock
    ) -> "SelfChecks | None":
        """The self-checks of `country`'s agent; None when neither AGENT_CANARIES nor
        AGENT_CANARY_RESOLVE is set."""
        if settings.agent_canaries is None and settings.agent_canary_resolve is None:
            return None
        return cls(
            country,
            parse_canaries(settings.agent_canaries) if settings.agent_canaries else [],
            settings.agent_canary_resolve,
            interval=settings.agent_canary_interval_seconds,
            timeout=settings.agent_canary_timeout_seconds,
            clock=clock,
        )

    @property
    def blocked(self) -> list[int]:
        """Ports every canary of which failed its last run."""
        return self._blocked

    def snapshot(self) -> SelfCheck:
        """The heartbeat's `selfCheck`, bounded in size."""
        listed = sorted(self.states, key=lambda s: s.ok is not False)[:HEARTBEAT_CANARIES]
        return SelfCheck(
            canaries=[
                CanaryState(
                    kind=s.kind,
                    target=s.target[:TARGET_MAX],
                    ok=s.ok,
                    checked_at=s.checked_at,
                    latency_ms=s.latency_ms,
                    error=s.error,
                )
                for s in listed
            ],
            blocked_ports=list(self._blocked),
            resolver_ok=self._resolver_ok,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run every canary now and every interval after, until `stop` is set."""
        self._context = contextvars.copy_context()
        try:
            await run_every(self._interval, self._run_now, name="self-check", stop=stop)
        finally:
            if self._running is not None:
                self._running.cancel()
                await asyncio.wait([self._running])

    async def recheck(self) -> None:
        """After a check failed before a server answered: join the run under way, or start
        one unless the last started within the recheck gap (its states are fresh enough)."""
        if self._running is None and self._clock.monotonic() - self._last_run < self._gap:
            return
        await self._run_now()

    async def _run_now(self) -> None:
        if self._running is None:
            self._last_run = self._clock.monotonic()
            self._running = asyncio.create_task(self._run_all(), context=self._context.copy())
            self._running.add_done_callback(self._ran)
        # wait(), not the task itself: a caller cancelled meanwhile leaves the run to the others.
        await asyncio.wait([self._running])

    def _ran(self, task: asyncio.Task[None]) -> None:
        if self._running is task:
            self._running = None

    async def _run_all(self) -> None:
        probes = [self._probe_port(host, port) for host, port in self._canaries]
        if self._resolve_name is not None:
            probes.append(self._probe_resolver(self._resolve_name))
        seen = await asyncio.gather(*probes)
        checked_at = iso_ms(self._clock.now())
        for state, (error, latency_ms) in zip(self.states, seen, strict=True):
            state.ok, state.error = error is None, (error or "")[:ERROR_MAX]
            state.checked_at, state.latency_ms = checked_at, latency_ms
            self._metrics.canary(state.kind, state.target, state.ok)
        self._note_changes()

    def _note_changes(self) -> None:
        """One log line when a port becomes blocked or unblocked, or the resolver check turns;
        never one per check."""
        blocked, was = blocked_ports(self.states), self._blocked
        for port in sorted(set(blocked) - set(was)):
            failing = [f"{s.target} {s.error}" for s in self.states if canary_port(s) == port]
            log.warning("port_blocked", port=port, canaries=failing)
        for port in sorted(set(was) - set(blocked)):
            log.info("port_unblocked", port=port)
        for port in {p for p in map(canary_port, self.states) if p is not None}:
            self._metrics.port_blocked(port, port in blocked)
        self._blocked = blocked
        ok = resolver_ok(self.states)
        if ok is False and self._resolver_ok is not False:
            error = next(s.error for s in self.states if s.kind == RESOLVER)
            log.warning("resolver_check_failing", name=self._resolve_name, error=error)
        elif ok and self._resolver_ok is False:
            log.info("resolver_check_recovered", name=self._resolve_name)
        self._resolver_ok = ok

    async def _probe_port(self, host: str, port: int) -> tuple[str | None, float | None]:
        """(why it failed or None, milliseconds to connect and, on a plain-text port, greet)."""
        started = time.perf_counter()
        connected = False
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(host, port)
                connected = True
                try:
                    if port in self._greeting_ports and not await reader.readline():
                        return "closed before greeting", None
                finally:
                    writer.close()
        except TimeoutError:
            return ("no greeting" if connected else "timeout connecting"), None
        except socket.gaierror as exc:
            return f"dns: {exc.strerror or exc}", None
        except ConnectionRefusedError:
            return "refused", None
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
            return getattr(exc, "strerror", None) or type(exc).__name__, None
        return None, round((time.perf_counter() - started) * 1000, 3)

    async def _probe_resolver(self, name: str) -> tuple[str | None, float | None]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                await self._resolver.resolve(name)
        except TimeoutError:
            return "timeout resolving", None
        except (OSError, UnicodeError) as exc:  # socket.gaierror among the first
            return getattr(exc, "strerror", None) or type(exc).__name__, None
        return None, round((time.perf_counter() - started) * 1000, 3)
