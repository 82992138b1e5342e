"""Blocklist queries per hour (issue 58): what the scheduler's rounds ask the lists, per 10,000
monitored addresses, with the answers shared across monitors and organizations.

Simulated, not run: 10,000 SMTP monitors of 20 organizations, each listing one outbound address
(`reputation.ips`) that its host also resolves to, drawn from N distinct addresses (so an address is
monitored by 10,000 / N monitors, of several organizations), checked every 300 s from 2 of 3
countries, the default lists (Spamhaus ZEN and DBL, Barracuda, SpamCop, PSBL, Mailspike),
`BLOCKLIST_INTERVAL_SECONDS` 6 h. Each monitor's rounds over the simulated hours go through the real
rules: `first_of_window` picks the rounds that ask, and the real `RoundPlanner.round` plans those
(countries, jobs, `BlocklistAsk` with the names fresh in each country skipped). What a job makes the
agent ask is counted as the agent asks it (agent/sidechecks/blocklists.py): each name of the ask
(its ips and domains, with the lists' RFC 5782 test entries, and the host's address) not in `skip`,
on every list of its kind; the lists' test entries, asked beside every other answer, are counted as
the agent's shared ask makes them (agent.blocklist_tests: at most once per `TTL_S` per list, one
agent per country), beside the figures of the agents before (test entries only when not fresh).
The answers feed a view of fresh names that refreshes every `FreshNames.REFRESH_S`, as the
scheduler's does, so names asked twice within a refresh are counted twice.

Twelve hours warm the shared answers up from none, then six hours are counted: the figure is
their mean per hour (and the busiest hour), beside what the same rounds would ask without the
shared answers. No target: the figures are for docs/alerts.md and sizing a resolver or a
Spamhaus DQS account.
"""

import ipaddress
import random
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from agent.blocklist_tests import TTL_S
from controller.monitors.store import Monitor, RoundState, WatchedMonitor, decode_config
from controller.scheduling import rules as schedule
from controller.secrets.box import SecretBox, generate_key
from controller.secrets.seal_keys import CountryKeys
from controller.sidechecks.blocklists.rules import DEFAULT_LISTS, BlockList
from controller.sidechecks.blocklists.watch import FreshNames
from shared.sidechecks.blocklists import WIRE as BLOCKLISTS
from testkit.common import machine
from testkit.scheduling import Answered, round_planner

MONITORS = 10_000
ORGS = 20
COUNTRIES = frozenset({"DE", "US", "SG"})
CHECK_INTERVAL_S = 300
LIST_INTERVAL_S = 6 * 3600
WARM_H, COUNTED_H = 12, 6
DISTINCT = (10_000, 2_500, 500)  # distinct addresses over the 10,000 monitors
T0 = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class Figures:
    distinct: int
    orgs_per_address: float
    rounds: int  # rounds planned in the counted hours
    asking: int  # of which asked the lists (a job per country each)
    per_hour: list[int]  # queries (names x lists) asked per counted hour
    uncached_per_hour: float  # the same rounds' asks without `skip`
    skip_per_job: float  # names a job's `skip` carries, on average

    @property
    def mean(self) -> float:
        return sum(self.per_hour) / len(self.per_hour)


def _address(i: int) -> str:
    return f"81.{2 + i // 65_536}.{i // 256 % 256}.{i % 256}"


def _monitors(distinct: int, seed: int = 58) -> list[WatchedMonitor]:
    draw = random.Random(seed)
    out = []
    for i in range(MONITORS):
        address = _address(draw.randrange(distinct) if distinct < MONITORS else i)
        monitor = Monitor(
            id=i + 1,
            public_id=uuid.UUID(int=draw.getrandbits(128), version=4),
            organization_id=draw.randrange(ORGS) + 1,
            customer_id=1,
            type="smtp",
            name=f"m{i}",
            hostname=address,  # its host is its outbound address
            port=None,
            status="active",
            check_interval=CHECK_INTERVAL_S,
            timeout_seconds=30,
            allowed_country_codes=None,
            config=decode_config("smtp", {}),
            notification_email=None,
            notification_phone_number=None,
            mail_domain=None,
            reputation={"ips": [address], "domains": []},
            next_due_at=None,
            created_at=T0,
            updated_at=T0,
            last_checked_at=None,
            config_as_sent={},
        )
        rounds = RoundState(
            countries=None, since=T0, mail_dns_at=None, login_failures=0, login_retry_at=None
        )
        out.append(WatchedMonitor(monitor, rounds))
    return out


def _kind(name: str) -> str:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return "domain"
    return "ip"


def _queries(names: list[str], lists: tuple[BlockList, ...]) -> int:
    per_kind = {k: sum(1 for b in lists if b.kind == k) for k in ("ip", "domain")}
    return sum(per_kind[_kind(n)] for n in names)


def _tests_beside(
    asked: list[str],
    country: str,
    at: datetime,
    lists: tuple[BlockList, ...],
    last: dict[str, datetime],
) -> int:
    """The test entries a country's agent asks beside its other names (agent.blocklist_tests):
    each list asked about anything has them, asked at most once per `TTL_S` (`last`: zone →
    when, one agent per country)."""
    kinds = {_kind(n) for n in asked}
    spent = 0
    for b in lists:
        key = f"{country}:{b.zone}"
        if b.kind in kinds and (at - last.get(key, T0 - timedelta(days=1))).total_seconds() > TTL_S:
            last[key] = at
            spent += len(b.tests)
    return spent


