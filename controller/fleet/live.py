"""Live agents: what this controller hears on `mon.heartbeats.>` (core NATS), kept in memory.

Every controller replica subscribes and keeps its own view; nothing is stored in NATS, and
reading the view costs no server resource. Country and agent id come from the subject (an
agent's NATS account lets it publish only under its own country, deploy/nats_conf.py); a body
that disagrees is logged and dropped. The seen time is this controller's clock; an agent not
heard of for `ttl_s` is gone, and a beat with `stopping` removes it at once.

Each country holds at most `per_country_max` agents: heartbeats of further agent ids of a full
country are dropped (logged), so no country's flood pushes out or blocks another's. A heartbeat
is a few hundred bytes (a few KiB with its self-check); one over MAX_HEARTBEAT_BYTES is dropped,
and dropped messages are logged at most once a second per country and reason (with the count of
those not logged), so no agent can fill the controller's memory or its log.

An agent's self-check (`selfCheck`: canaries, blocked ports) is kept capped
(controller.fleet.self_check); one that does not decode is dropped, with a log line, and the beat is
kept without it: a malformed self-check never makes a live agent look gone. A change of an
agent's blocked ports is logged (at most once a second per country), not every beat.

Warm-up: after the connection to NATS is (re)made, the view is incomplete until every live
agent had the time to beat; until `warmup_s` has passed, `is_warm()` is False and the
scheduler records no `no_agent` round. Time alone is not enough on a busy host: beats sent
within the warm-up may still wait unread in the connection or undelivered in the
subscription's queue while this process's loop is busy (a restarted controller catching up).
So once the time has passed, a round trip to the server (after which every beat it sent
before has been read) and an empty subscription queue make the view warm.

Time NATS is away does not count against an agent: the view's clock (`_now`) stops while this
controller is not connected, so an agent ages only while it could have been heard. After an
outage every client reconnects on its own schedule (an agent up to its reconnect wait after the
server is back, later on a busy host): the agents heard before it stay live for the TTL of
connected time, as through any gap between two beats, instead of vanishing at once and their
countries' rounds being recorded `no_agent`.
"""

import asyncio
import contextlib
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from controller.fleet import self_check
from controller.fleet.load import CountryLoad
from controller.observability import metrics
from shared.heartbeats import HEARTBEAT_TTL_S, WARMUP_S
from shared.messages import (
    FEATURE_PREEMPT,
    FEATURE_PREEMPT_CARRY,
    FEATURE_TENANT_LOADS,
    AgentHeartbeat,
    Preempt,
    SelfCheck,
    encode,
)
from shared.subjects import HEARTBEATS_SUBJECTS, control_subject, heartbeats_subject
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

DEFAULT_PER_COUNTRY_MAX = 500
MAX_HEARTBEAT_BYTES = 16384  # a beat with self_check.CANARIES_MAX canaries at their limits fits
LOG_EVERY_S = 1.0
WARM_POLL_S = 0.05
_COUNTRY = re.compile(r"[A-Z]{2}")


class _Beat(AgentHeartbeat, kw_only=True):
    """A heartbeat whose self-check is decoded apart, so a malformed one loses only itself."""

    self_check: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # type: ignore[assignment]


_decode_beat = msgspec.json.Decoder(_Beat).decode
_decode_self_check = msgspec.json.Decoder(SelfCheck).decode


class AgentsUnknownError(Exception):
    """The live agents view is not complete (NATS disconnected, or just reconnected)."""


@dataclass
class _Seen:
    beat: AgentHeartbeat  # with this controller's seen time
    at: float  # clock() at reception


