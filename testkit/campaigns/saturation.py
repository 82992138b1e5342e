"""A saturated country's share per organization (issue 60, point 1): organizations whose SMTP
checks hang for their whole timeout (a tarpit: it accepts and never greets) fill a country's
agents several times over, while another organization's monitor of a healthy server comes round
every few seconds. The admission at the scheduler (controller.scheduling.admission_rules) must give
that organization its share of the slots whatever the agents' concurrency, lookahead and number,
the number of noisy organizations or the order the jobs go out in: its rounds get real results,
and the noisy ones' excess is their own `missed` / `saturated`.

Everything is real: embedded PostgreSQL and NATS, `python -m controller serve` (scheduler,
ingester, alerter), `python -m agent` per agent with `AGENT_CONCURRENCY`, a tarpit and a healthy
SMTP server on loopback. Variants run one after the other, each in a country of its own:

- `one agent`: 1 DE agent at concurrency 8; Noisy has 16 monitors of the tarpit, timeout =
  interval = 30 s; Victim one monitor of the healthy server every 10 s, timeout 8 s;
- `two agents`: the same with 2 agents of the country;
- `20 noisy organizations`: 20 organizations of 1 such monitor each (16 slots wanted beyond
  8 would do; 20 is the issue's figure);
- `one slot`: the first variant at `AGENT_CONCURRENCY=1` (no reserve): Victim's rounds take
  the slot back from Noisy's hanging checks (controller.scheduling.preemption);
- `non-lightest hanging`: beside Noisy and Victim, organization B's 4 monitors of the tarpit
  (its server frozen: timeout 5 s every 10 s), first due 30 s after the others, so Noisy's
  checks fill the slots first and B, heavier than Victim, must take its share back.

Per organization it prints the rounds due in the window, real results (B's: checks that ran),
`saturated` and `preempted` rows, `expired` and missing rounds, and its share of the
slot-seconds real checks held. Target: Victim has a real result in ≥ 90 % of its rounds in
every variant, none `saturated` nor `preempted`; so has B, counting as its own the rounds
cancelled while it held more than its share (`preempted`: its checks hang to their timeout,
and those a full country delayed may start together); the noisy organizations' rounds are
real, `saturated` or `preempted` (with a message, stored `missed`) or still waiting when the
window ends, never `expired`.
`python -m bench saturation --window 60` shortens it, `--variants one` picks variants.

The scenario's parts (seeding, the tarpit, the figures) are shared with
tests/e2e/test_saturated_country.py, which runs a scaled version against in-process roles.
"""

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection

import asyncpg

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.db.migrate import migrate
from controller.scheduling import rules as schedule
from shared import embedded
from testkit.common import Pipes, child_env, discard_logs, machine, start_module, verdict
from testkit.peers.smtp import SmtpPeer

SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="
TARGET = 0.90  # Victim's rounds with a real result, at least
SEED = 60


@dataclass(frozen=True)
class Scenario:
    """One variant: `noisy_orgs` organizations of `noisy_monitors` tarpit monitors each, one
    Victim organization of `victim_monitors` healthy ones, in `country`."""

    name: str
    country: str
    agents: int = 1
    concurrency: int = 8
    lookahead: int | None = None  # None: the agent's default (its concurrency)
    noisy_orgs: int = 1
    noisy_monitors: int = 16
    noisy_interval: int = 30
    noisy_timeout: int = 30
    victim_monitors: int = 1
    victim_interval: int = 10
    victim_timeout: int = 8
    # Organization B, when `frozen_monitors`: monitors of the tarpit too (its server frozen),
    # with a short timeout, so it is not the lightest yet must get its share.
    frozen_monitors: int = 0
    frozen_interval: int = 10
    frozen_timeout: int = 3
    frozen_after_s: int = 0  # B's monitors first due this long after the others: slots full


@dataclass
class Org:
    name: str
    org_id: int
    victim: bool
    monitors: list[tuple[str, int]] = field(default_factory=list)  # (public id, interval)
    frozen: bool = False  # organization B: owed its share, its checks hang to their timeout

    @property
    def label(self) -> str:
        return "B" if self.frozen else "Victim" if self.victim else self.name.split("-")[0]


