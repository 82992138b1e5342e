"""Flow incidents against ground truth (issue 66), Jepsen-style: seeded random histories of two
organizations' monitors sharing an MX, a relay, a mailbox server, with problems (a server
down) starting and ending at random rounds, overlapping, a flap inside a problem, a country
blocked (one country failing: not an outage), results stored late (one country's, or two:
only DE's in when the round is judged) and out of order, findings arriving at random, and a
controller (alerter) restarted in the middle of a pass. The harness knows which problems
happened and checks what the alerter made of them:

- every monitor's incidents are exactly its outages (opened after `DOWN_AFTER` failing rounds,
  closed after `RECOVER_AFTER` passing ones): none stranded open;
- each problem's outages are one flow incident, and one flow incident never holds outages of
  unrelated problems (problems are related when they share a monitor, one organization's
  server (a host, whatever the port: Postfix's submission beside Dovecot's IMAPS and POP3S)
  or a declared dependency) nor of two organizations; an outage opening while a directly
  related one (its server, a declaration) has been open for rounds joins, never opens its own;
- per flow incident and recipient: one opening notice, one end notice when it was told, a
  reminder at most once per reminder period; nothing else pages;
- a finding while an outage of its monitor (or of its host, in its organization) is open is
  evidence, never a notice; outside it is sent; another organization's outage on the same
  host silences nothing;
- outage notices are never the ones dropped by the budgets, and each source stays in its own.

Seeds are printed with the figures; `FLOW_HISTORY_SEEDS=1,2,3` replays others."""

import asyncio
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from controller.alerting.alerter import Alerter
from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from controller.monitors import store as monitors_db
from controller.notify.budget import Budget
from controller.notify.entry import Notice, Source, notify
from controller.notify.recipients import to_recipients
from controller.notify.texts import Texts
from shared.timefmt import utcnow
from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import LINKS, MONITOR_SECRET, Rig
from tests.conftest import Tenant, make_tenant

COUNTRIES = ("DE", "FR", "US")
DOWN_AFTER, RECOVER_AFTER = 2, 2  # the thresholds' defaults (controller.monitors.thresholds)
ROUNDS = 44
STEP = timedelta(seconds=20)  # the alerter's clock moves this much a round
GROUP_WAIT_S = 30
REMINDER_MINUTES = 2
# One seed in make test (a history takes seconds); FLOW_HISTORY_SEEDS=1,2,3 plays others.
SEEDS = [int(s) for s in os.environ.get("FLOW_HISTORY_SEEDS", "66").split(",")]
FINDING_BUDGET = 6  # ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR in the history


@dataclass(frozen=True)
class Spec:
    """A monitor of the history: its organization ("a" or "b"), kind, server and address."""

    org: str
    kind: str
    hostname: str
    port: int
    email: str
    depends_on: tuple[str, ...] = ()  # monitor names (their public ids) or host names


BOX: dict[str, Any] = {"user": "probe", "password": MONITOR_SECRET, "tls": True}
SPECS: dict[str, Spec] = {
    "a-mx": Spec("a", "smtp", "mx.shared.test", 25, "oncall@a.test"),
    "a-relay": Spec("a", "smtp", "relay.a.test", 587, "oncall@a.test"),
    "a-imap": Spec("a", "imap", "box.a.test", 993, "mail@a.test"),
    "a-pop3": Spec("a", "pop3", "box.a.test", 995, "mail@a.test", ("box.a.test",)),
    "a-trip": Spec("a", "roundtrip", "relay.a.test", 587, "oncall@a.test"),
    "a-web": Spec("a", "smtp", "web.a.test", 25, "oncall@a.test", ("a-mx",)),
    "a-lone": Spec("a", "smtp", "lone.a.test", 25, "oncall@a.test"),
    # Postfix's submission on Dovecot's host: one server with IMAPS and POP3S, other ports
    "a-submit": Spec("a", "smtp", "box.a.test", 587, "oncall@a.test"),
    "b-mx": Spec("b", "smtp", "mx.shared.test", 25, "ops@b.test"),
    "b-imap": Spec("b", "imap", "box.b.test", 993, "ops@b.test"),
    "b-dep": Spec("b", "smtp", "dep.b.test", 25, "ops@b.test", ("mx.shared.test",)),
}