def simulate(
    distinct: int, lists: tuple[BlockList, ...] = DEFAULT_LISTS, beside: bool = True
) -> Figures:
    """`beside`: the agent asks the lists' test entries beside any other name (this version);
    False: as the agents before it did (test entries only when not fresh)."""
    watched = _monitors(distinct)
    box = SecretBox(generate_key())
    answered: dict[str, dict[str, datetime]] = defaultdict(dict)  # country → name → when
    found: dict[tuple[int, str], frozenset[str]] = {}  # a monitor's last round's names
    view: dict[str, frozenset[str]] = {}
    seen: dict[tuple[int, str], frozenset[str]] = {}
    refreshed = [T0 - timedelta(days=1)]

    with tempfile.TemporaryDirectory() as keys:
        # The planner reads `view` and `seen` as they are refreshed below.
        answers = Answered(lists, LIST_INTERVAL_S, names=view, found=seen)
        planner = round_planner(box, CountryKeys(keys), default_countries=2, blocklists=answers)
    # Every round of the simulated hours, in time order.
    start, end = T0, T0 + timedelta(hours=WARM_H + COUNTED_H)
    due: list[tuple[datetime, int]] = []
    for n, w in enumerate(watched):
        public_id = str(w.monitor.public_id)
        at = schedule.next_due(
            schedule.phase_ms(public_id, CHECK_INTERVAL_S), CHECK_INTERVAL_S, start
        )
        while at < end:
            if schedule.first_of_window(
                "blocklists", public_id, at, CHECK_INTERVAL_S, LIST_INTERVAL_S
            ):
                due.append((at, n))
            at += timedelta(seconds=CHECK_INTERVAL_S)
    due.sort()
    counted_from = T0 + timedelta(hours=WARM_H)
    rounds = MONITORS * COUNTED_H * 3600 // CHECK_INTERVAL_S
    per_hour = [0] * COUNTED_H
    uncached = asking = skipped = jobs = 0
    tested: dict[str, datetime] = {}  # country:zone → when its test entries were last asked
    tests = {t for b in lists for t in b.tests}
    for at, n in due:
        if (at - refreshed[0]).total_seconds() >= FreshNames.REFRESH_S:
            since = at - timedelta(seconds=LIST_INTERVAL_S)
            view.clear()
            view.update(
                (cc, frozenset(name for name, t in got.items() if t >= since))
                for cc, got in answered.items()
            )
            seen.clear()
            seen.update(found)
            refreshed[0] = at
        w = watched[n]
        target = WatchedMonitor(msgspec.structs.replace(w.monitor, next_due_at=at), w.rounds)
        plan = planner.round(target, at + timedelta(milliseconds=200), COUNTRIES)
        counting = at >= counted_from
        for job in plan.jobs:
            ask = BLOCKLISTS.ask_of(job.side_checks)
            assert ask is not None, "a round first_of_window picks asks the lists"
            # As the agent gathers them: the ask's names, then the host's address.
            names = list(dict.fromkeys([*ask.ips, *ask.domains, job.hostname]))
            skip = set(ask.skip)
            asked = [name for name in names if name not in skip]
            for name in asked:
                answered[job.country][name] = at
            found[(w.monitor.id, job.country)] = frozenset(names)
            if counting:
                if beside:  # the test entries come from the agent's shared ask
                    real = [name for name in asked if name not in tests]
                    spent = _queries(real, lists) + _tests_beside(
                        asked, job.country, at, lists, tested
                    )
                else:
                    spent = _queries(asked, lists)
                per_hour[int((at - counted_from).total_seconds() // 3600)] += spent
                uncached += _queries(names, lists)
                skipped += len(ask.skip)
                jobs += 1
        asking += counting
    users: dict[str, set[int]] = defaultdict(set)
    for w in watched:
        users[w.monitor.hostname].add(w.monitor.organization_id)
    return Figures(
        distinct=len(users),
        orgs_per_address=sum(len(o) for o in users.values()) / len(users),
        rounds=rounds,
        asking=asking,
        per_hour=per_hour,
        uncached_per_hour=uncached / COUNTED_H,
        skip_per_job=skipped / max(jobs, 1),
    )


def run() -> bool:
    print(
        f"blocklists: queries per hour per {MONITORS:,} monitored addresses ({machine()})\n"
        f"  {MONITORS:,} SMTP monitors of {ORGS} organizations, each one address (listed and its"
        f" host), every {CHECK_INTERVAL_S} s from 2 of {len(COUNTRIES)} countries;"
        f" {len(DEFAULT_LISTS)} lists"
        f" ({sum(b.kind == 'ip' for b in DEFAULT_LISTS)} IP, "
        f"{sum(b.kind == 'domain' for b in DEFAULT_LISTS)} domain), asked every"
        f" {LIST_INTERVAL_S // 3600} h; {WARM_H} h warm-up, {COUNTED_H} h counted",
        flush=True,
    )
    print(
        "  distinct  orgs/addr  rounds/h  asking/h  queries/h (mean, max)"
        "  without sharing  per distinct address/h  skip/job",
        flush=True,
    )
    for distinct in DISTINCT:
        for beside in (True, False):
            started = time.perf_counter()
            f = simulate(distinct, beside=beside)
            print(
                f"  {f.distinct:>8,}  {f.orgs_per_address:>9.1f}  {f.rounds // COUNTED_H:>8,}"
                f"  {f.asking // COUNTED_H:>8,}  {f.mean:>10,.0f} {max(f.per_hour):>8,}"
                f"  {f.uncached_per_hour:>15,.0f}  {f.mean / f.distinct:>22.2f}"
                f"  {f.skip_per_job:>8.1f}"
                f"   ({time.perf_counter() - started:.0f} s)"
                + ("" if beside else "  <- test entries only when not fresh (agents before)"),
                flush=True,
            )
    print(
        "  queries: names x lists of their kind the agents ask, the lists' RFC 5782 test entries"
        " included; no target",
        flush=True,
    )
    return True


if __name__ == "__main__":
    run()