@dataclass
class Figures:
    """One organization's rounds in the window, and what became of them."""

    org: str
    victim: bool  # owed its share: Victim, or B
    due: int
    real: int  # rounds with a result of a check that ran (Victim: `up`)
    saturated: int
    expired: int
    missing: int  # rounds without any row
    slot_s: float  # slot-seconds its real checks held
    share: float = 0.0  # of all organizations' slot-seconds
    messages: list[str] = field(default_factory=list)  # its `saturated` messages, a few
    preempted: int = 0  # rounds whose check was cancelled for another's share (`preempted`)
    # The same over every round (a check of a round before the window may be cancelled in
    # it), their messages, and how many were stored as anything but `missed` (none).
    preempted_all: int = 0
    preempt_messages: list[str] = field(default_factory=list)
    preempted_not_missed: int = 0
    incidents: int = 0  # incidents its monitors opened, ever
    label: str = ""

    @property
    def real_share(self) -> float:
        return self.real / self.due if self.due else 0.0

    @property
    def served_share(self) -> float:
        """Of its rounds, those that ran or whose check was cancelled while it held more than
        its share (`preempted`: its own excess, as each such message says)."""
        return (self.real + self.preempted) / self.due if self.due else 0.0

    @property
    def owed_share(self) -> float:
        """What the target is judged on: Victim's real rounds; B's served ones, since B's checks
        hang to their timeout, and those delayed by a full country start together and may hold
        more than its share for a moment, which preemption takes back (controller.scheduling.
        preemption)."""
        return self.served_share if self.label == "B" else self.real_share


class Tarpit:
    """A TCP server on loopback that accepts and never says a word: every SMTP check of it
    waits for the greeting until its timeout."""

    def __init__(self) -> None:
        self._held: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass  # whatever the client says, no answer
        self._held.remove(writer)
        writer.close()

    async def __aenter__(self) -> "Tarpit":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._held):
            writer.close()
        await self._server.wait_closed()


def public_ids(rng: random.Random, n: int) -> list[str]:
    """`n` public ids drawn from `rng`: their grids' phases (and so the jobs' order) follow
    the seed."""
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


async def seed(
    conn: asyncpg.Connection,
    scenario: Scenario,
    ports: tuple[int, int],
    start: datetime,
    rng: random.Random,
) -> list[Org]:
    """The scenario's organizations and monitors (`ports`: tarpit, healthy), inserted in an
    order shuffled by `rng`, each first due at its grid's first point after `start`."""
    tarpit, healthy = ports
    tag = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
    orgs = [
        Org(f"noisy{i + 1}-{scenario.country}-{tag}", 0, False) for i in range(scenario.noisy_orgs)
    ]
    if scenario.frozen_monitors:
        orgs.append(Org(f"b-{scenario.country}-{tag}", 0, True, frozen=True))
    orgs.append(Org(f"victim-{scenario.country}-{tag}", 0, True))
    rows: list[tuple[Org, str, int, int, int]] = []
    for org in orgs:
        org.org_id = await accounts.ensure_organization(conn, org.name)
        if org.frozen:
            many, port = scenario.frozen_monitors, tarpit
            interval, timeout = scenario.frozen_interval, scenario.frozen_timeout
        elif org.victim:
            many, port = scenario.victim_monitors, healthy
            interval, timeout = scenario.victim_interval, scenario.victim_timeout
        else:
            many, port = scenario.noisy_monitors, tarpit
            interval, timeout = scenario.noisy_interval, scenario.noisy_timeout
        for pid in public_ids(rng, many):
            org.monitors.append((pid, interval))
            rows.append((org, pid, port, interval, timeout))
    rng.shuffle(rows)
    customer = {org.org_id: (await customers.create(conn, org.org_id, org.name)).id for org in orgs}
    for org, pid, port, interval, timeout in rows:
        after = start + timedelta(seconds=scenario.frozen_after_s if org.frozen else 0)
        due = schedule.next_due(schedule.phase_ms(pid, interval), interval, after)
        await conn.execute(
            "INSERT INTO monitors (public_id, organization_id, customer_id, type, name, hostname,"
            " port, status, check_interval, timeout_seconds, allowed_country_codes, config,"
            " next_due_at) VALUES ($1, $2, $3, 'smtp', $4, '127.0.0.1', $5, 'active', $6, $7,"
            " $8, '{}'::jsonb, $9)",
            uuid.UUID(pid),
            org.org_id,
            customer[org.org_id],
            org.name,
            port,
            interval,
            timeout,
            [scenario.country],
            due,
        )
    return orgs


