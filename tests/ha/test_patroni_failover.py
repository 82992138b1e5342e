"""deploy/patroni/patroni.yml run by Debian's Patroni and PostgreSQL on loopback, with an etcd
member: the failover compose.ha.yaml ships, for real. Two nodes come up (the bootstrap script
makes the application's login and database; TCP only over TLS), the controller's pool writes
through the multi-host URL with `sslmode=verify-full`; the primary's node is killed (Patroni
and every PostgreSQL process), the standby is promoted by Patroni, the same pool writes on and
every commit it saw is there; the old primary's node started again comes back as a standby of
the new one and never takes a write meanwhile.

What differs from the shipped file: addresses, ports and paths (loopback, a folder here), and
the leader key's timing (`ttl` 10 s, `loop_wait` 2 s, `retry_timeout` 4 s instead of 30/10/10)
so that the failover takes seconds, not half a minute."""

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
import yaml

from controller.db.pool import create_pool
from deploy import make_certs
from shared import embedded
from testkit import postgres
from tests.deploy.test_deploy_files import DEPLOY
from tests.ha.test_postgres_tls import DEBIAN_BIN, DEBIAN_USER

# A failover of real engines paced by Patroni's leader key: with the suite's other campaigns
# beside it on two cores its timing is not its own, so `make soak` runs it (SOAK_FULL=1); make
# test checks the same patroni.yml through `docker compose config` and HAProxy in front of two
# controllers (tests/deploy/).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.environ.get("SOAK_FULL") != "1", reason="make soak runs it"),
]

PATRONI = Path("/usr/bin/patroni")
ETCD = Path("/usr/bin/etcd")
PASSWORD = "app-password-for-this-test"


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(DEBIAN_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class Node:
    name: str
    pg_port: int
    api_port: int
    config: Path
    data: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, log: Path) -> None:
        env = {
            "PATH": f"{DEBIAN_BIN}:/usr/bin:/bin",
            "PATRONI_SUPERUSER_PASSWORD": "superuser-password-for-this-test",
            "PATRONI_REPLICATION_PASSWORD": "replication-password-for-this-test",
            "PATRONI_RESTAPI_USERNAME": "patroni",  # as compose.ha.yaml sets them
            "PATRONI_RESTAPI_PASSWORD": "restapi-password-for-this-test",
            "MAILPROBE_DB_PASSWORD": PASSWORD,
        }
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(PATRONI), str(self.config)],
                env=env,
                user=DEBIAN_USER if os.geteuid() == 0 else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL Patroni and its PostgreSQL, every process: the machine (or the container,
        whose first process Patroni is) lost. Patroni detaches the postmaster from itself, so
        it is found by its pid file."""
        if self.proc is None:
            return
        tops = [self.proc.pid]
        with contextlib.suppress(OSError, ValueError, IndexError):
            tops.append(int((self.data / "postmaster.pid").read_text().split()[0]))
        every: list[psutil.Process] = []
        for pid in tops:
            with contextlib.suppress(psutil.NoSuchProcess):
                top = psutil.Process(pid)
                every += [top, *top.children(recursive=True)]
        for proc in every:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        postgres.wait_dead(every)
        self.proc.wait()
        self.proc = None

    def role(self) -> str:
        """What Patroni's REST API says this node is: `primary`, `replica` or "" (no answer)."""
        for role in ("primary", "replica"):
            try:
                r = httpx.get(f"http://127.0.0.1:{self.api_port}/{role}", timeout=2)
            except httpx.TransportError:
                return ""
            if r.status_code == 200:
                return role
        return ""


def node_config(shipped: dict, folder: Path, node: Node, etcd: int, tls: Path) -> dict:  # type: ignore[type-arg]
    """The shipped configuration with this node's name, loopback addresses and folders."""
    config = yaml.safe_load(yaml.safe_dump(shipped))
    config["name"] = node.name
    config["etcd3"] = {"hosts": [f"127.0.0.1:{etcd}"]}
    config["restapi"].update(
        listen=f"127.0.0.1:{node.api_port}", connect_address=f"127.0.0.1:{node.api_port}"
    )
    dcs = config["bootstrap"]["dcs"]
    dcs.update(ttl=10, loop_wait=2, retry_timeout=4)
    params = dcs["postgresql"]["parameters"]
    params["ssl_cert_file"] = str(tls / "server.pem")
    params["ssl_key_file"] = str(tls / "server.key")
    script = folder / "post_bootstrap.sh"
    config["bootstrap"]["post_bootstrap"] = str(script)
    home = folder / node.name
    home.mkdir(mode=0o700)
    _own(home)
    pg = config["postgresql"]
    pg.update(
        listen=f"127.0.0.1:{node.pg_port}",
        connect_address=f"127.0.0.1:{node.pg_port}",
        data_dir=str(home / "data"),
        pgpass=str(home / "pgpass"),
        bin_dir=str(DEBIAN_BIN),
    )
    pg["parameters"]["unix_socket_directories"] = str(home)
    return config  # type: ignore[no-any-return]


