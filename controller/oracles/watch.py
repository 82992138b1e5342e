"""The oracles' health, moved every pass (the alerter role, `OracleWatch.run_once`): each
country's resolver from its canaries' newest answers (none coming: `unknown`), each list from
its RFC 5782 test entries' (controller.sidechecks.blocklists.watch.healths), stepped and told by
controller.operator_health: a change that held is one `fleet` notice (what is wrong, where,
what the operator sets; the fleet's own budget, never the outages') to the owners of each
organization whose monitors that oracle decides there and to the deployment's operators, and a
log line. An oracle no round asked
lately (a country without agents now) is `unchecked`: never told. The metric
`mailprobe_oracle_state` is read from the stored states (controller/oracles/metrics.py).
"""

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
from controller.sidechecks.blocklists import store as lists_db
from controller.sidechecks.blocklists.rules import BlockList
from controller.sidechecks.blocklists.watch import healths as list_healths
from shared.clock import WALL, Clock
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)


class OracleWatch:
    def __init__(
        self,
        pool: asyncpg.Pool,
        lists: tuple[BlockList, ...],
        *,
        list_interval_s: int,
        dns_window_s: int,
        hold: timedelta = HOLD,
        clock: Clock = WALL,
    ) -> None:
        """`clock`: the instant health is judged at when a pass is not given one."""
        self._pool = pool
        self._clock = clock
        self._lists = lists
        self._list_window = timedelta(seconds=2 * list_interval_s)
        self._dns_window = timedelta(seconds=dns_window_s)
        self._hold = hold

    async def run_once(self, now: datetime | None = None) -> None:
        at = now or self._clock.now()
        list_since = at - self._list_window
        async with self._pool.acquire() as conn, conn.transaction():
            canaries = await db.canaries(conn, at - self._dns_window)
            tests = {t for b in self._lists for t in b.tests}
            answers = await lists_db.answers(conn, tests, list_since) if self._lists else []
            failed = await lists_db.failures(conn, list_since) if self._lists else {}
            by_list = list_healths(self._lists, answers, failed)
            now_health = {(RESOLVER, cc): rules.resolver_health(c) for cc, c in canaries.items()}
            now_health |= {key: Health(h.state, h.reason) for key, h in by_list.items()}
            through = await lists_db.through_resolver(conn, list_since) if self._lists else ()
            now_health, quiet = rules.root_cause(now_health, through)
            stored = await health_db.healths(conn, db.HEALTH, lock=True)
            gone = Health("unchecked", "not asked lately")
            told = await move(
                conn, db.HEALTH, stored, now_health, at, hold=self._hold, gone=gone, quiet=quiet
            )
            for t in told:
                await self._tell(conn, *t, list_since, at, lists=t.country in through)

    async def _tell(
        self,
        conn: Conn,
        oracle: str,
        country: str,
        s: Stored,
        change: Change,
        since: datetime,
        now: datetime,
        *,
        lists: bool,
    ) -> None:
        log.warning(
            "oracle " + change, oracle=oracle, country=country, state=s.state, reason=s.reason
        )
        texts = notice(oracle, country, s, change, self._label(oracle), lists=lists)
        key = f"oracle:{oracle}:{country}:{change}:{iso_ms(s.since)}"
        orgs = await db.affected_organizations(conn, oracle, country, since)
        await tell_owners(conn, orgs, texts, key, now)
        await tell_operators(conn, texts, key, now)

    def _label(self, oracle: str) -> str:
        if oracle == RESOLVER:
            return "the agents' DNS resolver"
        b = next((b for b in self._lists if b.zone == oracle), None)
        return f"the blocklist {b.label} ({b.zone})" if b is not None else oracle


def notice(
    oracle: str, country: str, s: Stored, change: Change, label: str, *, lists: bool = False
) -> Texts:
    """An oracle that became unhealthy (or unknown) in a country, or recovered, in words: what
    its answers mean for the monitors there, and what the operator sets. `lists`: the
    country's blocklists are asked through the resolver (`rules.root_cause`): its notice says
    so, and none goes about them."""
    what = "mail DNS and reverse DNS" if oracle == RESOLVER else "blocklist standing"
    if oracle == RESOLVER and lists:
        what = "mail DNS, reverse DNS and blocklist standing (the lists are asked through it)"
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