class _Quiet:
    """Warnings at most once per (event, country) every LOG_EVERY_S, counting the rest."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def warn(self, event: str, country: str, **fields: object) -> None:
        key = (event, country if _COUNTRY.fullmatch(country) else "?")
        now = self._clock()
        if now < self._until.get(key, float("-inf")):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._until[key] = now + LOG_EVERY_S
        suppressed = self._suppressed.pop(key, 0)
        log.warning(event, country=key[1], suppressed=suppressed, **fields)


class LiveAgents:
    """The live agents view of one controller (see the module's docstring)."""

    def __init__(
        self,
        nc: NATS,
        *,
        per_country_max: int = DEFAULT_PER_COUNTRY_MAX,
        ttl_s: float = HEARTBEAT_TTL_S,
        warmup_s: float = WARMUP_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime],
    ) -> None:
        """`clock`: the monotonic seconds beats are aged by; `wall`: the instant a beat is seen
        at (its `seen_at`)."""
        self._nc = nc
        self._wall = wall
        self._max = per_country_max
        self._ttl_s = ttl_s
        self._warmup_s = warmup_s
        self._clock = clock
        self._by_country: dict[str, dict[str, _Seen]] = {}
        self._quiet = _Quiet(clock)
        self._sub: Subscription | None = None
        self._connected_at: float | None = None
        self._reconnects = 0
        self._settled_for: float | None = None  # the warm-up (its start) whose beats are read
        self._settling: asyncio.Task[None] | None = None
        self._away_since: float | None = None  # clock() when NATS was first seen away
        self._away_total = 0.0  # seconds NATS was away before that, all outages together

    async def start(self) -> None:
        """Subscribe; the warm-up starts now."""
        self._sub = await self._nc.subscribe(HEARTBEATS_SUBJECTS, cb=self._on_message)
        metrics.watch_agents(self)
        self._reconnects = self._nc.stats["reconnects"]
        self._connected_at = self._clock()

    async def stop(self) -> None:
        metrics.unwatch_agents(self)
        if self._settling is not None:
            self._settling.cancel()
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):  # a closed connection has none left
                await self._sub.unsubscribe()
            self._sub = None

    def is_warm(self) -> bool:
        """Whether the view is complete: connected, connected long enough for every live agent to
        have beaten since, and every beat sent meanwhile read (see the module's docstring). A
        reconnect seen here restarts the warm-up."""
        self._now()  # notes an outage, or its end
        if self._sub is None or not self._nc.is_connected:
            self._connected_at = None
            return False
        reconnects = self._nc.stats["reconnects"]
        if self._connected_at is None or reconnects != self._reconnects:
            self._reconnects = reconnects
            self._connected_at = self._clock()
            log.info("agents_view_warming_up", seconds=self._warmup_s)
        if self._clock() - self._connected_at < self._warmup_s:
            return False
        if self._warmup_s <= 0 or self._settled_for == self._connected_at:
            return True
        if self._settling is None or self._settling.done():
            self._settling = asyncio.get_running_loop().create_task(
                self._settle(self._sub, self._connected_at)
            )
        return False

    async def _settle(self, sub: Subscription, warm_up: float) -> None:
        """Mark the warm-up that started at `warm_up` complete once every beat the server sent
        so far has reached the view: a round trip to the server, then the subscription's queue
        drained. Left undone when NATS is away (the next `is_warm` tries again)."""
        try:
            await self._nc.flush(timeout=5)
        except (TimeoutError, nats.errors.Error):
            return
        while sub.pending_msgs:  # noqa: ASYNC110 - the subscription has no event for "empty"
            await asyncio.sleep(WARM_POLL_S / 5)
        if self._connected_at == warm_up:
            self._settled_for = warm_up

    async def until_warm(self) -> None:
        """Wait for the view to be complete (say, a triggered round right after this
        controller connected): at most two warm-ups, since a reconnect may be noticed only
        now; AgentsUnknownError if it is not by then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self._warmup_s
        while not self.is_warm():
            if loop.time() >= deadline:
                raise AgentsUnknownError("live agents are not known yet: NATS is (re)connecting")
            await asyncio.sleep(WARM_POLL_S)

    def agents(self) -> list[AgentHeartbeat]:
        """Every live agent, by country and id."""
        now = self._now()
        found = [s.beat for cc in list(self._by_country) for s in self._live(cc, now).values()]
        return sorted(found, key=lambda a: (a.country, a.agent_id))

    def countries(self) -> frozenset[str]:
        """The countries with a live agent."""
        now = self._now()
        return frozenset(cc for cc in list(self._by_country) if self._live(cc, now))

    def countries_with(self, feature: str) -> frozenset[str]:
        """The countries whose every live agent has `feature` (agents of a country share its
        jobs, so one without it could take any of them)."""
        now = self._now()
        return frozenset(
            cc
            for cc in list(self._by_country)
            if (live := self._live(cc, now))
            and all(feature in seen.beat.features for seen in live.values())
        )

    def countries_lacking(self, feature: str) -> frozenset[str]:
        """The countries with a live agent that does not have `feature`."""
        now = self._now()
        return frozenset(
            cc
            for cc in list(self._by_country)
            if any(feature not in seen.beat.features for seen in self._live(cc, now).values())
        )

    def load(self, cc: str) -> CountryLoad | None:
        """Country `cc`'s slots and what holds them, summed over its live agents' last beats,
        with the view's time of the oldest of those beats (`now()`'s clock); None when it has
        no live agent, or one that does not report its tenants' load."""
        live = self._live(cc, self._now())
        if not live or any(FEATURE_TENANT_LOADS not in s.beat.features for s in live.values()):
            return None
        held: Counter[str] = Counter()
        usage: defaultdict[str, float] = defaultdict(float)
        checks: defaultdict[str, float] = defaultdict(float)
        holders: defaultdict[str, dict[str, int]] = defaultdict(dict)
        carriers: set[str] = set()
        unlisted = 0
        for seen in live.values():
            preempts = FEATURE_PREEMPT in seen.beat.features
            if preempts and FEATURE_PREEMPT_CARRY in seen.beat.features:
                carriers.add(seen.beat.agent_id)
            for t in seen.beat.tenants:
                held[t.tenant] += t.held
                usage[t.tenant] += t.usage
                checks[t.tenant] += t.checks
                if preempts and t.held > 0:
                    holders[t.tenant][seen.beat.agent_id] = t.held
            # A beat lists TENANT_LOADS_MAX tenants at most: checks running beyond what the
            # listed ones hold are other tenants', and their slots are held all the same.
            unlisted += max(0, seen.beat.in_flight - sum(t.held for t in seen.beat.tenants))
        capacity = sum(s.beat.capacity for s in live.values())
        heard_at = min(s.at for s in live.values())
        return CountryLoad(
            capacity,
            dict(held),
            dict(usage),
            heard_at,
            dict(checks),
            dict(holders),
            frozenset(carriers),
            unlisted,
        )

    def now(self) -> float:
        """The view's clock (see `_now`)."""
        return self._now()

    async def preempt(self, requests: Sequence[Preempt]) -> None:
        """Ask agents to cancel a check each (core NATS, `mon.control.CC.<agentId>`): a request
        lost (NATS away, the agent gone) is not retried; the scheduler's bookkeeping forgets it
        once the beats would show it (controller.scheduling.admission_ledger)."""
        for request in requests:
            subject = control_subject(request.country, request.agent_id)
            try:
                await self._nc.publish(subject, encode(request))
            except (nats.errors.Error, OSError) as exc:
                log.warning("preempt_not_sent", subject=subject, error=repr(exc))
                continue
            log.info(
                "preempt_asked",
                country=request.country,
                agent_id=request.agent_id,
                tenant=request.tenant,
                held=request.held,
                share=request.share,
                carried=request.job.job_id if request.job is not None else None,
            )

    async def _on_message(self, msg: Msg) -> None:
        self.heard(msg.subject, msg.data)

    def heard(self, subject: str, data: bytes) -> None:
        """Take one heartbeat message; anything malformed is logged and dropped."""
        parts = subject.split(".")
        cc = parts[2] if len(parts) > 2 else ""
        try:
            if len(parts) != 4 or heartbeats_subject(cc, parts[3]) != subject:
                raise ValueError("expected mon.heartbeats.CC.<agentId>")
            if len(data) > MAX_HEARTBEAT_BYTES:
                raise ValueError(f"{len(data)} bytes, over {MAX_HEARTBEAT_BYTES}")
            lenient = _decode_beat(data)
        except (ValueError, msgspec.DecodeError) as exc:
            self._quiet.warn("heartbeat_malformed", cc, subject=subject, error=str(exc))
            return
        # Kept with this controller's seen time, in the one copy made of the decoded beat.
        beat = AgentHeartbeat(
            **msgspec.structs.asdict(lenient)
            | {
                "self_check": self._self_check(cc, subject, lenient),
                "seen_at": iso_ms(self._wall()),
            }
        )
        agent_id = parts[3]
        if (beat.country, beat.agent_id) != (cc, agent_id):
            self._quiet.warn(
                "heartbeat_disagrees_with_subject",
                cc,
                subject=subject,
                body_country=beat.country,
                body_agent_id=beat.agent_id,
            )
            return
        now = self._now()
        agents = self._live(cc, now)
        if beat.stopping:
            agents.pop(agent_id, None)
            return
        if agent_id not in agents and len(agents) >= self._max:
            self._quiet.warn("heartbeat_dropped_country_full", cc, limit=self._max)
            return
        was = agents.get(agent_id)
        blocked = _blocked(beat)
        if blocked != (_blocked(was.beat) if was is not None else []):
            self._quiet.warn(
                "agent_blocked_ports_changed", cc, agent_id=agent_id, blocked_ports=blocked
            )
        agents[agent_id] = _Seen(beat, now)

    def _self_check(self, cc: str, subject: str, beat: _Beat) -> SelfCheck | None:
        """The beat's self-check, capped; None when it has none, or one that does not decode
        (logged)."""
        if bytes(beat.self_check) in (b"", b"null"):
            return None
        try:
            check, cut = self_check.cap(_decode_self_check(beat.self_check))
        except msgspec.DecodeError as exc:
            self._quiet.warn("self_check_malformed", cc, subject=subject, error=str(exc))
            return None
        if cut:
            self._quiet.warn("self_check_capped", cc, subject=subject, cut=cut[:5])
        return check

    def _now(self) -> float:
        """The view's clock: `clock()` less the time NATS was seen away (it stands still during
        an outage), so agents age only while they could be heard."""
        raw = self._clock()
        if not self._nc.is_connected:
            if self._away_since is None:
                self._away_since = raw
            return self._away_since - self._away_total
        if self._away_since is not None:
            self._away_total += raw - self._away_since
            self._away_since = None
        return raw - self._away_total

    def _live(self, cc: str, now: float) -> dict[str, _Seen]:
        """Country `cc`'s agents, without those not heard of for the TTL (removed here)."""
        agents = self._by_country.setdefault(cc, {})
        for agent_id in [a for a, seen in agents.items() if now - seen.at > self._ttl_s]:
            del agents[agent_id]
        return agents


def _blocked(beat: AgentHeartbeat) -> list[int]:
    return beat.self_check.blocked_ports if beat.self_check is not None else []
