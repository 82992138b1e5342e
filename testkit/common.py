"""Helpers for the benchmarks: embedded servers, a seeded database, wrk."""

import asyncio
import http.client
import logging
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.access.credentials import hash_password, new_token
from controller.db.migrate import migrate
from controller.db.pool import connect
from controller.ingest import retention
from controller.ingest import store as results
from controller.jobs.rules import JobIds
from shared import embedded
from shared.clock import WALL
from shared.messages import CheckResult
from shared.timefmt import iso_ms, utcnow

# The job ids of the benchmarks' own rounds (their ingesters check results against them):
# keyed, and seeded (from long ago) as schedulers make them once every controller accepts them.
JOB_IDS_KEY = b"mailprobe bench job ids key....."
JOB_IDS = JobIds([JOB_IDS_KEY])
SEEDED_JOB_IDS = JobIds([JOB_IDS_KEY], lambda: datetime(2000, 1, 1, tzinfo=UTC))


def smtp_result(
    public_id: str,
    cc: str,
    at: datetime,
    *,
    agent_id: str | None = None,
    started_at: str | None = None,
    finished_at: str | None = None,
    job_ids: JobIds = JOB_IDS,
    **facts: Any,
) -> CheckResult:
    """The result of an SMTP monitor's round scheduled at `at`, from `cc`'s bench agent (or
    `agent_id`): started 3 ms and finished 60 ms after `at` (or at `started_at`,
    `finished_at`), saying `facts`; its job id made by `job_ids`."""
    return CheckResult(
        job_id=job_ids.make(public_id, cc, at),
        monitor_id=public_id,
        monitor_type="smtp",
        country=cc,
        agent_id=agent_id or f"{cc}-bench-1",
        scheduled_at=iso_ms(at),
        started_at=started_at or iso_ms(at + timedelta(milliseconds=3)),
        finished_at=finished_at or iso_ms(at + timedelta(milliseconds=60)),
        **facts,
    )


TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3 on), None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def machine_cpu_s() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, every core (/proc/stat's `cpu`
    line: busy is all but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / TICKS, sum(ticks) / TICKS


def busy_line(before: tuple[float, float], after: tuple[float, float], rig_s: float) -> str:
    """How busy the machine was between two `machine_cpu_s`, and the share of it that was the
    rig's (`rig_s` CPU seconds): whether the rest of the machine left the rig room."""
    busy, whole = after[0] - before[0], max(after[1] - before[1], 1e-9)
    cores = os.cpu_count() or 1
    return (
        f"machine {busy / whole:.0%} busy over the window ({busy / whole * cores:.2f} of {cores}"
        f" cores), the rig {rig_s / whole * cores:.2f} cores of it, other work"
        f" {(busy - rig_s) / whole * cores:.2f}"
    )


def cpu_s(pid: int, *, children: bool = False) -> float:
    """utime + stime of `pid` in seconds, all its threads (+ cutime + cstime with `children`);
    0 when gone."""
    fields = proc_stat(pid)
    if fields is None:
        return 0.0
    # fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]},"
        f" {ssl.OPENSSL_VERSION.rsplit(' ', 3)[0]}"
    )