def rounds_due(public_id: str, interval: int, start: datetime, end: datetime) -> list[datetime]:
    """The monitor's grid points in [start, end)."""
    phase = schedule.phase_ms(public_id, interval)
    out = []
    at = schedule.next_due(phase, interval, start - timedelta(milliseconds=1))
    while at < end:
        out.append(at)
        at = schedule.next_due(phase, interval, at)
    return out


async def figures(
    conn: asyncpg.Connection, orgs: Sequence[Org], start: datetime, end: datetime
) -> list[Figures]:
    """Each organization's rounds scheduled in [start, end) and what became of them."""
    out = []
    for org in orgs:
        due = {
            (pid, at)
            for pid, interval in org.monitors
            for at in rounds_due(pid, interval, start, end)
        }
        rows = await conn.fetch(
            "SELECT monitor_public_id::text AS pid, scheduled_at, status, error_kind, message,"
            " extract(epoch FROM finished_at - started_at) AS held_s"
            " FROM check_results WHERE monitor_id IN"
            " (SELECT id FROM monitors WHERE organization_id = $1)"
            " AND scheduled_at >= $2 AND scheduled_at < $3",
            org.org_id,
            start,
            end,
        )
        # A round's row on its grid point (triggered rounds are off it; none here).
        on_grid = [r for r in rows if (r["pid"], r["scheduled_at"]) in due]
        missed = [r for r in on_grid if r["status"] == "missed"]
        ran = [r for r in on_grid if r["status"] != "missed"]
        # Victim's server is healthy: a real result is `up`; B's is frozen: one that ran.
        real = [r for r in ran if r["status"] == "up"] if org.victim and not org.frozen else ran
        saturated = [r for r in missed if r["error_kind"] == "saturated"]
        preempted = [r for r in missed if r["error_kind"] == "preempted"]
        incidents = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE monitor_id IN"
            " (SELECT id FROM monitors WHERE organization_id = $1)",
            org.org_id,
        )
        cut = await conn.fetch(
            "SELECT status, message FROM check_results WHERE monitor_id IN"
            " (SELECT id FROM monitors WHERE organization_id = $1)"
            " AND scheduled_at >= $2::timestamptz - interval '1 hour' AND error_kind = 'preempted'",
            org.org_id,
            start,
        )
        out.append(
            Figures(
                org.name,
                org.victim,
                len(due),
                len({(r["pid"], r["scheduled_at"]) for r in real}),
                len(saturated),
                sum(r["error_kind"] == "expired" for r in missed),
                len(due - {(r["pid"], r["scheduled_at"]) for r in on_grid}),
                sum(float(r["held_s"] or 0.0) for r in ran),
                messages=sorted({r["message"] for r in saturated})[:2],
                preempted=len(preempted),
                preempted_all=len(cut),
                preempt_messages=sorted({r["message"] for r in cut}),
                preempted_not_missed=sum(r["status"] != "missed" for r in cut),
                incidents=incidents,
                label=org.label,
            )
        )
    total = sum(f.slot_s for f in out) or 1.0
    for f in out:
        f.share = f.slot_s / total
    return out