@dataclass
class Cluster:
    folder: Path
    nodes: list[Node]
    ca: Path

    def url(self, *, user: str = "mailprobe", password: str = PASSWORD) -> str:
        hosts = ",".join(f"localhost:{n.pg_port}" for n in self.nodes)
        return (
            f"postgresql://{user}:{password}@{hosts}/mailprobe?target_session_attrs=read-write"
            f"&sslmode=verify-full&sslrootcert={self.ca}&connect_timeout=3"
        )

    def wait(self, node: Node, role: str, within_s: float = 90) -> None:
        deadline = time.monotonic() + within_s
        while node.role() != role:
            if time.monotonic() > deadline:
                log = (self.folder / "patroni.log").read_text()[-3000:]
                raise AssertionError(f"{node.name} is not {role} within {within_s} s:\n{log}")
            time.sleep(0.3)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    for binary in (PATRONI, ETCD, DEBIAN_BIN / "postgres"):
        if not binary.exists():
            pytest.fail(f"{binary} is missing: make test-debs installs Debian's patroni and etcd")
    folder = Path(tempfile.mkdtemp(prefix="mailprobe-patroni-"))
    folder.chmod(0o755)
    etcd: subprocess.Popen[bytes] | None = None
    nodes: list[Node] = []
    try:
        args = [
            "--hosts",
            "localhost",
            "--ca-dir",
            str(folder / "pki"),
            "--out",
            str(folder / "tls"),
        ]
        assert make_certs.main(args) == 0
        for name in ("server.pem", "server.key"):
            _own(folder / "tls" / name)  # PostgreSQL's own key, mode 0600
        (folder / "tls").chmod(0o755)
        shutil.copy(DEPLOY / "patroni" / "post_bootstrap.sh", folder / "post_bootstrap.sh")
        (folder / "post_bootstrap.sh").chmod(0o755)
        client, peer = embedded.free_port(), embedded.free_port()
        etcd = subprocess.Popen(
            [
                str(ETCD), "--name", "e1", "--data-dir", str(folder / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"e1=http://127.0.0.1:{peer}",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        shipped = yaml.safe_load((DEPLOY / "patroni" / "patroni.yml").read_text())
        for i in (1, 2):
            name = f"postgres-{i}"
            node = Node(
                name,
                embedded.free_port(),
                embedded.free_port(),
                folder / f"{name}.yml",
                folder / name / "data",
            )
            node.config.write_text(
                yaml.safe_dump(node_config(shipped, folder, node, client, folder / "tls"))
            )
            nodes.append(node)
        yield Cluster(folder, nodes, folder / "pki" / "ca.pem")
    finally:
        for node in nodes:
            node.kill()
        if etcd is not None:
            etcd.kill()
            etcd.wait()
        shutil.rmtree(folder, ignore_errors=True)


async def write(pool: asyncpg.Pool, n: int) -> bool:
    try:
        await pool.execute("INSERT INTO seen (n) VALUES ($1)", n)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return False
    return True


async def test_patroni_fails_over_and_the_old_primary_never_comes_back_writable(
    cluster: Cluster,
) -> None:
    first, second = cluster.nodes
    log = cluster.folder / "patroni.log"
    first.start(log)
    await asyncio.to_thread(cluster.wait, first, "primary")
    second.start(log)
    await asyncio.to_thread(cluster.wait, second, "replica")

    pool = await create_pool(cluster.url(), max_size=2)
    try:
        assert await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        await pool.execute("CREATE TABLE seen (n int PRIMARY KEY)")
        committed = [n for n in range(50) if await write(pool, n)]
        assert committed == list(range(50))

        await asyncio.to_thread(first.kill)
        await asyncio.to_thread(cluster.wait, second, "primary", 60)
        n = 50
        async with asyncio.timeout(60):  # new connections find the promoted node
            while not await write(pool, n):  # noqa: ASYNC110 (polling the database)
                await asyncio.sleep(0.1)
        committed.append(n)

        # The old primary's node again: PostgreSQL there must never accept a write.
        first.start(log)
        probe = (
            f"postgresql://mailprobe:{PASSWORD}@localhost:{first.pg_port}/mailprobe"
            f"?sslmode=verify-full&sslrootcert={cluster.ca}"
        )
        answers: list[bool] = []
        deadline = time.monotonic() + 90
        while len(answers) < 5 or first.role() != "replica":  # from its first answer on
            assert time.monotonic() < deadline, "the old primary did not rejoin as a standby"
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn = await asyncpg.connect(probe, timeout=2)
                try:
                    answers.append(await conn.fetchval("SELECT pg_is_in_recovery()"))
                finally:
                    await conn.close()
            await asyncio.sleep(0.2)
        assert all(answers), answers  # every answer since it came back: a standby
        assert await pool.fetchval("SELECT count(*) FROM seen") == len(committed)
        assert await write(pool, 51)
    finally:
        await pool.close()