def loop_seconds(steps: int = 10_000_000) -> float:
    """CPU seconds this interpreter takes to count to `steps` in a while loop: how fast the
    machine runs Python, printed beside CPU figures, which differ from one machine to another
    by more than a change being measured (bench/results/scaling-history.md, "What is left")."""
    started = time.process_time()
    i = 0
    while i < steps:
        i += 1
    return time.process_time() - started


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package) for the HTTP benchmarks", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed for the HTTP benchmarks: apt-get install wrk")
    return found


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(
    url: str, *, seconds: int, connections: int, headers: dict[str, str], script: str | None = None
) -> WrkResult:
    args = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for key, value in headers.items():
        args += ["-H", f"{key}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            args += ["-s", lua.name]
        out = subprocess.run([*args, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return WrkResult(rps, p50, p99, errors)


@dataclass
class Seeded:
    token: str
    customer_id: int
    monitor_ids: list[str]


async def seed(database_url: str, monitors: int, *, organization: str = "bench") -> Seeded:
    conn = await connect(database_url)
    try:
        await migrate(conn)
        org_id = await accounts.ensure_organization(conn, organization)
        user = await accounts.create_user(
            conn, org_id, f"bench-{time.time_ns()}@example.com", hash_password("x" * 12), "admin"
        )
        token, digest = new_token()
        await accounts.issue_token(conn, user.id, digest, 3600, WALL.now())
        customer = await customers.create(conn, org_id, "bench")
        rows = await conn.fetch(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, status,"
            " check_interval, timeout_seconds, config)"
            " SELECT $1, $2, 'smtp', 'mx ' || g, 'mx' || g || '.example.com', 'active', 60, 30,"
            " '{\"secure\": false}'::jsonb FROM generate_series(1, $3) g RETURNING public_id",
            org_id,
            customer.id,
            monitors,
        )
        return Seeded(token, customer.id, [str(r["public_id"]) for r in rows])
    finally:
        await conn.close()


class Stack:
    """Embedded PostgreSQL and NATS plus the API served by `python -m controller serve` (the
    API role alone: `serve` connects to NATS whatever its roles)."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="mailprobe-bench-"))
        self.pg, server_url = embedded.start_postgres(self.tmp / "pg", throwaway=True)
        self.database_url = server_url
        self.nats, self.nats_url = embedded.start_nats(self.tmp / "nats")
        self.api: subprocess.Popen[bytes] | None = None
        self.url = ""

    def seed(self, monitors: int) -> Seeded:
        return asyncio.run(seed(self.database_url, monitors))

    def serve(self, **more: str) -> str:
        """The API's URL once it is ready; `more`: settings besides the bench's."""
        port = embedded.free_port()
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "CONTROLLER_ROLES": "api",
            "SECRETS_KEY": "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE=",
            "API_PORT": str(port),
            # the bench seeds and creates far more monitors than one organization may have
            "ORG_MAX_MONITORS": "10000000",
            "ORG_MAX_CHECKS_PER_MINUTE": "100000000",
            "LOG_FORMAT": "json",
            **more,
        }
        log = open(self.tmp / "api.log", "wb")  # noqa: SIM115 - the child's stderr
        self.api = subprocess.Popen(
            [sys.executable, "-m", "controller", "serve"], env=env, stdout=log, stderr=log
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1):
                    return self.url
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"API did not start; see {self.tmp / 'api.log'}")

    def close(self) -> None:
        if self.api is not None:
            embedded.stop(self.api)
        embedded.stop(self.nats)
        self.pg.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Pipes:
    """Embedded PostgreSQL (migrated) and NATS with JetStream, for the pipeline benchmarks."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="mailprobe-bench-"))
        self.pg, self.database_url = embedded.start_postgres(self.tmp / "pg", throwaway=True)
        self.nats, self.nats_url = embedded.start_nats(self.tmp / "nats")

    def close(self) -> None:
        embedded.stop(self.nats)
        self.pg.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def seed_monitors(
    database_url: str,
    count: int,
    *,
    interval: int = 60,
    countries: list[str] | None = None,
    hostname: str = "mx{n}.example.com",
    port: int | None = None,
    timeout_seconds: int = 30,
    config: dict[str, object] | None = None,
    organization: str = "bench",
) -> list[str]:
    """Migrate, then insert `count` active SMTP monitors of `organization` in one statement;
    their public ids.

    `{n}` in `hostname` becomes the monitor's number."""
    conn = await connect(database_url)
    try:
        await migrate(conn)
        org_id = await accounts.ensure_organization(conn, organization)
        customer = await customers.create(conn, org_id, "bench")
        rows = await conn.fetch(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, allowed_country_codes, config)"
            " SELECT $1, $2, 'smtp', 'mx ' || g, replace($9, '{n}', g::text), $4, 'active',"
            " $5, $6, $7, $8::jsonb FROM generate_series(1, $3) g RETURNING public_id",
            org_id,
            customer.id,
            count,
            port,
            interval,
            timeout_seconds,
            countries,
            config if config is not None else {"secure": False},
            hostname,
        )
        return [str(r["public_id"]) for r in rows]
    finally:
        await conn.close()


async def steady_partitions(database_url: str) -> int:
    """The daily result partitions a deployment holds once it has run for CHECK_HISTORY_DAYS
    (`controller.ingest.retention`'s defaults): rollups of every day since, raw rows, details
    and packs of the last CHECK_RAW_DAYS, and the days ahead. A statement naming a partitioned
    table may lock and open each partition of it every time it runs, so a bench on a fresh
    database, with a few days, would measure less than production pays. Returns the tables'
    partitions."""
    conn = await connect(database_url)
    try:
        now = utcnow()
        days = retention.HISTORY_DAYS
        await results.ensure_partitions(conn, now - timedelta(days=days), days + 4)
        await results.drop_partitions_before(
            conn, (now - timedelta(days=retention.RAW_DAYS)).date(), results.RAW_TABLES
        )
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE c.relkind = 'r' AND c.relname LIKE 'result\\_%'"
        )
        return count
    finally:
        await conn.close()


@asynccontextmanager
async def steady_database(
    prefix: str, monitors: int, countries: list[str]
) -> AsyncIterator[tuple[asyncpg.Connection, list[str]]]:
    """A connection to an embedded PostgreSQL (crash-safe) holding `monitors` SMTP monitors
    checked from `countries` (`seed_monitors`: their public ids) on a deployment's partitions
    (`steady_partitions`), removed at exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        pg, url = embedded.start_postgres(Path(tmp) / "pg", throwaway=True, crash_safe=True)
        try:
            ids = await seed_monitors(url, monitors, interval=10, countries=countries)
            await steady_partitions(url)
            conn = await connect(url)
            try:
                yield conn, ids
            finally:
                await conn.close()
        finally:
            pg.cleanup()


def plain_tracebacks() -> None:
    """structlog's default configuration, its logged exceptions rendered as plain tracebacks.
    The default renders them with rich, every frame's locals included: 12-15 s of the event
    loop per exception (an asyncpg connect refused) on a loaded 2-core host, in the process
    whose event loop is under test. Deployment logging (shared.logging) is plain already."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    )


def discard_logs() -> None:
    """Deployment logging (JSON lines at INFO, so the benchmarks pay for it) into /dev/null."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )


def http_ok(url: str, timeout: float = 0.5) -> bool:
    """Whether `url` answers 200: False when nothing listens yet, or the process was killed
    while answering."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, http.client.HTTPException):
        return False


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def child_env(**values: str) -> dict[str, str]:
    """This process's environment without mailprobe's own settings (a bench's children get only
    those it names), JSON logs at INFO, and `values`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("AGENT_", "NATS_", "LOG_", "CONTROLLER_", "DATABASE_", "SEAL_", "CONFIRM_")
        )
    }
    return {**env, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", **values}


def start_module(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m <args>` with `env`, its output appended to `log`."""
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=out, stderr=out)
