"""The verdict campaign (issue 60): random histories of outages, freezes and restarts against
real servers, every verdict, incident and notice checked against what the harness did.

Embedded PostgreSQL and NATS, `python -m controller serve` (scheduler, ingester, alerter) and one
`python -m agent` per country (DE, US), each agent in a network namespace of its own
(tests/netns.py); one mail server process per monitor (`bench.verdict_server`: SMTP plain,
STARTTLS and implicit TLS, IMAP plain, STARTTLS and implicit TLS, POP3 plain and implicit TLS)
listening on the host side of DE's namespace, which both namespaces reach. A history drawn from
the seed (`bench.verdict_history`) kills servers (outage everywhere), SIGSTOPs them (freeze),
drops one country's path to them with nftables (an outage seen from that country only) and kills
agents; the harness logs each step's real time, the truth. The state of every monitor is sampled
each second, incidents and queued notices read at the end, and `bench.verdict_truth` judges them.

`python -m bench verdicts --seed N --minutes M` (or `python -m bench.verdicts ...`); `--short`
is the version `make test` runs. Prints the seed, the history and the figures; exits 1 when a
target is missed. Needs root (namespaces); `VERDICTS_KEEP=1` keeps the processes' logs.
"""

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats
import trustme
from nats.aio.msg import Msg

from bench.common import child_env, discard_logs, http_ok, machine, verdict
from bench.verdict_history import FAULTS, Shape, Step, draw
from bench.verdict_truth import Fact, Figures, Incident, Notice, Observed, Rules, judge
from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.db.migrate import migrate
from controller.db.pool import connect
from shared import embedded
from shared.streams import ensure_streams
from shared.subjects import HEARTBEATS_SUBJECTS
from tests import netns

COUNTRIES = ("DE", "US")
INTERVAL = 10  # the API's minimum
TIMEOUT = 4
SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="
WARMUP_S = 25.0  # agents live and a few passing rounds before the first step
START_TIMEOUT_S = 30.0

# monitor name = server kind: (type, config)
KINDS: dict[str, tuple[str, dict[str, object]]] = {
    "smtp": ("smtp", {"ignoreTls": True}),
    "smtp-starttls": ("smtp", {"requireTls": True}),
    "smtps": ("smtp", {"secure": True}),
    "imap": ("imap", {"protocol": "imap"}),
    "imap-starttls": ("imap", {"protocol": "imap"}),
    "imaps": ("imap", {"protocol": "imap", "tls": True}),
    "pop3": ("pop3", {"protocol": "pop3"}),
    "pop3s": ("pop3", {"protocol": "pop3", "tls": True}),
}


@dataclass(frozen=True)
class Campaign:
    minutes: float
    kinds: tuple[str, ...]
    faults: tuple[str, ...] = FAULTS
    restarts: tuple[str, ...] = ("agent", "controller", "nats")


SHORT = Campaign(
    minutes=1.5,
    kinds=("smtp", "smtps", "imap-starttls", "pop3"),
    faults=("outage", "freeze", "country"),
    restarts=("agent",),
)


def rules() -> Rules:
    return Rules(interval=INTERVAL, timeout=TIMEOUT, countries=COUNTRIES)


def shape(c: Campaign) -> Shape:
    return Shape(INTERVAL, TIMEOUT, c.minutes, c.faults, c.restarts)


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