# Fault domains: what fails together, and the leg a round trip names. "mx-a" is the shared MX
# failing for organization a's checks only (its path to it): b's monitor on that host stays up.
DOMAINS: dict[str, dict[str, str]] = {
    "mx": {"a-mx": "", "b-mx": "", "a-web": "", "b-dep": ""},
    "mx-a": {"a-mx": ""},
    "relay-a": {"a-relay": "", "a-trip": "send leg: "},
    # Dovecot down fails the submission beside it too (its SASL logins)
    "dovecot-a": {"a-imap": "", "a-pop3": "", "a-trip": "mailbox leg: ", "a-submit": ""},
    "web-a": {"a-web": ""},
    "lone-a": {"a-lone": ""},
    "postfix-a": {"a-submit": ""},
    "box-b": {"b-imap": ""},
}


MAILBOX_HOST = "box.a.test"  # the round trip's mailbox leg (monitor_config)


def _hosts(name: str, leg: str) -> set[str]:
    """The hosts a monitor's failure points to in a domain (a round trip's by its leg)."""
    spec = SPECS[name]
    if spec.kind != "roundtrip":
        return {spec.hostname}
    return {
        "send leg: ": {spec.hostname},
        "mailbox leg: ": {MAILBOX_HOST},
    }.get(leg, {spec.hostname, MAILBOX_HOST})


def _related_domains() -> set[frozenset[str]]:
    """Domains whose outages may be one problem: they share a monitor, one organization's
    failures point to one host (any port: one server), or one's monitor declares a monitor or
    a host of the other's."""
    pairs: set[frozenset[str]] = set()
    for d1, ms1 in DOMAINS.items():
        for d2, ms2 in DOMAINS.items():
            shared = set(ms1) & set(ms2) or any(
                SPECS[m1].org == SPECS[m2].org and _hosts(m1, l1) & _hosts(m2, l2)
                for m1, l1 in ms1.items()
                for m2, l2 in ms2.items()
            )
            declared = any(
                dep == m2 or dep == SPECS[m2].hostname
                for m1 in ms1
                for m2 in ms2
                for dep in SPECS[m1].depends_on
            ) or any(
                dep == m1 or dep == SPECS[m1].hostname
                for m1 in ms1
                for m2 in ms2
                for dep in SPECS[m2].depends_on
            )
            if d1 != d2 and (shared or declared):
                pairs.add(frozenset({d1, d2}))
    return pairs


RELATED = _related_domains()