def table(scenario: Scenario, rows: Sequence[Figures]) -> list[str]:
    """The variant's figures, one line per organization (20 noisy ones summed in one line
    and their least served shown)."""
    lines = [
        f"  {scenario.name} ({scenario.country}: {scenario.agents} agent(s) x concurrency"
        f" {scenario.concurrency}, lookahead"
        f" {scenario.concurrency if scenario.lookahead is None else scenario.lookahead})",
        f"    {'organization':<28} {'due':>5} {'real':>5} {'real %':>7} {'saturated':>9}"
        f" {'preempted':>9} {'expired':>7} {'missing':>7} {'slot-s':>8} {'share':>6}",
    ]
    for f in rows:
        lines.append(
            f"    {f.label or f.org:<28} {f.due:>5} {f.real:>5}"
            f" {100 * f.real_share:>6.1f}% {f.saturated:>9} {f.preempted:>9} {f.expired:>7}"
            f" {f.missing:>7} {f.slot_s:>8.0f} {100 * f.share:>5.1f}%"
        )
    for f in rows:
        if not f.victim and f.messages:
            lines.append(f"    e.g. {f.label} saturated: {f.messages[0]}")
            break
    for f in rows:
        if f.preempt_messages:
            lines.append(f"    e.g. {f.label} preempted: {f.preempt_messages[0]}")
            break
    return lines


def met(rows: Sequence[Figures]) -> bool:
    """The target: Victim's rounds real ≥ TARGET, none `saturated`; the noisy ones' excess is
    their own `saturated`, with a message, never `expired` (a round still waiting for a slot
    when the window ends is neither: `missing`)."""
    owed = [f for f in rows if f.victim]
    noisy = [f for f in rows if not f.victim]
    light = [f for f in owed if f.label != "B"]
    return (
        all(f.owed_share >= TARGET for f in owed)
        and all(f.saturated == 0 for f in light)
        and sum(f.expired for f in noisy) == 0
        and all(m for f in noisy for m in f.messages)
        and not any(f.preempted_all for f in light)
        and not any(f.preempted_not_missed for f in rows)
    )


# The benchmark: real processes.

VARIANTS = {
    "one": Scenario("one agent", "DE"),
    "two": Scenario("two agents", "FR", agents=2),
    "orgs": Scenario("20 noisy organizations", "NL", noisy_orgs=20, noisy_monitors=1),
    # AGENT_CONCURRENCY=1: no reserve; the slot goes to Victim's round by preemption.
    "slot": Scenario("one slot", "SE", concurrency=1),
    # B's 4 monitors of a frozen server (timeout 5 s every 10 s) beside Noisy's 16 and Victim:
    # B is not the lightest, its checks hang too, and it must still get its share.
    "frozen": Scenario(
        "non-lightest hanging", "PL", frozen_monitors=4, frozen_timeout=5, frozen_after_s=30
    ),
}


def _peers(conn: Connection) -> None:
    asyncio.run(_peers_async(conn))


async def _peers_async(conn: Connection) -> None:
    async with Tarpit() as tarpit, SmtpPeer() as healthy:
        conn.send((tarpit.port, healthy.port))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop


@contextlib.asynccontextmanager
async def _connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def _seed(url: str, scenario: Scenario, ports: tuple[int, int], start: datetime) -> list[Org]:
    async with _connected(url) as conn:
        return await seed(conn, scenario, ports, start, random.Random(f"{SEED}-{scenario.country}"))


async def _migrate(url: str) -> None:
    async with _connected(url) as conn:
        await migrate(conn)


async def _figures(url: str, orgs: list[Org], start: datetime, end: datetime) -> list[Figures]:
    async with _connected(url) as conn:
        return await figures(conn, orgs, start, end)