async def _until(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not await asyncio.to_thread(ready):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {START_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.1)


@dataclass
class Rig:
    """The processes, the namespaces and the truth log (`facts`)."""

    tmp: Path
    kinds: tuple[str, ...]
    facts: list[Fact] = field(default_factory=list)
    ns: dict[str, netns.Netns] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, set[int]] = field(default_factory=dict)
    host: str = ""
    nats_port: int = 0
    ops_port: int = 0
    nats_url: str = ""
    database_url: str = ""
    pg: object = None

    def _spawn(self, key: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with (self.tmp / f"{key}.log").open("ab") as out:
            self.procs[key] = subprocess.Popen(argv, env=env, stdout=out, stderr=out)

    def fact(self, kind: str, target: str, country: str | None, failing: bool) -> None:
        self.facts.append(Fact(time.time(), kind, target, country, failing))  # type: ignore[arg-type]

    async def up(self) -> None:
        for cc in COUNTRIES:
            self.ns[cc] = await asyncio.to_thread(netns._create, (), None)
            self.dropped[cc] = set()
        self.host = self.ns[COUNTRIES[0]].host_ip
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.tmp / "ca.pem"))
        leaf = ca.issue_cert(self.host)
        leaf.cert_chain_pems[0].write_to_path(str(self.tmp / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(self.tmp / "key.pem"))
        self.pg, self.database_url = embedded.start_postgres(self.tmp / "pg", throwaway=True)
        self.nats_port = embedded.free_port(self.host)
        self.start_nats()
        nc = await nats.connect(self.nats_url)
        try:
            await ensure_streams(nc.jetstream())
        finally:
            await nc.close()
        for kind in self.kinds:
            self.ports[kind] = embedded.free_port(self.host)
            await self.start_server(kind)
        await self.seed()
        self.ops_port = embedded.free_port()
        await self.start_controller()
        for cc in COUNTRIES:
            await self.start_agent(cc)

    async def seed(self) -> None:
        conn = await connect(self.database_url)
        try:
            await migrate(conn)
            org = await accounts.ensure_organization(conn, "verdicts")
            customer = await customers.create(conn, org, "verdicts")
            for kind in self.kinds:
                mtype, config = KINDS[kind]
                await conn.execute(
                    "INSERT INTO monitors (organization_id, customer_id, type, name, hostname,"
                    " port, status, check_interval, timeout_seconds, allowed_country_codes,"
                    " config, notification_email) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7,"
                    " $8, $9, $10::jsonb, 'oncall@example.com')",
                    org,
                    customer["id"],
                    mtype,
                    kind,
                    self.host,
                    self.ports[kind],
                    INTERVAL,
                    TIMEOUT,
                    list(COUNTRIES),
                    config,
                )
        finally:
            await conn.close()

    # -- the steps --------------------------------------------------------------------------

    async def start_server(self, kind: str) -> None:
        argv = [sys.executable, "-m", "bench.verdict_server", kind, self.host]
        argv += [str(self.ports[kind]), str(self.tmp / "cert.pem"), str(self.tmp / "key.pem")]
        self._spawn(kind, argv)
        await _until(kind, lambda: _listening(self.host, self.ports[kind]))

    def start_nats(self) -> None:
        proc, self.nats_url = embedded.start_nats(self.tmp / "nats", self.nats_port, host=self.host)
        self.procs["nats"] = proc

    async def start_controller(self) -> None:
        self._spawn(
            "controller",
            [sys.executable, "-m", "controller", "serve"],
            child_env(
                DATABASE_URL=self.database_url,
                NATS_URL=self.nats_url,
                SECRETS_KEY=SECRETS_KEY,
                CONTROLLER_ROLES="scheduler,ingester,alerter",
                CONTROLLER_METRICS_HOST="127.0.0.1",
                CONTROLLER_METRICS_PORT=str(self.ops_port),
            ),
        )
        url = f"http://127.0.0.1:{self.ops_port}/ready"
        await _until("controller", lambda: http_ok(url))

    async def start_agent(self, cc: str) -> None:
        env = child_env(
            NATS_URL=self.nats_url,
            AGENT_ID=f"{cc}-1",
            AGENT_ALLOW_PRIVATE_TARGETS="true",
            SSL_CERT_FILE=str(self.tmp / "ca.pem"),
        )
        argv = self.ns[cc].command(sys.executable, "-m", "agent", "--country", cc)
        self._spawn(f"agent-{cc}", argv, env)
        await _heard(self.nats_url, cc)

    def _signal(self, key: str, sig: signal.Signals) -> None:
        proc = self.procs[key]
        os.kill(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(30)

    async def apply(self, step: Step) -> None:
        t, cc = step.target, step.country
        match step.action:
            case "kill":
                self._signal(t, signal.SIGKILL)
                self.fact("server", t, None, True)
            case "start":
                await self.start_server(t)
                self.fact("server", t, None, False)
            case "freeze":
                self._signal(t, signal.SIGSTOP)
                self.fact("server", t, None, True)
            case "thaw":
                self._signal(t, signal.SIGCONT)
                self.fact("server", t, None, False)
            case "drop" | "undrop":
                ports = self.dropped[cc]
                (ports.add if step.action == "drop" else ports.discard)(self.ports[t])
                await asyncio.to_thread(self.ns[cc].filter_egress, sorted(ports))
                self.fact("path", t, cc, step.action == "drop")
            case "agent_kill":
                self._signal(f"agent-{cc}", signal.SIGKILL)
                self.fact("agent", "", cc, True)
            case "agent_start":
                await self.start_agent(cc)
                self.fact("agent", "", cc, False)
            case "controller_kill":
                self._signal("controller", signal.SIGKILL)
                self.fact("away", "", None, True)
            case "controller_start":
                await self.start_controller()
                self.fact("away", "", None, False)
            case "nats_stop":
                self._signal("nats", signal.SIGTERM)
                await asyncio.to_thread(self.procs["nats"].wait, 30)
                self.fact("away", "", None, True)
            case "nats_start":
                await asyncio.to_thread(self.start_nats)
                self.fact("away", "", None, False)

    def close(self) -> None:
        for key, proc in self.procs.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            if key != "nats":
                embedded.stop(proc)
        if "nats" in self.procs:
            embedded.stop(self.procs["nats"])
        for ns in self.ns.values():
            netns._remove(ns.name, ns.link)
        if self.pg is not None:
            self.pg.cleanup()  # type: ignore[attr-defined]


async def _heard(url: str, country: str, within: float = START_TIMEOUT_S) -> None:
    """Until an agent of `country` heartbeats."""
    nc = await nats.connect(url)
    heard = asyncio.Event()

    async def on_beat(msg: Msg) -> None:
        if msg.subject.split(".")[2] == country:
            heard.set()

    try:
        await nc.subscribe(HEARTBEATS_SUBJECTS, cb=on_beat)
        await asyncio.wait_for(heard.wait(), within)
    finally:
        await nc.close()


# -- what the product said ------------------------------------------------------------------


async def _sample(
    url: str, states: dict[str, list[tuple[float, str]]], stop: asyncio.Event
) -> None:
    conn = await asyncpg.connect(url)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT m.name, s.state FROM monitors m JOIN monitor_alert_state s"
                " ON s.monitor_id = m.id"
            )
            at = time.time()
            for r in rows:
                states.setdefault(r["name"], []).append((at, r["state"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await conn.close()


async def _observed(url: str, states: dict[str, list[tuple[float, str]]]) -> Observed:
    conn = await asyncpg.connect(url)
    try:
        incidents = [
            Incident(
                r["id"],
                r["name"],
                r["started_at"].timestamp(),
                r["opened_at"].timestamp(),
                r["ended_at"].timestamp() if r["ended_at"] else None,
            )
            for r in await conn.fetch(
                "SELECT i.id, m.name, i.started_at, i.opened_at, i.ended_at FROM incidents i"
                " JOIN monitors m ON m.id = i.monitor_id"
            )
        ]
        notices = [
            Notice(r["name"], r["incident_id"], r["kind"], r["created_at"].timestamp())
            for r in await conn.fetch(
                "SELECT m.name, o.incident_id, o.kind, o.created_at FROM notification_outbox o"
                " JOIN monitors m ON m.id = o.monitor_id"
            )
        ]
        final = {
            r["name"]: r["state"] or "absent"
            for r in await conn.fetch(
                "SELECT m.name, s.state FROM monitors m LEFT JOIN monitor_alert_state s"
                " ON s.monitor_id = m.id"
            )
        }
    finally:
        await conn.close()
    return Observed(states, incidents, notices, final)


# -- the campaign ---------------------------------------------------------------------------


async def _run(c: Campaign, seed: int, tmp: Path, say: Callable[[str], None]) -> Figures:
    history = draw(seed, list(c.kinds), COUNTRIES, shape(c))
    rig = Rig(tmp, c.kinds)
    states: dict[str, list[tuple[float, str]]] = {}
    stop = asyncio.Event()
    try:
        await rig.up()
        say(f"  rig up ({tmp}); warming up {WARMUP_S:.0f} s")
        await asyncio.sleep(WARMUP_S)
        sampler = asyncio.create_task(_sample(rig.database_url, states, stop))
        t0 = time.time()
        for step in history:
            await asyncio.sleep(max(0.0, t0 + step.at - time.time()))
            await rig.apply(step)
        settle = rules().recover_bound + 2 * INTERVAL
        say(f"  history done; {settle:.0f} s of quiet for the last recoveries")
        await asyncio.sleep(settle)
        stop.set()
        await sampler
        end = time.time()
        observed = await _observed(rig.database_url, states)
        return judge(rig.facts, observed, c.kinds, rules(), end)
    finally:
        stop.set()
        await asyncio.to_thread(rig.close)


def describe(history: list[Step]) -> str:
    counts = Counter(s.action for s in history)
    parts = [
        f"{counts['kill']} kills (outages and blips)" if counts["kill"] else "",
        f"{counts['freeze']} freezes" if counts["freeze"] else "",
        f"{counts['drop']} one-country drops" if counts["drop"] else "",
        f"{counts['agent_kill']} agent restarts" if counts["agent_kill"] else "",
        f"{counts['controller_kill']} controller kills" if counts["controller_kill"] else "",
        f"{counts['nats_stop']} NATS restarts" if counts["nats_stop"] else "",
    ]
    return ", ".join(p for p in parts if p) or "no step"


def report(fig: Figures, seed: int, say: Callable[[str], None] = print) -> bool:
    missed = fig.misses()
    near = ", ".join(f"{s:.1f}" for s in fig.detection_near_restart_s) or "none"
    say(
        f"  seed {seed}: outages {fig.outages} (owed an incident), blips {fig.blips}\n"
        f"    false down {len(fig.false_down)}, missed recoveries {len(fig.missed_recoveries)},"
        f" stuck {len(fig.stuck)}, duplicate notices {len(fig.duplicate_notices)},"
        f" missing notices {len(fig.missing_notices)}\n"
        f"    detection p99 {fig.detection_p99_s:.1f} s over {len(fig.detection_s)} outages"
        f" (bound: interval + confirmation = {fig.detect_bound_s:.1f} s);"
        f" next to a restart (out of the p99, bound {fig.near_restart_bound_s:.1f} s): {near}\n"
        f"    {verdict(not missed)}" + (f": {', '.join(missed)}" if missed else "")
    )
    for name in ("false_down", "missed_recoveries", "stuck", "duplicate_notices"):
        for line in getattr(fig, name):
            say(f"    {name.replace('_', ' ')}: {line}")
    for line in fig.missing_notices:
        say(f"    missing notices: {line}")
    return not missed


def run_campaign(c: Campaign, seed: int, say: Callable[[str], None] = print) -> Figures:
    reason = netns.missing()
    if reason is not None:
        raise SystemExit(f"verdicts: {reason}")
    tmp = Path(tempfile.mkdtemp(prefix="mailprobe-verdicts-"))
    try:
        return asyncio.run(_run(c, seed, tmp, say))
    finally:
        if os.environ.get("VERDICTS_KEEP"):
            say(f"  logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(argv: list[str]) -> bool:
    parser = argparse.ArgumentParser(prog="python -m bench verdicts", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="drawn and printed when absent")
    parser.add_argument("--minutes", type=float, default=6.0, help="the history's length")
    parser.add_argument("--short", action="store_true", help="make test's version")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    c = SHORT if args.short else Campaign(minutes=args.minutes, kinds=tuple(KINDS))
    discard_logs()
    history = draw(seed, list(c.kinds), COUNTRIES, shape(c))
    print(
        f"verdicts ({machine()}; seed {seed}; {len(c.kinds)} monitors ({', '.join(c.kinds)})"
        f" every {INTERVAL} s, timeout {TIMEOUT} s, from {' and '.join(COUNTRIES)};"
        f" {c.minutes:g} min of history: {describe(history)})",
        flush=True,
    )
    ok = report(run_campaign(c, seed, lambda s: print(s, flush=True)), seed)
    again = "--short" if args.short else f"--minutes {c.minutes:g}"
    print(f"  rerun: python -m bench verdicts --seed {seed} {again}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if run(sys.argv[1:]) else 1)