@dataclass
class History:
    """A seeded history: problems (domain, first failing round, first passing round), flaps
    (a domain answering for one round inside a problem), blocked countries, late rows,
    findings, and the round the controller restarts in."""

    seed: int
    problems: list[tuple[str, int, int]] = field(default_factory=list)
    flaps: set[tuple[str, int]] = field(default_factory=set)
    blocked: set[tuple[str, int]] = field(default_factory=set)
    late: set[tuple[str, int]] = field(default_factory=set)
    findings: list[tuple[int, str]] = field(default_factory=list)
    restart_at: int = 0

    @classmethod
    def of(cls, seed: int) -> "History":
        rnd = random.Random(seed)
        h = cls(seed)
        for domain in DOMAINS:
            at = rnd.randint(0, 10)
            while at < ROUNDS - 8:
                length = rnd.randint(4, 12)
                h.problems.append((domain, at, min(at + length, ROUNDS - 6)))
                if length >= 6 and rnd.random() < 0.5:
                    h.flaps.add((domain, at + length // 2))
                at += length + rnd.randint(4, 16)
        for _ in range(8):
            h.blocked.add((rnd.choice(list(SPECS)), rnd.randrange(ROUNDS)))
        for _ in range(10):
            h.late.add((rnd.choice(list(SPECS)), rnd.randrange(0, ROUNDS - 6, 2)))
        for _ in range(16):
            h.findings.append((rnd.randrange(2, ROUNDS - 4), rnd.choice(list(SPECS))))
        for domain, a, b in h.problems:  # b's monitor on the MX a's checks fail to reach
            if domain == "mx-a" and b - a >= 5:
                h.findings.append((a + 3, "b-mx"))
        h.restart_at = rnd.randrange(10, ROUNDS - 10)
        return h

    def active(self, domain: str, n: int) -> bool:
        return (domain, n) not in self.flaps and any(
            d == domain and a <= n < b for d, a, b in self.problems
        )

    def failing(self, name: str, n: int) -> str | None:
        """The message prefix of the monitor's failure in round `n` (its first active
        domain's leg), or None when it passes."""
        for domain, ms in DOMAINS.items():
            if name in ms and self.active(domain, n):
                return ms[name]
        return None

    def outages(self, name: str) -> list[tuple[int, int | None]]:
        """The monitor's incidents as the thresholds make them: (first failing round of the
        run that opened it, first passing round of the run that closed it)."""
        found: list[tuple[int, int | None]] = []
        down = up = 0
        since: int | None = None
        opened: int | None = None
        for n in range(ROUNDS):
            if self.failing(name, n) is not None:
                up = 0
                down += 1
                since = n if down == 1 else since
                if opened is None and down >= DOWN_AFTER:
                    opened = since
            else:
                down = 0
                up += 1
                since = n if up == 1 else since
                if opened is not None and up >= RECOVER_AFTER:
                    assert since is not None
                    found.append((opened, since))
                    opened = None
        if opened is not None:
            found.append((opened, None))
        return found

    def causes(self, name: str, start: int, end: int | None) -> set[str]:
        """The domains failing the monitor during its outage [start, end)."""
        stop = ROUNDS if end is None else end
        return {
            d
            for d, ms in DOMAINS.items()
            if name in ms and any(self.active(d, n) for n in range(start, stop))
        }

    def down_at(self, name: str, n: int) -> bool | None:
        """Whether the monitor has an open incident in round `n` (after its judging), None
        near an edge (the harness does not judge a finding there)."""
        for start, end in self.outages(name):
            last = ROUNDS if end is None else end + RECOVER_AFTER - 1
            if start + DOWN_AFTER - 1 <= n < last:
                return None if n in (start + DOWN_AFTER - 1, last - 1) else True
            if start + DOWN_AFTER - 3 <= n <= last + 1:
                return None
        return False


def monitor_config(spec: Spec) -> dict[str, Any]:
    if spec.kind == "roundtrip":
        return {
            "send": {"auth": {"user": "probe", "pass": MONITOR_SECRET}},
            "to": "probe@a.test",
            "receive": {**BOX, "hostname": "box.a.test", "port": 993},
        }
    if spec.kind == "imap":
        return BOX
    if spec.kind == "pop3":
        return {**BOX, "protocol": "pop3"}
    return {}


async def add_monitors(rig: Rig, tenants: dict[str, Tenant]) -> dict[str, asyncpg.Record]:
    ms: dict[str, asyncpg.Record] = {}
    for name, spec in SPECS.items():
        ms[name] = await rig.monitor(
            name=name,
            kind=spec.kind,
            hostname=spec.hostname,
            port=spec.port,
            config=monitor_config(spec),
            email=spec.email,
            phone=None,
            tenant=tenants[spec.org],
        )
    async with rig.pool.acquire() as conn:
        for name, spec in SPECS.items():
            if spec.depends_on:
                declared = [str(ms[d]["public_id"]) if d in ms else d for d in spec.depends_on]
                await conn.execute(
                    "UPDATE monitors SET depends_on = $2 WHERE id = $1", ms[name]["id"], declared
                )
    return ms


def rows(rig: Rig, m: asyncpg.Record, n: int, h: History) -> list[ResultRow]:
    name, at = m["name"], rig.at(n)
    leg = h.failing(name, n)
    found = []
    for cc in COUNTRIES:
        blocked = (name, n) in h.blocked and cc == "DE"
        down = leg is not None or blocked
        found.append(
            ResultRow(
                job_id=rig.job_ids.make(str(m["public_id"]), cc, at, False),
                scheduled_at=at,
                monitor_id=m["public_id"],
                monitor_type=m["type"],
                country=cc,
                agent_id=f"{cc}-agent",
                status="down" if down else "up",
                error_kind="refused" if down else None,
                message=f"{leg or ''}connection refused" if down else "",
                finished_at=at + timedelta(seconds=1),
            )
        )
    return found


def alerter(rig: Rig) -> Alerter:
    return wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        notify_reminder_minutes=REMINDER_MINUTES,
        incident_group_wait_seconds=GROUP_WAIT_S,
        incident_group_interval_seconds=GROUP_WAIT_S,
        links=LINKS,
        clock=rig.clock,
    )


async def finding(rig: Rig, m: asyncpg.Record, n: int) -> bool:
    """A posture finding about `m` in round `n`, through the one entry; True when queued."""
    async with rig.pool.acquire() as conn, conn.transaction():
        monitor = await monitors_db.get(conn, m["id"], [m["type"]], None)
        assert monitor is not None
        what = f"STARTTLS missing on {m['hostname']} (round {n})"
        texts = Texts(f"[mailprobe] Finding: {what}", f"{what}\n", f"<p>{what}</p>", what)
        notes = to_recipients("finding", monitor, texts, f"finding:{m['id']}:{n}")
        return await notify(
            conn, Notice(Source.FINDING, monitor.organization_id, monitor, None, notes), utcnow()
        )


async def play(rig: Rig, h: History, ms: dict[str, asyncpg.Record]) -> dict[str, Any]:
    """Drive the history; return what was seen on the way (findings queued or attached)."""
    rnd = random.Random(h.seed * 7919)
    rig.alerter = alerter(rig)
    sender = rig.outbox(budget=Budget(finding=FINDING_BUDGET))
    held: list[ResultRow] = []
    seen: dict[str, Any] = {"findings": []}
    for n in range(ROUNDS):
        rig.clock.shift += STEP
        order = list(ms.values())
        rnd.shuffle(order)
        batch: list[ResultRow] = []
        for m in order:
            for row in rows(rig, m, n, h):
                # Late: US's result, and FR's too in every other round (the one result in
                # when the round is judged is DE's).
                late_ones = ("US",) if n % 4 else ("FR", "US")
                if (m["name"], n) in h.late and row.country in late_ones:
                    held.append(row)
                else:
                    batch.append(row)
        late, held = (
            [r for r in held if r.scheduled_at < rig.at(n)],
            [r for r in held if r.scheduled_at >= rig.at(n)],
        )
        half = rnd.randrange(len(batch) + 1)
        for part in (batch[:half], batch[half:] + late):
            if part:
                async with rig.pool.acquire() as conn, conn.transaction():
                    await results.store(conn, part, now=utcnow())
            if n == h.restart_at and part is batch[:half]:
                pass_ = asyncio.create_task(rig.alerter.burst())
                await asyncio.sleep(rnd.uniform(0, 0.02))
                pass_.cancel()
                await asyncio.gather(pass_, return_exceptions=True)
                rig.alerter = alerter(rig)  # a new controller: nothing kept in memory
                rig.clock.shift += timedelta(seconds=31)  # its lease ends
            await rig.alerter.burst()
        for at, name in h.findings:
            if at == n:
                queued = await finding(rig, ms[name], n)
                seen["findings"].append((n, name, queued))
        await sender.burst()
    if held:
        async with rig.pool.acquire() as conn, conn.transaction():
            await results.store(conn, held, now=utcnow())
    for _ in range(3):
        rig.clock.shift += timedelta(seconds=60)
        await rig.alerter.burst()
        await sender.burst()
    return seen


async def check(rig: Rig, h: History, ms: dict[str, asyncpg.Record], seen: dict[str, Any]) -> None:
    by_id = {m["id"]: name for name, m in ms.items()}
    incidents = await rig.fetch(
        "SELECT * FROM incidents WHERE monitor_id = ANY($1::bigint[]) ORDER BY id",
        list(by_id),
    )
    round_of = {rig.at(n): n for n in range(ROUNDS)}

    # Each monitor's incidents are its outages, none stranded open.
    for name, m in ms.items():
        got = [
            (round_of[i["started_at"]], None if i["ended_at"] is None else round_of[i["ended_at"]])
            for i in incidents
            if i["monitor_id"] == m["id"]
        ]
        assert got == h.outages(name), (h.seed, name, got, h.outages(name))

    flows = await rig.fetch(
        "SELECT * FROM flow_incidents WHERE organization_id = ANY($1::bigint[]) ORDER BY id",
        list({t for t in await org_ids(rig, ms)}),
    )
    members: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for i in incidents:
        assert i["flow_incident_id"] is not None, (h.seed, by_id[i["monitor_id"]])
        members[i["flow_incident_id"]].append(i)
    assert set(members) == {f["id"] for f in flows}, h.seed

    # A flow incident: one organization, related problems only, ended with its last outage.
    domains_of: dict[int, set[str]] = {}
    for f in flows:
        its = members[f["id"]]
        orgs = {SPECS[by_id[i["monitor_id"]]].org for i in its}
        assert len(orgs) == 1, (h.seed, f["id"], orgs)
        doms: set[str] = set()
        for i in its:
            name = by_id[i["monitor_id"]]
            s, e = round_of[i["started_at"]], i["ended_at"] and round_of[i["ended_at"]]
            doms |= h.causes(name, s, e)
        domains_of[f["id"]] = doms
        assert connected(doms), (
            h.seed,
            f["id"],
            sorted(doms),
            [by_id[i["monitor_id"]] for i in its],
        )
        still = [i for i in its if i["ended_at"] is None]
        assert (f["ended_at"] is None) == bool(still), (h.seed, f["id"], f["ended_at"], still)

    # Each problem: the outages it alone caused that opened during it are one flow incident
    # of each organization it touches.
    for domain, a, b in h.problems:
        alone = {
            (SPECS[by_id[i["monitor_id"]]].org, i["flow_incident_id"])
            for i in incidents
            if by_id[i["monitor_id"]] in DOMAINS[domain]
            and a <= round_of[i["started_at"]] < b
            and h.causes(
                by_id[i["monitor_id"]],
                round_of[i["started_at"]],
                i["ended_at"] and round_of[i["ended_at"]],
            )
            == {domain}
        }
        assert len(alone) == len({o for o, _ in alone}), (h.seed, domain, a, b, alone)

    # An outage opening while a directly related one (its server, whatever the port, or a
    # declared dependency) has been open for rounds joins a flow incident: it opens none.
    opener = {f["id"]: min(i["id"] for i in members[f["id"]]) for f in flows}
    spans = [
        (
            i,
            by_id[i["monitor_id"]],
            round_of[i["started_at"]],
            i["ended_at"] and round_of[i["ended_at"]],
        )
        for i in incidents
    ]
    for x, name_x, sx, _ in spans:
        if opener[x["flow_incident_id"]] != x["id"]:
            continue
        opened = sx + DOWN_AFTER - 1
        for _, name_y, sy, ey in spans:
            closes = ROUNDS + 9 if ey is None else ey + RECOVER_AFTER - 1
            if name_y == name_x or not (sy + DOWN_AFTER + 1 <= opened < closes - 2):
                continue
            if directly_related(h, name_x, sx, name_y, sy):
                raise AssertionError((h.seed, "opened its own", name_x, sx, "while", name_y, sy))

    # Notices: per flow incident and address, one opening, one end once told, reminders paced.
    outbox = await rig.fetch(
        "SELECT o.*, i.flow_incident_id FROM notification_outbox o"
        " LEFT JOIN incidents i ON i.id = o.incident_id"
        " WHERE o.monitor_id = ANY($1::bigint[]) ORDER BY o.id",
        list(by_id),
    )
    pages: Counter[tuple[int, str, str]] = Counter()
    for r in outbox:
        if r["source"] != "outage":
            continue
        key = r["dedupe_key"]
        flow_id = r["flow_incident_id"]
        tag = key.split(":")[2]
        what = (
            "open"
            if tag == "down"
            else "end"
            if tag in ("end", "recovered", "no_data")
            else tag.split("-")[0]
        )
        pages[(flow_id, r["target"], what)] += 1
    for f in flows:
        told, ended = f["notified"], f["ended_at"] is not None
        its = members[f["id"]]
        rounds = max(
            (round_of[i["ended_at"]] if i["ended_at"] else ROUNDS) - round_of[i["started_at"]]
            for i in its
        )
        for target in {SPECS[by_id[i["monitor_id"]]].email for i in its}:
            n = {w: pages[(f["id"], target, w)] for w in ("open", "changed", "end", "reminder")}
            where = (h.seed, f["id"], target, n)
            if not told:
                assert n == dict.fromkeys(n, 0), where
                continue
            # Told of it: by the first notice, or by a change if its monitor joined later.
            assert n["open"] <= 1 and n["open"] + n["changed"] >= 1, where
            assert n["changed"] <= len(its), where
            assert n["end"] == (1 if ended else 0), where
            assert n["reminder"] <= rounds * STEP / timedelta(minutes=REMINDER_MINUTES) + 1, where
    assert not [k for k in pages if k[0] not in {f["id"] for f in flows}], pages
    # Every outage notice was an incident's, and none was dropped by a budget.
    assert all(r["incident_id"] is not None for r in outbox if r["source"] == "outage")
    dropped = [r for r in outbox if r["status"] == "dropped"]
    assert all(r["source"] != "outage" for r in dropped), [
        (r["kind"], r["last_error"]) for r in dropped if r["source"] == "outage"
    ]
    sent = Counter(r["source"] for r in outbox if r["status"] == "sent")
    assert sent["finding"] <= FINDING_BUDGET * 2, sent  # the history spans two clock hours at most

    # Findings: evidence while an outage of their monitor or its host is open, else sent.
    for n, name, queued in seen["findings"]:
        spec = SPECS[name]
        near = [
            other
            for other, s in SPECS.items()
            if s.org == spec.org and (other == name or s.hostname == spec.hostname)
        ]
        states = [h.down_at(other, n) for other in near]
        if None in states:
            continue
        assert queued == (not any(states)), (h.seed, n, name, queued, states)

    seen["figures"] = {
        "problems": len(h.problems),
        "outages": len(incidents),
        "flow incidents": len(flows),
        "opening notices": sum(v for (_, _, w), v in pages.items() if w == "open"),
        "end notices": sum(v for (_, _, w), v in pages.items() if w == "end"),
        "change notices": sum(v for (_, _, w), v in pages.items() if w == "changed"),
        "reminders": sum(v for (_, _, w), v in pages.items() if w == "reminder"),
        "findings sent/evidence": (
            sum(q for _, _, q in seen["findings"]),
            sum(not q for _, _, q in seen["findings"]),
        ),
        "dropped": Counter(r["source"] for r in dropped),
    }


def directly_related(h: History, a: str, sa: int, b: str, sb: int) -> bool:
    """Whether the alerter relates the outages of `a` (first failing in round `sa`) and `b`
    for certain: one organization's, and a host each one's failures point to (its leg then)
    in common, or a declaration either way."""
    spec_a, spec_b = SPECS[a], SPECS[b]
    if spec_a.org != spec_b.org:
        return False
    if b in spec_a.depends_on or a in spec_b.depends_on:
        return True
    # A round trip's outage points to the leg its opening round names: only when the legs of
    # its first failing rounds agree is the relation certain.
    for da in range(DOWN_AFTER):
        for db in range(DOWN_AFTER):
            hosts_a = _hosts(a, h.failing(a, sa + da) or "")
            hosts_b = _hosts(b, h.failing(b, sb + db) or "")
            declared = set(spec_a.depends_on) & hosts_b or set(spec_b.depends_on) & hosts_a
            if not (hosts_a & hosts_b or declared):
                return False
    return True


def connected(domains: set[str]) -> bool:
    if not domains:
        return True
    todo, reached = [next(iter(domains))], set()
    while todo:
        d = todo.pop()
        if d in reached:
            continue
        reached.add(d)
        todo += [o for o in domains if frozenset({d, o}) in RELATED]
    return reached == domains


async def org_ids(rig: Rig, ms: dict[str, asyncpg.Record]) -> Iterator[int]:
    found = await rig.fetch(
        "SELECT DISTINCT organization_id FROM monitors WHERE id = ANY($1::bigint[])",
        [m["id"] for m in ms.values()],
    )
    return iter(r["organization_id"] for r in found)


@pytest.mark.parametrize("seed", SEEDS)
async def test_histories_against_ground_truth(
    rig: Rig, alert_pool: asyncpg.Pool, seed: int
) -> None:
    h = History.of(seed)
    rig.base = rig.at(0) - timedelta(minutes=ROUNDS - 35)
    tenants = {"a": rig.tenant, "b": await make_tenant(alert_pool)}
    ms = await add_monitors(rig, tenants)
    seen = await play(rig, h, ms)
    await check(rig, h, ms, seen)
    print(f"seed {seed}:", seen["figures"])
    print("  problems:", sorted(h.problems, key=lambda p: p[1]))