def _variant(pipes: Pipes, scenario: Scenario, ports: tuple[int, int], window: float) -> bool:
    procs: list[subprocess.Popen[bytes]] = []
    common = {"NATS_URL": pipes.nats_url}
    try:
        for i in range(scenario.agents):
            procs.append(
                start_module(
                    ["agent", "--country", scenario.country],
                    child_env(
                        **common,
                        AGENT_ALLOW_PRIVATE_TARGETS="true",
                        AGENT_CONCURRENCY=str(scenario.concurrency),
                        AGENT_ID=f"{scenario.country}-bench-{i}",
                        AGENT_METRICS_PORT=str(embedded.free_port()),
                    ),
                    pipes.tmp / f"agent-{scenario.country}-{i}.log",
                )
            )
        time.sleep(3)  # agents up and heard
        # The window opens once the monitors' first rounds are due: a little warm-up, then the
        # figures count every round due in it and wait for its last to close.
        start = datetime.now(UTC) + timedelta(seconds=2)
        orgs = asyncio.run(_seed(pipes.database_url, scenario, ports, start))
        warm = max(scenario.noisy_interval, scenario.victim_interval)
        counted = start + timedelta(seconds=warm)  # the noisy ones fill the slots by then
        end = counted + timedelta(seconds=window)
        close = max(scenario.noisy_interval, scenario.victim_interval) + 5
        time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds() + close))
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args!r} exited early; logs in {pipes.tmp}")
        rows = asyncio.run(_figures(pipes.database_url, orgs, counted, end))
    finally:
        for proc in procs:
            embedded.stop(proc)
    ok = met(rows)
    victim = next(f for f in rows if f.victim and f.label != "B")
    for line in table(scenario, _summed(rows)):
        print(line)
    frozen = [f for f in rows if f.label == "B"]
    b = f", B {100 * frozen[0].real_share:.1f} % real" if frozen else ""
    print(
        f"    target Victim (and B) ≥ {100 * TARGET:.0f} % real, Victim 0 saturated; the noisy"
        f" ones' excess saturated or preempted (stored missed), none expired:"
        f" Victim {100 * victim.real_share:.1f} % real{b},"
        f" noisy {sum(f.saturated for f in rows if not f.victim)} saturated,"
        f" {sum(f.preempted for f in rows if not f.victim)} preempted,"
        f" {sum(f.expired for f in rows if not f.victim)} expired   {verdict(ok)}",
        flush=True,
    )
    return ok


def _summed(rows: Sequence[Figures]) -> list[Figures]:
    """Many noisy organizations as one line (their sum) and their least served."""
    noisy = [f for f in rows if not f.victim]
    if len(noisy) <= 3:
        return list(rows)
    total = Figures(
        f"noisy x{len(noisy)}",
        False,
        sum(f.due for f in noisy),
        sum(f.real for f in noisy),
        sum(f.saturated for f in noisy),
        sum(f.expired for f in noisy),
        sum(f.missing for f in noisy),
        sum(f.slot_s for f in noisy),
        sum(f.share for f in noisy),
        noisy[0].messages,
        preempted=sum(f.preempted for f in noisy),
        preempted_all=sum(f.preempted_all for f in noisy),
        preempt_messages=[m for f in noisy for m in f.preempt_messages][:3],
        label=f"noisy x{len(noisy)}",
    )
    least = min(noisy, key=lambda f: f.real_share)
    least = Figures(**{**least.__dict__, "label": "least-served noisy"})
    return [total, least, *[f for f in rows if f.victim]]


def run(argv: Sequence[str] = ()) -> bool:
    parser = argparse.ArgumentParser(prog="python -m bench saturation")
    parser.add_argument("--window", type=float, default=150.0, help="seconds of rounds counted")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    args = parser.parse_args(list(argv))
    chosen = [VARIANTS[name] for name in args.variants.split(",") if name]
    discard_logs()
    print(
        f"a saturated country's share per organization ({machine()}; controller serve, agents"
        f" and a tarpit on loopback; {args.window:.0f} s window per variant after a 30 s"
        f" warm-up)",
        flush=True,
    )
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    peers = ctx.Process(target=_peers, args=(child,), daemon=True)
    peers.start()
    pipes = Pipes()
    controller: subprocess.Popen[bytes] | None = None
    ok = True
    try:
        ports = parent.recv()
        asyncio.run(_migrate(pipes.database_url))  # serve does not: `migrate` is a command
        controller = start_module(
            ["controller", "serve"],
            child_env(
                NATS_URL=pipes.nats_url,
                DATABASE_URL=pipes.database_url,
                SECRETS_KEY=SECRETS_KEY,
                CONTROLLER_ROLES="scheduler,ingester,alerter",
            ),
            pipes.tmp / "controller.log",
        )
        time.sleep(5)
        for scenario in chosen:
            ok = _variant(pipes, scenario, ports, args.window) and ok
    finally:
        if controller is not None:
            embedded.stop(controller)
        parent.send("stop")
        peers.join(5)
        pipes.close()
    return ok
