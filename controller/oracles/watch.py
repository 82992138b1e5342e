"""The oracles' health, moved every pass (the alerter role, `OracleWatch.run_once`): each
country's resolver from its canaries' newest answers (none coming: `unknown`), and the oracles
of each side check that has its own (`frame.Oracles`: each list by its RFC 5782 test entries),
stepped and told by controller.operator_health: a change that held is one `fleet` notice (what
is wrong, where, what the operator sets; the fleet's own budget, never the outages') to the
owners of each organization whose monitors that oracle decides there and to the deployment's
operators, and a log line. An oracle no round asked lately (a country without agents now) is
`unchecked`: never told. The metric `mailprobe_oracle_state` is read from the stored states
(controller/oracles/metrics.py).
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import structlog

from controller.db.pool import Conn
from controller.notify.texts import Texts, with_facts
from controller.operator_health import store as health_db
from controller.operator_health.rules import HOLD, Change, Health, Stored
from controller.operator_health.watch import move, tell_operators, tell_owners
from controller.oracles import rules
from controller.oracles import store as db
from controller.oracles.rules import RESOLVER
from controller.sidechecks.frame import Oracles
from shared.clock import Clock
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)


class OracleWatch:
    def __init__(
        self,
        pool: asyncpg.Pool,
        oracles: Sequence[Oracles] = (),
        *,
        dns_window_s: int,
        hold: timedelta = HOLD,
        clock: Clock,
    ) -> None:
        """`oracles`: the side checks' own oracles (the operator's lists); `clock`: the instant
        health is judged at when a pass is not given one."""
        self._pool = pool
        self._clock = clock
        self._oracles = tuple(oracles)
        self._dns_window = timedelta(seconds=dns_window_s)
        self._hold = hold

    async def run_once(self, now: datetime | None = None) -> None:
        at = now or self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            canaries = await db.canaries(conn, at - self._dns_window)
            now_health = {(RESOLVER, cc): rules.resolver_health(c) for cc, c in canaries.items()}
            through: dict[str, Oracles] = {}
            for source in self._oracles:
                judged = await source.healths(conn, at)
                now_health |= {key: Health(h.state, h.reason) for key, h in judged.items()}
                for cc in await source.asked_through_resolver(conn, at):
                    through.setdefault(cc, source)
            now_health, quiet = rules.root_cause(now_health, through)
            stored = await health_db.healths(conn, db.HEALTH, lock=True)
            gone = Health("unchecked", "not asked lately")
            told = await move(
                conn, db.HEALTH, stored, now_health, at, hold=self._hold, gone=gone, quiet=quiet
            )
            for t in told:
                await self._tell(conn, *t, at, through=through.get(t.country))

    async def _tell(
        self,
        conn: Conn,
        oracle: str,
        country: str,
        s: Stored,
        change: Change,
        now: datetime,
        *,
        through: Oracles | None,
    ) -> None:
        log.warning(
            "oracle " + change, oracle=oracle, country=country, state=s.state, reason=s.reason
        )
        source = self._source(oracle)
        if oracle == RESOLVER:
            label = "the agents' DNS resolver"
            what = "mail DNS and reverse DNS"
            if through is not None:
                what = f"mail DNS, reverse DNS and {through.through}"
            orgs = await db.resolver_organizations(conn, country)
        else:
            label = (source.label(oracle) if source is not None else None) or oracle
            what = source.what if source is not None else "the answers it vouches for"
            orgs = await source.affected(conn, country, now) if source is not None else []
        texts = notice(oracle, country, s, change, label, what)
        key = f"oracle:{oracle}:{country}:{change}:{iso_ms(s.since)}"
        await tell_owners(conn, orgs, texts, key, now)
        await tell_operators(conn, texts, key, now)

    def _source(self, oracle: str) -> Oracles | None:
        return next((o for o in self._oracles if o.label(oracle) is not None), None)


def notice(oracle: str, country: str, s: Stored, change: Change, label: str, what: str) -> Texts:
    """An oracle that became unhealthy (or unknown) in a country, or recovered, in words: what
    its answers mean for the monitors there (`what`: the resolver's says so of the side checks'
    oracles asked through it, `rules.root_cause`, none of which is told on its own then), and
    what the operator sets."""
    if change == "unhealthy":
        subject = f"[mailprobe] Not believed in {country}: {label}"
        lead = (
            f"{label[0].upper()}{label[1:]} in {country} is {s.state} since {iso_ms(s.since)}:"
            f" {s.reason}. Until it recovers, the {what} of your monitors from {country} is"
            " unknown (never a finding about them)."
        )
        facts = [
            ("Oracle", oracle),
            ("Country", country),
            ("State", s.state),
            ("Why", s.reason or "-"),
            ("What to set", rules.fix(oracle, s.reason)),
        ]
    else:
        subject = f"[mailprobe] Believed again in {country}: {label}"
        lead = f"{label[0].upper()}{label[1:]} in {country} answers truthfully again."
        facts = [("Oracle", oracle), ("Country", country), ("Since", iso_ms(s.since))]
    now = f"is {s.state}" if change == "unhealthy" else "recovered"
    sms = f"mailprobe: {label} in {country} {now}"
    return with_facts(subject, lead, facts, sms)
